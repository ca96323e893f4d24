"""Rules and site addresses between environments, checked against expectations written out by hand.

The WFU example inventory (examples/wfu/group_vars/all.yml) is the configuration
under test.  What each environment calls things is written out once more below
(WFU), independently of the code, and the expected output of every migration is
rendered from that table, never from the rules themselves.
"""

import itertools
import os
import string
import time

import pytest
import yaml

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.replace_rules import (
    Environment, Network, derive_rules, environment_pair, load_environments, map_site_address, site_addresses,
    site_url)
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import HostPair, replace_value

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
EXAMPLE = os.path.join(ROOT, "examples", "wfu", "group_vars", "all.yml")

WFU = {
    "prod": dict(main="www.wfu.edu", sub="wfu.edu", cdn="prod.wp.cdn.aws.wfu.edu",
                 bucket="wfu-cer-wordpress-prod-us-east-1"),
    "pprd": dict(main="pprd.wfu.edu", sub="pprd.wfu.edu", cdn="pprd.wp.cdn.aws.wfu.edu",
                 bucket="wfu-cer-wordpress-pprd-us-east-1"),
    "uat": dict(main="uat.wfu.edu", sub="uat.wfu.edu", cdn="uat.wp.cdn.aws.wfu.edu",
                bucket="wfu-cer-wordpress-uat-us-east-1"),
    "dev": dict(main="dev.wfu.edu", sub="dev.wfu.edu", cdn="dev.wp.cdn.aws.wfu.edu",
                bucket="wfu-cer-wordpress-dev-us-east-1"),
    "local": dict(main="wfu.local", sub="wfu.local", cdn=None, bucket=None),
}
ORDERED_PAIRS = list(itertools.permutations(WFU, 2))
SUBSITES = {2: "news", 3: "admissions", 4: "giving"}

# One column value per entry.  $main and $sub are the network's own hosts, $cdn and $bucket the media
# names, $outside the source's subsite domain for look-alike hosts that are not sites.
TEMPLATE = [
    '<p><a href="https://$main/about/">About</a> <a href="https://news.$sub/2024/05/story/">News</a> '
    '<a href="http://$main/old-page">an old http link</a></p>',
    '<img src="https://$cdn/wp-content/uploads/2024/05/a.jpg" '
    'srcset="https://$cdn/wp-content/uploads/2024/05/a-300x200.jpg 300w"> '
    's3://$bucket/uploads/a.jpg https://$bucket.s3.amazonaws.com/uploads/a.jpg',
    'See https://library.wfu.edu/ and https://webdev.wfu.edu/ and http://mynews.$outside/ '
    'and https://giving.$outside-archive.org/',
    'mailto:webmaster@$main, editor@news.$sub and info@wfu.edu',
    '{"home":"https:\\/\\/$main","feed":"https:\\/\\/news.$sub\\/feed\\/","logo":"https:\\/\\/$cdn\\/logo.png"}',
    '<script src="//giving.$sub/wp-includes/js/x.js"></script>',
    'https://www.facebook.com/sharer.php?u=https%3A%2F%2Fnews.$sub%2F2024%2Fstory%2F&media=https%3A%2F%2F$cdn%2Fa.jpg',
    'https://$main',
    'news.$sub',
    'Visit $main. Or admissions.$sub!',
]


def php_serialize(value):
    """Just enough of PHP's serialize() for the sample: strings (length in UTF-8 bytes), ints, lists, dicts."""
    if isinstance(value, str):
        return 's:%d:"%s";' % (len(value.encode("utf-8")), value)
    if isinstance(value, int):
        return "i:%d;" % value
    items = value.items() if isinstance(value, dict) else enumerate(value)
    return "a:%d:{%s}" % (len(value), "".join(php_serialize(k) + php_serialize(v) for k, v in items))


def serialized_sample(names):
    return php_serialize({"home": "https://%s" % names["main"], "count": 2,
                          "sites": ["//admissions.%s/apply/" % names["sub"], "giving.%s" % names["sub"]],
                          "cdn": "https://%s/x.png" % names["cdn"]})


