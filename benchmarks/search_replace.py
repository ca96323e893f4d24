"""Benchmark: the search-replace engine against PHP's unserialize/replace/serialize loop.

Run from the repository root::

    .venv/bin/python -m benchmarks.search_replace [--scale 1.0] [--rounds 3]

Two corpora, each run through ``replace_value`` and through ``php_baseline.php`` (the naive loop most tools
use: ``unserialize()``, replace in every string, opening strings that hold serialized data, ``serialize()``;
``str_replace``/``preg_replace`` for the rest), with the same pairs:

* **the network**: every text value of a WordPress network made by ``tools/wpnetwork.py`` that holds the
  source host, with the rules ``replace_rules.derive_rules`` gives for moving it from dev to uat (host names
  of the same length, as environments named dev/uat/www have), and again with rules to a host of another
  length, for which the engine parses every serialized value;
* **categories**: WordPress-like values made here (about 26 MB at scale 1): post HTML, Elementor-style JSON,
  widget options, theme mods, attachment metadata, double-serialized options, small meta values, sessions
  and roles, and serialized values damaged by an earlier naive replace.  The structured values are
  serialized by PHP itself.

It prints MB/s of both per category, the ratio PHP time / Python time (above 1: the engine is faster) for
all values and for the serialized values that hold a search string on their own, and how many outputs are
byte-identical.  Times are CPU time of the replacing loop alone (so other load on the machine counts less),
the best of ``--rounds`` rounds that alternate between PHP and Python.
"""

import argparse
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".venv", "collections"))
sys.path.insert(0, ROOT)

from ansible_collections.wfu.multisite.plugins.module_utils.replace_rules import (  # noqa: E402
    Network,
    derive_rules,
    load_environments,
)
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import (  # noqa: E402
    HostPair,
    expand_pairs,
    host_pair_regex,
    is_serialized,
    replace_value,
)
from tools.wpnetwork import NetworkSpec, generate_sql, network_sites  # noqa: E402

# A tuple, as the table-level replacer passes them (a list works too, with a little more checking per call).
PAIRS = (("https://dev.example.edu", "https://uat.example.edu"), HostPair("dev.example.edu", "uat.example.edu"))
BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "php_baseline.php")
SITE = "https://dev.example.edu/sites/biology"
UPLOADS = SITE + "/wp-content/uploads/sites/7"
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "
         "dolore magna aliqua research faculty students campus deacon café naïve résumé").split()

# The network, and the environments it moves between.
NETWORK = NetworkSpec(url="https://dev.example.edu", sites=20, seed=1, posts_per_site=40)
ENVIRONMENTS = {"dev": {"url": "https://dev.example.edu"}, "uat": {"url": "https://uat.example.edu"},
                "staging": {"url": "https://staging.example.edu"}}
NETWORK_PLAIN, NETWORK_SERIALIZED = 21, 22
NETWORK_CATEGORIES = {NETWORK_PLAIN: "text, HTML, JSON", NETWORK_SERIALIZED: "serialized"}
# The categories below whose values are serialized and hold search strings.
SERIALIZED_WITH_HITS = (3, 4, 6)

# Category: (label, how many values at scale 1)
CATEGORIES = {
    1: ("post HTML", 1200),
    2: ("Elementor JSON", 300),
    3: ("widget options", 400),
    4: ("theme mods", 200),
    5: ("attachment metadata", 6000),
    6: ("double-serialized options", 200),
    7: ("small meta values", 30000),
    8: ("sessions, roles, cron", 3000),
    9: ("damaged serialized", 50),
}


def sentence(rng, words=12):
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def image_path(rng):
    return "%d/%02d/photo-%d.jpg" % (rng.randint(2015, 2024), rng.randint(1, 12), rng.randint(1, 99999))


def post_html(rng):
    blocks = []
    for _block in range(rng.randint(2, 60)):
        kind = rng.random()
        if kind < 0.5:
            blocks.append("<!-- wp:paragraph -->\n<p>%s</p>\n<!-- /wp:paragraph -->" % " ".join(
                sentence(rng) for _sentence in range(rng.randint(1, 6))))
        elif kind < 0.75:
            path = image_path(rng)
            blocks.append('<!-- wp:image {"id":%d,"sizeSlug":"large"} -->\n<figure class="wp-block-image">'
                          '<img src="%s/%s" alt="%s" srcset="%s/%s 1024w, %s/%s 300w"/></figure>\n'
                          '<!-- /wp:image -->' % (rng.randint(1, 9999), UPLOADS, path, rng.choice(WORDS),
                                                  UPLOADS, path, UPLOADS, path.replace(".jpg", "-300x200.jpg")))
        else:
            blocks.append('<p>See <a href="%s/%s/">%s</a> or <a href="https://www.wfu.edu/">wfu.edu</a>.</p>'
                          % (SITE, rng.choice(WORDS), sentence(rng, 4)))
    html = "\n\n".join(blocks)
    return html if rng.random() < 0.6 else html.replace("dev.example.edu", "elsewhere.example.org")