def media_in_content_of(env):
    """Local has no CDN or bucket: its content carries prod's, as copied from prod."""
    own = WFU[env]
    return (own["cdn"], own["bucket"]) if own["cdn"] else (WFU["prod"]["cdn"], WFU["prod"]["bucket"])


def render(main, sub, cdn, bucket, outside):
    names = dict(main=main, sub=sub, cdn=cdn, bucket=bucket, outside=outside)
    return [string.Template(text).substitute(names) for text in TEMPLATE] + [serialized_sample(names)]


def document(env):
    """The sample content as it is in ``env``."""
    cdn, bucket = media_in_content_of(env)
    return render(WFU[env]["main"], WFU[env]["sub"], cdn, bucket, outside=WFU[env]["sub"])


def expected_after(source, target):
    """The sample content of ``source`` after its migration to ``target``."""
    cdn, bucket = media_in_content_of(source)
    if WFU[source]["cdn"] and WFU[target]["cdn"]:
        cdn, bucket = WFU[target]["cdn"], WFU[target]["bucket"]
    return render(WFU[target]["main"], WFU[target]["sub"], cdn, bucket, outside=WFU[source]["sub"])


def wfu_network(env):
    """The network's wp_blogs rows as they are in ``env``."""
    rows = [dict(blog_id=1, domain=WFU[env]["main"], path="/")]
    rows += [dict(blog_id=blog_id, domain="%s.%s" % (label, WFU[env]["sub"]), path="/")
             for blog_id, label in SUBSITES.items()]
    return Network.from_rows(rows)


def apply(rules, values):
    return [replace_value(value, rules) for value in values]


@pytest.fixture(scope="module")
def wfu():
    with open(EXAMPLE, encoding="utf-8") as handle:
        return load_environments(yaml.safe_load(handle)["wfu_environments"])


def migrate(environments, source, target, values):
    rules = derive_rules(environments[source], environments[target], wfu_network(source))
    return apply(rules, values)


def environments(config):
    return load_environments(config)


# --- the WFU example ---------------------------------------------------------------------------------

def test_example_inventory_matches_the_wfu_table(wfu):
    assert sorted(wfu) == sorted(WFU)
    for name, names in WFU.items():
        env = wfu[name]
        assert (env.scheme, env.host, env.base_path, env.subsite_domain) == ("https", names["main"], "/", names["sub"])
        expected_aliases = {"cdn_host": names["cdn"], "media_bucket": names["bucket"]} if names["cdn"] else {}
        assert env.aliases == expected_aliases


def test_prod_to_uat_literally(wfu):
    result = migrate(wfu, "prod", "uat", document("prod"))
    assert result[0] == ('<p><a href="https://uat.wfu.edu/about/">About</a> '
                         '<a href="https://news.uat.wfu.edu/2024/05/story/">News</a> '
                         '<a href="http://uat.wfu.edu/old-page">an old http link</a></p>')
    assert result[1] == ('<img src="https://uat.wp.cdn.aws.wfu.edu/wp-content/uploads/2024/05/a.jpg" '
                         'srcset="https://uat.wp.cdn.aws.wfu.edu/wp-content/uploads/2024/05/a-300x200.jpg 300w"> '
                         's3://wfu-cer-wordpress-uat-us-east-1/uploads/a.jpg '
                         'https://wfu-cer-wordpress-uat-us-east-1.s3.amazonaws.com/uploads/a.jpg')
    assert result[2] == document("prod")[2]
    assert result[3] == "mailto:webmaster@uat.wfu.edu, editor@news.uat.wfu.edu and info@wfu.edu"
    assert result[4] == ('{"home":"https:\\/\\/uat.wfu.edu","feed":"https:\\/\\/news.uat.wfu.edu\\/feed\\/",'
                         '"logo":"https:\\/\\/uat.wp.cdn.aws.wfu.edu\\/logo.png"}')
    assert result[5] == '<script src="//giving.uat.wfu.edu/wp-includes/js/x.js"></script>'
    assert result[6] == ('https://www.facebook.com/sharer.php?u=https%3A%2F%2Fnews.uat.wfu.edu%2F2024%2Fstory%2F'
                         '&media=https%3A%2F%2Fuat.wp.cdn.aws.wfu.edu%2Fa.jpg')
    assert result[7] == "https://uat.wfu.edu"
    assert result[8] == "news.uat.wfu.edu"
    assert result[9] == "Visit uat.wfu.edu. Or admissions.uat.wfu.edu!"
    assert result[10] == ('a:4:{s:4:"home";s:19:"https://uat.wfu.edu";s:5:"count";i:2;s:5:"sites";a:2:{'
                          'i:0;s:31:"//admissions.uat.wfu.edu/apply/";i:1;s:18:"giving.uat.wfu.edu";}'
                          's:3:"cdn";s:36:"https://uat.wp.cdn.aws.wfu.edu/x.png";}')


def test_uat_to_prod_literally(wfu):
    result = migrate(wfu, "uat", "prod", document("uat"))
    assert result[0] == ('<p><a href="https://www.wfu.edu/about/">About</a> '
                         '<a href="https://news.wfu.edu/2024/05/story/">News</a> '
                         '<a href="http://www.wfu.edu/old-page">an old http link</a></p>')
    assert result[2] == ('See https://library.wfu.edu/ and https://webdev.wfu.edu/ and http://mynews.uat.wfu.edu/ '
                         'and https://giving.uat.wfu.edu-archive.org/')
    assert result[3] == "mailto:webmaster@www.wfu.edu, editor@news.wfu.edu and info@wfu.edu"
    assert result[9] == "Visit www.wfu.edu. Or admissions.wfu.edu!"
    assert result[10] == ('a:4:{s:4:"home";s:19:"https://www.wfu.edu";s:5:"count";i:2;s:5:"sites";a:2:{'
                          'i:0;s:27:"//admissions.wfu.edu/apply/";i:1;s:14:"giving.wfu.edu";}'
                          's:3:"cdn";s:37:"https://prod.wp.cdn.aws.wfu.edu/x.png";}')


def test_dev_to_local_keeps_the_media_links(wfu):
    result = migrate(wfu, "dev", "local", document("dev"))
    assert result[0] == ('<p><a href="https://wfu.local/about/">About</a> '
                         '<a href="https://news.wfu.local/2024/05/story/">News</a> '
                         '<a href="http://wfu.local/old-page">an old http link</a></p>')
    assert result[1] == document("dev")[1]
    assert result[6] == ('https://www.facebook.com/sharer.php?u=https%3A%2F%2Fnews.wfu.local%2F2024%2Fstory%2F'
                         '&media=https%3A%2F%2Fdev.wp.cdn.aws.wfu.edu%2Fa.jpg')


@pytest.mark.parametrize("source,target", ORDERED_PAIRS)
def test_every_pair_gives_the_expected_content(wfu, source, target):
    assert migrate(wfu, source, target, document(source)) == expected_after(source, target)


@pytest.mark.parametrize("source,target", ORDERED_PAIRS)
def test_every_pair_is_idempotent(wfu, source, target):
    rules = derive_rules(wfu[source], wfu[target], wfu_network(source))
    once = apply(rules, document(source))
    assert apply(rules, once) == once
    assert apply(rules, document(target)) == document(target)


@pytest.mark.parametrize("source,target", ORDERED_PAIRS)
def test_every_round_trip_gives_back_the_original(wfu, source, target):
    there = migrate(wfu, source, target, document(source))
    assert migrate(wfu, target, source, there) == document(source)


@pytest.mark.parametrize("source,target", ORDERED_PAIRS)
def test_no_host_is_doubled(wfu, source, target):
    text = "\n".join(migrate(wfu, source, target, document(source)))
    for name in WFU:
        assert "%s.%s." % (name, name) not in text
    assert "wfu.local.wfu" not in text


@pytest.mark.parametrize("source,target", ORDERED_PAIRS)
def test_every_site_address_maps_main_to_main_and_subsites_by_name(wfu, source, target):
    network = wfu_network(source)
    expected = {1: (WFU[target]["main"], "/")}
    expected.update({blog_id: ("%s.%s" % (label, WFU[target]["sub"]), "/") for blog_id, label in SUBSITES.items()})
    assert site_addresses(wfu[source], wfu[target], network) == expected
    rules = derive_rules(wfu[source], wfu[target], network)
    for site in network.sites:
        assert map_site_address(site.domain, site.path, wfu[source], wfu[target], network) == expected[site.blog_id]
        # The rules and the mapping agree on the site's own URL (its siteurl and home options).
        assert replace_value(site_url(wfu[source], site.domain, site.path), rules) == site_url(
            wfu[target], *expected[site.blog_id])