def elementor_json(rng):
    elements = [{"id": "%07x" % rng.getrandbits(28), "elType": "widget", "widgetType": rng.choice(["image", "text"]),
                 "settings": {"image": {"url": "%s/%s" % (UPLOADS, image_path(rng)), "id": rng.randint(1, 9999)},
                              "editor": "<p>%s</p>" % sentence(rng, 30),
                              "link": {"url": "%s/%s/" % (SITE, rng.choice(WORDS)), "is_external": ""}}}
                for _element in range(rng.randint(3, 40))]
    return json.dumps(elements, separators=(",", ":")).replace("/", "\\/")


def widget_option(rng):
    widgets = {}
    for number in range(2, rng.randint(3, 20)):
        widgets[number] = {"title": sentence(rng, 3), "filter": True, "visual": rng.random() < 0.5,
                           "text": '<p>%s <a href="%s/%s/">%s</a></p>' % (
                               sentence(rng, 20), SITE, rng.choice(WORDS), rng.choice(WORDS))}
    widgets["_multiwidget"] = 1
    return widgets


def theme_mods(rng):
    header = "%s/%s" % (UPLOADS, image_path(rng))
    return {"0": False, "nav_menu_locations": {"primary": rng.randint(2, 50), "footer": rng.randint(2, 50)},
            "custom_css_post_id": rng.randint(-1, 900), "header_image": header,
            "header_image_data": {"__class__": "stdClass", "attachment_id": rng.randint(1, 9999), "url": header,
                                  "thumbnail_url": header, "height": 300, "width": 1600},
            "background_color": "ffffff", "sidebars_widgets": {
                "time": rng.randint(1600000000, 1700000000),
                "data": {"wp_inactive_widgets": [], "sidebar-1": ["text-%d" % n for n in range(rng.randint(0, 8))]}},
            "mods": {"__class__": "WP_Theme_Mods", "logo": "%s/logo.png" % UPLOADS, "ratio": 1.5,
                     "links": ["%s/%s/" % (SITE, word) for word in rng.choices(WORDS, k=rng.randint(0, 10))]}}