def test_rules_are_host_guarded_and_subsites_come_before_the_main_host(wfu):
    rules = derive_rules(wfu["uat"], wfu["prod"], wfu_network("uat"))
    assert all(isinstance(rule, HostPair) for rule in rules)
    searches = [rule[0] for rule in rules]
    assert searches.index("news.uat.wfu.edu") < searches.index("uat.wfu.edu")
    assert ("uat.wp.cdn.aws.wfu.edu", "prod.wp.cdn.aws.wfu.edu") in rules
    assert searches.index("uat.wp.cdn.aws.wfu.edu") < searches.index("uat.wfu.edu")


def test_wfu_network_is_a_subdomain_network():
    assert wfu_network("prod").subdomain
    assert wfu_network("prod").main_site.domain == "www.wfu.edu"


def test_site_url():
    env = Environment.from_config("local", {"url": "http://localhost:8080/wp/"})
    assert site_url(env, "localhost:8080", "/wp/") == "http://localhost:8080/wp"
    assert site_url(env, "localhost:8080", "/wp/news/") == "http://localhost:8080/wp/news"
    assert site_url(env, "news.example.edu", "/") == "http://news.example.edu"


# --- other shapes of networks ------------------------------------------------------------------------

EXAMPLE_EDU = {
    "dev": {"url": "https://dev.example.edu"},
    "uat": {"url": "https://uat.example.edu/"},
    "local": {"url": "http://localhost:8080/wp"},
}


def subdirectory_network(host, base="/"):
    return Network.from_rows([dict(blog_id=1, domain=host, path=base),
                              dict(blog_id=2, domain=host, path=base + "news/"),
                              dict(blog_id=5, domain=host, path=base + "sports/")])


def test_subdirectory_network_dev_to_uat():
    envs = environments(EXAMPLE_EDU)
    network = subdirectory_network("dev.example.edu")
    assert not network.subdomain
    rules = derive_rules(envs["dev"], envs["uat"], network)
    assert rules == [HostPair("dev.example.edu", "uat.example.edu"), HostPair("%2Fdev.example.edu", "%2Fuat.example.edu")]
    content = ['<a href="https://dev.example.edu/news/2024/">n</a> <a href="https://webdev.example.edu/">w</a> '
               'mail: editor@dev.example.edu, https://library.example.edu/, https://sports.dev.example.edu/']
    assert apply(rules, content) == [
        '<a href="https://uat.example.edu/news/2024/">n</a> <a href="https://webdev.example.edu/">w</a> '
        'mail: editor@uat.example.edu, https://library.example.edu/, https://sports.dev.example.edu/']
    assert site_addresses(envs["dev"], envs["uat"], network) == {
        1: ("uat.example.edu", "/"), 2: ("uat.example.edu", "/news/"), 5: ("uat.example.edu", "/sports/")}


DEV_CONTENT = [
    '<a href="https://dev.example.edu/news/2024/">n</a> <a href="https://dev.example.edu">home</a>',
    'http://dev.example.edu/sports/ //dev.example.edu/wp-content/a.jpg',
    'editor@dev.example.edu wrote about dev.example.edu/news/ and dev.example.edu.',
    '{"u":"https:\\/\\/dev.example.edu\\/news\\/"}',
    'u=https%3A%2F%2Fdev.example.edu%2Fnews%2F',
    'https://webdev.example.edu/ https://dev.example.edu-old.org/',
]
LOCAL_CONTENT = [
    '<a href="http://localhost:8080/wp/news/2024/">n</a> <a href="http://localhost:8080/wp">home</a>',
    'http://localhost:8080/wp/sports/ //localhost:8080/wp/wp-content/a.jpg',
    'editor@localhost:8080 wrote about localhost:8080/wp/news/ and localhost:8080.',
    '{"u":"http:\\/\\/localhost:8080\\/wp\\/news\\/"}',
    'u=http%3A%2F%2Flocalhost%3A8080%2Fwp%2Fnews%2F',
    'https://webdev.example.edu/ https://dev.example.edu-old.org/',
]


def test_root_install_to_a_path_and_port_install():
    envs = environments(EXAMPLE_EDU)
    network = subdirectory_network("dev.example.edu")
    rules = derive_rules(envs["dev"], envs["local"], network)
    assert apply(rules, DEV_CONTENT) == LOCAL_CONTENT
    assert apply(rules, LOCAL_CONTENT) == LOCAL_CONTENT
    addresses = site_addresses(envs["dev"], envs["local"], network)
    assert addresses == {
        1: ("localhost:8080", "/wp/"), 2: ("localhost:8080", "/wp/news/"), 5: ("localhost:8080", "/wp/sports/")}
    for site in network.sites:
        assert replace_value(site_url(envs["dev"], site.domain, site.path), rules) == site_url(
            envs["local"], *addresses[site.blog_id])


def test_path_and_port_install_back_to_the_root():
    envs = environments(EXAMPLE_EDU)
    network = subdirectory_network("localhost:8080", "/wp/")
    rules = derive_rules(envs["local"], envs["dev"], network)
    back = apply(rules, LOCAL_CONTENT)
    # http links come back as https, the scheme of dev; the rest as it was.
    assert back == [value.replace("http://dev", "https://dev").replace("http:\\/\\/dev", "https:\\/\\/dev")
                    .replace("http%3A%2F%2Fdev", "https%3A%2F%2Fdev") for value in DEV_CONTENT]
    assert apply(rules, back) == back
    assert apply(rules, ["see localhost:8080/wp, not localhost:8080/wpx"]) == ["see dev.example.edu, not dev.example.edu/wpx"]
    assert map_site_address("localhost:8080", "/wp/news/", envs["local"], envs["dev"], network) == (
        "dev.example.edu", "/news/")


def test_https_to_http_and_back_on_a_subdomain_network():
    envs = environments({"prod": {"url": "https://www.example.edu", "subsite_domain": "example.edu"},
                         "test": {"url": "http://example.test"}})
    network = Network.from_rows([dict(blog_id=1, domain="www.example.edu", path="/"),
                                 dict(blog_id=2, domain="news.example.edu", path="/")])
    rules = derive_rules(envs["prod"], envs["test"], network)
    content = ["https://www.example.edu/a http://news.example.edu/b https://news.example.edu //news.example.edu/c "
               "https%3A%2F%2Fnews.example.edu%2Fd https://example.edu/"]
    moved = ["http://example.test/a http://news.example.test/b http://news.example.test //news.example.test/c "
             "http%3A%2F%2Fnews.example.test%2Fd https://example.edu/"]
    assert apply(rules, content) == moved
    assert apply(rules, moved) == moved
    back_rules = derive_rules(envs["test"], envs["prod"], Network.from_rows([
        dict(blog_id=1, domain="example.test", path="/"), dict(blog_id=2, domain="news.example.test", path="/")]))
    assert apply(back_rules, moved) == [
        "https://www.example.edu/a https://news.example.edu/b https://news.example.edu //news.example.edu/c "
        "https%3A%2F%2Fnews.example.edu%2Fd https://example.edu/"]


def test_custom_domains_come_from_site_domains():
    envs = environments({
        "prod": {"url": "https://www.example.edu", "subsite_domain": "example.edu",
                 "site_domains": {7: "magazine.org"}},
        "uat": {"url": "https://uat.example.edu", "site_domains": {"7": "magazine.uat.example.edu"}},
    })
    network = Network.from_rows([dict(blog_id=1, domain="www.example.edu", path="/"),
                                 dict(blog_id=7, domain="magazine.org", path="/")])
    assert map_site_address("magazine.org", "/", envs["prod"], envs["uat"], network) == ("magazine.uat.example.edu", "/")
    rules = derive_rules(envs["prod"], envs["uat"], network)
    assert apply(rules, ["https://magazine.org/x https://www.magazine.org/"]) == [
        "https://magazine.uat.example.edu/x https://www.magazine.org/"]
    back = Network.from_rows([dict(blog_id=1, domain="uat.example.edu", path="/"),
                              dict(blog_id=7, domain="magazine.uat.example.edu", path="/")])
    assert map_site_address("magazine.uat.example.edu", "/", envs["uat"], envs["prod"], back) == ("magazine.org", "/")