def attachment_metadata(rng):
    path = image_path(rng)
    stem = path[:-4]
    sizes = {name: {"file": "%s-%dx%d.jpg" % (stem.rsplit("/", 1)[1], width, width * 2 // 3), "width": width,
                    "height": width * 2 // 3, "mime-type": "image/jpeg", "filesize": rng.randint(5000, 400000)}
             for name, width in (("thumbnail", 150), ("medium", 300), ("medium_large", 768), ("large", 1024),
                                 ("1536x1536", 1536))}
    return {"width": 2048, "height": 1365, "file": path, "filesize": rng.randint(100000, 9000000), "sizes": sizes,
            "image_meta": {"aperture": "2.8", "credit": "", "camera": "ILCE-7M3", "caption": "",
                           "created_timestamp": str(rng.randint(1500000000, 1700000000)), "copyright": "",
                           "focal_length": "35", "iso": "200", "shutter_speed": "0.004", "title": "",
                           "orientation": "1", "keywords": []}}


def double_serialized(rng):
    return {"version": "3.%d" % rng.randint(0, 9), "enabled": True,
            "settings": {"__serialized__": {"redirect": "%s/thanks/" % SITE, "logo": "%s/%s" % (UPLOADS, image_path(rng)),
                                            "rules": [{"from": "/old-%d" % n, "to": "%s/new-%d/" % (SITE, n)}
                                                      for n in range(rng.randint(1, 40))]}}}


def small_meta(rng):
    kind = rng.random()
    if kind < 0.4:
        return str(rng.randint(0, 99999))
    if kind < 0.6:
        return "%s/%s/" % (SITE, rng.choice(WORDS))
    if kind < 0.8:
        return sentence(rng, rng.randint(1, 8))
    return rng.choice(["default", "field_5f2a1b", "a:0:{}", "publish", "1", "", "_self"])


def misc_serialized(rng):
    kind = rng.random()
    if kind < 0.4:
        return {"administrator" if rng.random() < 0.1 else "subscriber": True}
    if kind < 0.8:
        session = {"expiration": rng.randint(1600000000, 1800000000),
                   "ip": "10.%d.%d.%d" % (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)),
                   "ua": "Mozilla/5.0 (X11; Linux x86_64) Firefox/%d.0" % rng.randint(90, 130),
                   "login": rng.randint(1600000000, 1700000000)}
        return {"%064x" % rng.getrandbits(256): session}
    return {str(rng.randint(1600000000, 1800000000)): {"wp_version_check": {"%032x" % rng.getrandbits(128): {
        "schedule": "twicedaily", "args": [], "interval": 43200}}}, "version": 2}


def corpus_structures(scale, seed=20240517):
    """[(category, text or structure to serialize)] for the whole corpus."""
    rng = random.Random(seed)
    makers = {1: post_html, 2: elementor_json, 3: widget_option, 4: theme_mods, 5: attachment_metadata,
              6: double_serialized, 7: small_meta, 8: misc_serialized, 9: widget_option}
    return [(category, makers[category](rng))
            for category, (_label, count) in CATEGORIES.items() for _value in range(max(1, int(count * scale)))]


def write_records(path, records):
    with open(path, "wb") as out:
        for category, value in records:
            data = value.encode("utf-8")
            out.write(struct.pack("<BI", category, len(data)) + data)


def read_records(path):
    with open(path, "rb") as source:
        data = source.read()
    records, at = [], 0
    while at < len(data):
        category, length = struct.unpack_from("<BI", data, at)
        records.append((category, data[at + 5:at + 5 + length].decode("utf-8")))
        at += 5 + length
    return records


def damage(value, rng):
    """A serialized value as an earlier naive replace leaves it: one string longer than its header says."""
    at = value.index('"', value.index("s:", 10)) + 1
    return value[:at] + rng.choice(WORDS) + value[at:]


def build_corpus(workdir, scale):
    structures = corpus_structures(scale)
    source = os.path.join(workdir, "structures.json")
    with open(source, "w", encoding="utf-8") as out:
        json.dump(structures, out)
    serialized = os.path.join(workdir, "values.bin")
    subprocess.run(["php", BASELINE, "serialize", source, serialized], check=True)
    rng = random.Random(7)
    return [(category, damage(value, rng) if category == 9 else value) for category, value in read_records(serialized)]


_SQL_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'", re.DOTALL)
_SQL_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_SQL_UNESCAPED = {"0": "\0", "n": "\n", "r": "\r", "Z": "\x1a"}


def network_records(spec, host):
    """[(category, value)] for every string in the network's INSERTs that holds ``host``."""
    records = []
    for statement in generate_sql(spec):
        if statement.startswith("INSERT"):
            for literal in _SQL_STRING.finditer(statement, statement.index(" VALUES")):
                value = _SQL_ESCAPE.sub(lambda escape: _SQL_UNESCAPED.get(escape[1], escape[1]), literal[1])
                if host in value:
                    records.append((NETWORK_SERIALIZED if is_serialized(value) else NETWORK_PLAIN, value))
    return records


def network_rules(spec, target):
    """The rules ``derive_rules`` gives for moving the network from dev to ``target``."""
    environments = load_environments(ENVIRONMENTS)
    network = Network.from_rows([{"blog_id": site.blog_id, "domain": site.domain, "path": site.path}
                                 for site in network_sites(spec)])
    return tuple(derive_rules(environments["dev"], environments[target], network))


def python_round(records, pairs):
    """CPU seconds per category for one pass of ``replace_value`` over the values, and the outputs."""
    by_category = {}
    for category, value in records:
        by_category.setdefault(category, []).append(value)
    seconds, outputs = {}, []
    for category, values in by_category.items():
        started = time.process_time()
        outputs.extend((category, replace_value(value, pairs)) for value in values)
        seconds[category] = time.process_time() - started
    return seconds, outputs


def php_round(workdir):
    """CPU seconds per category for one pass of the PHP baseline over values.bin, and the outputs."""
    outputs = os.path.join(workdir, "outputs.bin")
    run = subprocess.run(["php", "-d", "memory_limit=2G", BASELINE, "replace", os.path.join(workdir, "values.bin"),
                          os.path.join(workdir, "pairs.json"), outputs], check=True, capture_output=True, text=True)
    return {int(category): seconds for category, seconds in json.loads(run.stdout).items()}, read_records(outputs)


def timed_rounds(workdir, records, pairs, rounds):
    """Alternate PHP and Python rounds (so both see the same machine load); keep each one's best times."""
    write_records(os.path.join(workdir, "values.bin"), records)
    with open(os.path.join(workdir, "pairs.json"), "w", encoding="utf-8") as out:
        json.dump([{"search": search, "replace": replace,
                    "pattern": host_pair_regex(search) if isinstance(pair, HostPair) else None}
                   for pair in expand_pairs(pairs) for search, replace in [pair]], out)
    best = {"php": {}, "python": {}}
    outputs = {}
    for _round in range(rounds):
        for side, one_round in (("php", lambda: php_round(workdir)), ("python", lambda: python_round(records, pairs))):
            seconds, outputs[side] = one_round()
            for category, elapsed in seconds.items():
                best[side][category] = min(best[side].get(category, elapsed), elapsed)
    return Result(records, best["python"], best["php"], outputs["python"], outputs["php"])


class Result:
    """Sizes, best times and identical outputs per category of one corpus."""

    def __init__(self, records, python_times, php_times, python_outputs, php_outputs):
        self.python_times, self.php_times = python_times, php_times
        self.sizes, self.counts, self.identical = {}, {}, {}
        for (category, value), (_c, ours), (_p, theirs) in zip(records, python_outputs, php_outputs):
            self.sizes[category] = self.sizes.get(category, 0) + len(value.encode("utf-8"))
            self.counts[category] = self.counts.get(category, 0) + 1
            self.identical[category] = self.identical.get(category, 0) + (ours == theirs)

    def ratio(self, categories):
        """PHP time / Python time over ``categories`` together."""
        return sum(self.php_times[c] for c in categories) / sum(self.python_times[c] for c in categories)

    def row(self, label, categories):
        megabytes = sum(self.sizes[category] for category in categories) / 1e6
        python = sum(self.python_times[category] for category in categories)
        php = sum(self.php_times[category] for category in categories)
        count = sum(self.counts[category] for category in categories)
        return "%-30s %8d %8.2f %12.1f %12.1f %7.2f %8d/%d" % (
            label, count, megabytes, megabytes / python, megabytes / php, php / python,
            sum(self.identical[category] for category in categories), count)


HEADER = "%-30s %8s %8s %12s %12s %7s %14s" % (
    "category", "values", "MB", "Python MB/s", "PHP MB/s", "ratio", "same output")


def report(same_length, other_length, categories):
    network = list(NETWORK_CATEGORIES)
    for title, result in (("dev -> uat (host names of one length)", same_length),
                          ("dev -> staging (another length)", other_length)):
        print("The network: %d sites, every text value holding the source host; rules %s" % (NETWORK.sites, title))
        print(HEADER)
        for category, label in NETWORK_CATEGORIES.items():
            print(result.row(label, [category]))
        print(result.row("all values", network))
        print()
    print("Categories; pairs %s" % ", ".join(map(repr, PAIRS)))
    print(HEADER)
    for category, (label, _count) in CATEGORIES.items():
        print(categories.row(label, [category]))
    print(categories.row("serialized values with hits", SERIALIZED_WITH_HITS))
    print(categories.row("total", list(CATEGORIES)))
    print()
    print("ratio = PHP time / Python time (above 1: the engine is faster)")
    for label, ratio in (
            ("network dev -> uat, all values", same_length.ratio(network)),
            ("network dev -> uat, serialized values", same_length.ratio([NETWORK_SERIALIZED])),
            ("network dev -> staging, all values", other_length.ratio(network)),
            ("network dev -> staging, serialized values", other_length.ratio([NETWORK_SERIALIZED])),
            ("categories, serialized values with hits", categories.ratio(SERIALIZED_WITH_HITS))):
        print("%-44s %5.2f" % (label + ":", ratio))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="corpus size factor (1.0 is about 26 MB)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each; the best one counts")
    args = parser.parse_args()
    if shutil.which("php") is None:
        sys.exit("php (php-cli) is needed for the baseline: make setup installs it")
    # The network's values are few: several copies of them give times worth comparing.
    network = network_records(NETWORK, "dev.example.edu") * max(1, round(4 * args.scale))
    with tempfile.TemporaryDirectory() as workdir:
        same_length = timed_rounds(workdir, network, network_rules(NETWORK, "uat"), args.rounds)
        other_length = timed_rounds(workdir, network, network_rules(NETWORK, "staging"), args.rounds)
        categories = timed_rounds(workdir, build_corpus(workdir, args.scale), PAIRS, args.rounds)
    report(same_length, other_length, categories)


if __name__ == "__main__":
    main()