def test_extra_replacements_come_first_and_only_for_their_targets():
    envs = environments({
        "prod": {"url": "https://www.example.edu",
                 "extra_replacements": [{"search": "UA-PROD-1", "replace": "UA-TEST-9", "targets": ["uat"]},
                                        {"search": "https://www.example.edu/feed", "replace": "https://feeds.example.net/x"}]},
        "uat": {"url": "https://uat.example.edu"},
        "dev": {"url": "https://dev.example.edu"},
    })
    network = Network.from_rows([dict(blog_id=1, domain="www.example.edu", path="/")])
    to_uat = derive_rules(envs["prod"], envs["uat"], network)
    assert to_uat[:2] == [("UA-PROD-1", "UA-TEST-9"), ("https://www.example.edu/feed", "https://feeds.example.net/x")]
    assert apply(to_uat, ["UA-PROD-1 https://www.example.edu/feed/ https://www.example.edu/"]) == [
        "UA-TEST-9 https://feeds.example.net/x/ https://uat.example.edu/"]
    to_dev = derive_rules(envs["prod"], envs["dev"], network)
    assert ("UA-PROD-1", "UA-TEST-9") not in to_dev
    assert apply(to_dev, ["UA-PROD-1"]) == ["UA-PROD-1"]


def test_aliases_pair_up_by_name_and_only_when_both_define_them():
    envs = environments({
        "a": {"url": "https://a.example.edu", "aliases": {"bucket": "media-a", "cdn": "cdn-a.example.net"}},
        "b": {"url": "https://b.example.edu", "aliases": {"bucket": "media-b"}},
    })
    rules = derive_rules(envs["a"], envs["b"], Network.from_rows([dict(blog_id=1, domain="a.example.edu", path="/")]))
    assert HostPair("media-a", "media-b") in rules
    assert not any("cdn-a" in rule[0] for rule in rules)
    assert apply(rules, ["s3://media-a/x media-archive s3://media-a-old/ cdn-a.example.net"]) == [
        "s3://media-b/x media-archive s3://media-a-old/ cdn-a.example.net"]


# --- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("config,message", [
    ({}, "environment 'x': url is missing"),
    ({"url": ""}, "environment 'x': url is missing"),
    ({"url": "www.example.edu"}, "needs a scheme and a host"),
    ({"url": "ftp://www.example.edu"}, "needs a scheme and a host"),
    ({"url": "https://"}, "needs a scheme and a host"),
    ({"url": "https://www.example.edu/?p=1"}, "without user, query or fragment"),
    ({"url": "https://user:pw@www.example.edu"}, "without user, query or fragment"),
    ({"url": "https://www_example.edu"}, "is not a host name"),
    ({"url": "https://a.example.edu", "subsite_domain": "https://example.edu"}, "subsite_domain 'https://example.edu'"),
    ({"url": "https://a.example.edu", "subsit_domain": "example.edu"}, "unknown setting(s) subsit_domain"),
    ({"url": "https://a.example.edu", "aliases": ["x"]}, "aliases must map names"),
    ({"url": "https://a.example.edu", "aliases": {"cdn": ""}}, "aliases.cdn must be a non-empty string"),
    ({"url": "https://a.example.edu", "site_domains": {"one": "x.org"}}, "site_domains key 'one' is not a blog id"),
    ({"url": "https://a.example.edu", "site_domains": {1: "x.org"}}, "cannot name the main site"),
    ({"url": "https://a.example.edu", "extra_replacements": {"search": "a"}}, "must be a list"),
    ({"url": "https://a.example.edu", "extra_replacements": [{"search": "", "replace": "b"}]},
     "extra_replacements[0].search must be a non-empty string"),
    ({"url": "https://a.example.edu", "extra_replacements": [{"search": "a", "replace": "a"}]}, "with itself"),
    ({"url": "https://a.example.edu", "extra_replacements": [{"search": "a", "replace": "b", "to": "y"}]},
     "unknown key(s) to"),
    ({"url": "https://a.example.edu", "extra_replacements": [{"search": "a", "replace": "b", "targets": ["x"]}]},
     "names 'x' itself"),
])
def test_bad_environment_settings_are_named(config, message):
    with pytest.raises(ConfigError) as error:
        Environment.from_config("x", config)
    assert message in str(error.value)
    assert "'x'" in str(error.value)


def test_unknown_environment_names():
    envs = environments(EXAMPLE_EDU)
    with pytest.raises(ConfigError, match=r"target_env 'qa' is not in wfu_environments \(defined: dev, local, uat\)"):
        environment_pair(envs, "dev", "qa")
    with pytest.raises(ConfigError, match="names unknown environment"):
        environments({"a": {"url": "https://a.example.edu",
                            "extra_replacements": [{"search": "x", "replace": "y", "targets": ["qa"]}]}})


def test_same_environment_or_same_address_is_refused():
    envs = environments({"a": {"url": "https://a.example.edu"}, "b": {"url": "https://A.example.edu/"},
                         "root": {"url": "https://example.edu"}, "nested": {"url": "https://example.edu/staging"},
                         "sibling": {"url": "https://example.edu/other"}, "sibling2": {"url": "https://example.edu/staging2"}})
    with pytest.raises(ConfigError, match="both 'a'"):
        environment_pair(envs, "a", "a")
    with pytest.raises(ConfigError, match="'a' and 'b' both have their main site at a.example.edu"):
        environment_pair(envs, "a", "b")
    with pytest.raises(ConfigError, match="share the host example.edu and 'nested'"):
        environment_pair(envs, "root", "nested")
    with pytest.raises(ConfigError, match="share the host example.edu and 'nested'"):
        environment_pair(envs, "nested", "root")
    environment_pair(envs, "nested", "sibling2")
    rules = derive_rules(envs["nested"], envs["sibling"], subdirectory_network("example.edu", "/staging/"))
    moved = apply(rules, ["https://example.edu/staging/news/ https://example.edu/staging"])
    assert moved == ["https://example.edu/other/news/ https://example.edu/other"]
    assert apply(rules, moved) == moved


def test_a_non_idempotent_extra_replacement_is_refused():
    envs = environments({"prod": {"url": "https://www.example.edu",
                                  "extra_replacements": [{"search": "cdn.example.edu", "replace": "uat.cdn.example.edu"}]},
                         "uat": {"url": "https://uat.example.edu"}})
    with pytest.raises(ConfigError) as error:
        derive_rules(envs["prod"], envs["uat"], Network.from_rows([dict(blog_id=1, domain="www.example.edu", path="/")]))
    message = str(error.value)
    assert "prod -> uat are not idempotent" in message
    assert "extra_replacements[0] of 'prod'" in message
    assert "uat.uat.cdn.example.edu" in message
    assert "replace contains its search" in message


def test_an_alias_whose_replacement_contains_it_as_a_name_is_refused():
    envs = environments({"a": {"url": "https://a.example.edu", "aliases": {"cdn": "cdn.example.net"}},
                         "b": {"url": "https://b.example.edu", "aliases": {"cdn": "cdn.example.net.b.example.org"}}})
    with pytest.raises(ConfigError, match=r"turns 'cdn.example.net' into 'cdn.example.net.b.example.org' \(aliases.cdn\)"):
        derive_rules(envs["a"], envs["b"], Network.from_rows([dict(blog_id=1, domain="a.example.edu", path="/")]))


def test_a_subsite_named_like_the_targets_main_host_is_refused(wfu):
    network = Network.from_rows([dict(blog_id=1, domain="www.wfu.edu", path="/"),
                                 dict(blog_id=9, domain="dev.wfu.edu", path="/")])
    derive_rules(wfu["prod"], wfu["uat"], network)
    with pytest.raises(ConfigError) as error:
        derive_rules(wfu["prod"], wfu["dev"], network)
    assert ("prod -> dev are not idempotent: one run turns 'www.wfu.edu' into 'dev.wfu.edu' (the address of site 1 "
            "(www.wfu.edu/)), and a second run turns that into 'dev.dev.wfu.edu' (the address of site 9 (dev.wfu.edu/))"
            ) in str(error.value)


def test_a_site_outside_the_network_domains_names_the_site_and_the_settings(wfu):
    network = Network.from_rows([dict(blog_id=1, domain="www.wfu.edu", path="/"),
                                 dict(blog_id=12, domain="wakeforestmagazine.com", path="/")])
    with pytest.raises(ConfigError) as error:
        derive_rules(wfu["prod"], wfu["uat"], network)
    message = str(error.value)
    assert "site 12 (wakeforestmagazine.com/) of 'prod'" in message
    assert "subsite_domain (wfu.edu)" in message
    assert "site_domains: {12: <domain>}" in message
    with pytest.raises(ConfigError, match="site 12"):
        map_site_address("wakeforestmagazine.com", "/", wfu["prod"], wfu["uat"], network)


def test_two_sites_landing_on_one_address_are_refused(wfu):
    network = Network.from_rows([dict(blog_id=1, domain="www.wfu.edu", path="/"),
                                 dict(blog_id=6, domain="wfu.edu", path="/")])
    with pytest.raises(ConfigError, match=r"site 1 \(www.wfu.edu/\) and site 6 \(wfu.edu/\) of 'prod' would both live "
                                          r"at uat.wfu.edu/ in 'uat'"):
        site_addresses(wfu["prod"], wfu["uat"], network)


def test_url_that_does_not_match_the_main_site_is_refused(wfu):
    network = Network.from_rows([dict(blog_id=1, domain="wfu.edu", path="/")])
    with pytest.raises(ConfigError, match=r"url of 'prod' is https://www.wfu.edu but wp_blogs puts the main site "
                                          r"\(blog 1\) at wfu.edu/"):
        derive_rules(wfu["prod"], wfu["uat"], network)


def test_a_site_path_outside_the_base_path_is_refused():
    envs = environments(EXAMPLE_EDU)
    network = Network.from_rows([dict(blog_id=1, domain="localhost:8080", path="/wp/"),
                                 dict(blog_id=3, domain="localhost:8080", path="/blog/")])
    with pytest.raises(ConfigError, match=r"site 3 \(localhost:8080/blog/\) of 'local' is not under the base path /wp/"):
        derive_rules(envs["local"], envs["dev"], network)


@pytest.mark.parametrize("rows,message", [
    ([dict(blog_id=2, domain="a.example.edu", path="/")], "no row for the main site"),
    ([dict(blog_id=1, domain="", path="/")], "site 1 has domain ''"),
    ([dict(blog_id=1, domain="a.example.edu", path="")], "path starting with /"),
    ([dict(blog_id=1, domain="a.example.edu", path="/"), dict(blog_id=1, domain="b.example.edu", path="/")], "twice"),
    ([dict(blog_id="1; DROP", domain="a.example.edu", path="/")], "positive integer"),
])
def test_bad_wp_blogs_rows(rows, message):
    with pytest.raises(ConfigError, match=message):
        Network.from_rows(rows)


def test_a_large_network_is_derived_quickly_and_still_checked(wfu):
    rows = [dict(blog_id=1, domain="www.wfu.edu", path="/")]
    rows += [dict(blog_id=blog_id, domain="site%d.wfu.edu" % blog_id, path="/") for blog_id in range(2, 1002)]
    started = time.monotonic()
    rules = derive_rules(wfu["prod"], wfu["local"], Network.from_rows(rows))
    assert time.monotonic() - started < 2
    assert len(rules) == 2 * 1001
    assert replace_value("https://site999.wfu.edu/ and https://site9999.wfu.edu/", rules) == (
        "https://site999.wfu.local/ and https://site9999.wfu.edu/")
    rows.append(dict(blog_id=1002, domain="dev.wfu.edu", path="/"))
    with pytest.raises(ConfigError, match="site 1002"):
        derive_rules(wfu["prod"], wfu["dev"], Network.from_rows(rows))


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
