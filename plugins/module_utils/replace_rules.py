# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a network's sites live in another environment, and the search-replace rules that move their content there.

Everything is deduced from each environment's settings in ``wfu_environments``
and from the source network's own ``wp_blogs`` rows; nothing here touches a
database.

* ``url`` gives the scheme, the main site's host (a port is part of the host)
  and the base path of the install (``https://localhost:8080/wp``).
* ``subsite_domain`` (default: the host of ``url``) is the domain under which
  the subdomain sites live: prod ``www.wfu.edu`` keeps its sites under
  ``wfu.edu`` (``news.wfu.edu``), uat keeps them under ``uat.wfu.edu``.
* ``site_domains`` gives the address of sites whose domain follows no pattern
  (custom domains), keyed by blog id.
* ``aliases`` names the environment's counterparts of shared things (CDN host,
  media bucket); the same name in the source and the target makes a rule.
* ``extra_replacements`` are literal pairs applied when the environment is the
  source.

Only the network's own hosts are rewritten, each as a whole host name (see
``HostPair``): ``webdev.wfu.edu`` or ``library.wfu.edu`` stay as they are unless
they are sites of the network.  The rules are checked to be idempotent, so
content that already points at the target is left alone.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import quote, urlsplit

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.search_replace import HostPair, replace_value
from ansible_collections.wfu.multisite.plugins.module_utils.tables import MAIN_SITE_ID, validate_site_id

# The keys an environment of wfu_environments may have; anything else is a typo worth reporting.
# (media is read by the media sync, preserve_options and preserve_sitemeta by the pipeline, not by the replacements.)
ENVIRONMENT_KEYS = ("url", "db", "table_prefix", "subsite_domain", "site_domains", "aliases", "extra_replacements",
                    "media", "preserve_options", "preserve_sitemeta")
EXTRA_REPLACEMENT_KEYS = ("search", "replace", "targets")
SCHEMES = ("http", "https")

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
HOST_RE = re.compile(r"^%s(?:\.%s)*(?::[0-9]{1,5})?$" % (_LABEL, _LABEL))
ALIAS_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class ExtraReplacement:
    """One literal (search, replace) pair of an environment, for all targets or only the named ones."""

    search: str
    replace: str
    targets: tuple[str, ...] | None = None

    def applies_to(self, target_name):
        return self.targets is None or target_name in self.targets


@dataclasses.dataclass(frozen=True)
class Environment:
    """The addressing settings of one environment of ``wfu_environments``."""

    name: str
    scheme: str
    host: str
    base_path: str
    subsite_domain: str
    site_domains: dict = dataclasses.field(default_factory=dict)
    aliases: dict = dataclasses.field(default_factory=dict)
    extra_replacements: tuple[ExtraReplacement, ...] = ()

    @property
    def address(self):
        """Host and base path without the trailing slash: ``www.wfu.edu``, ``localhost:8080/wp``."""
        return self.host + self.base_path.rstrip("/")

    @property
    def url(self):
        return "%s://%s" % (self.scheme, self.address)

    @classmethod
    def from_config(cls, name, config):
        """Validate one environment's settings; errors name the environment and the key."""
        if not isinstance(config, dict):
            raise ConfigError("environment %r of wfu_environments must be a mapping, got %s" % (name, type(config).__name__))
        unknown = sorted(set(config) - set(ENVIRONMENT_KEYS))
        if unknown:
            raise ConfigError("environment %r has unknown setting(s) %s; the settings are: %s"
                              % (name, ", ".join(unknown), ", ".join(ENVIRONMENT_KEYS)))
        scheme, host, base_path = _parse_url(name, config.get("url"))
        subsite_domain = host
        if config.get("subsite_domain") is not None:
            subsite_domain = _parse_host(config["subsite_domain"], "environment %r: subsite_domain" % name)
        return cls(
            name=name,
            scheme=scheme,
            host=host,
            base_path=base_path,
            subsite_domain=subsite_domain,
            site_domains=_parse_site_domains(name, config.get("site_domains")),
            aliases=_parse_aliases(name, config.get("aliases")),
            extra_replacements=_parse_extra_replacements(name, config.get("extra_replacements")),
        )


@dataclasses.dataclass(frozen=True)
class Site:
    """One wp_blogs row, as far as addresses are concerned."""

    blog_id: int
    domain: str
    path: str

    def __str__(self):
        return "site %d (%s%s)" % (self.blog_id, self.domain, self.path)


@dataclasses.dataclass(frozen=True)
class Network:
    """The sites of a network as its wp_blogs rows list them, in one environment."""

    sites: tuple[Site, ...]
    main_blog_id: int = MAIN_SITE_ID

    @classmethod
    def from_rows(cls, rows, main_blog_id=MAIN_SITE_ID):
        """Build from wp_blogs rows (mappings with ``blog_id``, ``domain``, ``path``)."""
        sites = []
        seen = set()
        for row in rows:
            blog_id = validate_site_id(row["blog_id"])
            domain = str(row["domain"] or "").strip().lower()
            path = str(row["path"] or "")
            if not domain or not path.startswith("/"):
                raise ConfigError("wp_blogs row of site %d has domain %r and path %r: a site needs a domain and a path "
                                  "starting with /" % (blog_id, row["domain"], row["path"]))
            if blog_id in seen:
                raise ConfigError("wp_blogs lists site %d twice" % blog_id)
            seen.add(blog_id)
            sites.append(Site(blog_id, domain, path))
        if main_blog_id not in seen:
            raise ConfigError("wp_blogs has no row for the main site (blog_id %d)" % main_blog_id)
        return cls(tuple(sorted(sites, key=lambda site: site.blog_id)), main_blog_id)

    @property
    def main_site(self):
        return self.site(self.main_blog_id)

    @property
    def subdomain(self):
        """True when some site other than the main one has a host of its own."""
        main_domain = self.main_site.domain
        return any(site.domain != main_domain for site in self.sites if site.blog_id != self.main_blog_id)

    def site(self, blog_id):
        for site in self.sites:
            if site.blog_id == blog_id:
                return site
        raise ConfigError("site %s is not in the network's wp_blogs" % blog_id)

    def site_at(self, domain, path):
        """The site at this address, or None."""
        domain = domain.lower()
        for site in self.sites:
            if site.domain == domain and site.path == path:
                return site
        return None


def load_environments(config):
    """Validate ``wfu_environments``; return ``{name: Environment}``."""
    if not isinstance(config, dict) or not config:
        raise ConfigError("wfu_environments must be a mapping of environment names to their settings")
    environments = {str(name): Environment.from_config(str(name), settings) for name, settings in config.items()}
    for env in environments.values():
        for index, extra in enumerate(env.extra_replacements):
            unknown = sorted(set(extra.targets or ()) - set(environments))
            if unknown:
                raise ConfigError("environment %r: extra_replacements[%d].targets names unknown environment(s) %s"
                                  % (env.name, index, ", ".join(unknown)))
    return environments


def environment_pair(environments, source_name, target_name):
    """The (source, target) Environments of a migration, after checking they make sense together."""
    for role, name in (("source_env", source_name), ("target_env", target_name)):
        if name not in environments:
            raise ConfigError("%s %r is not in wfu_environments (defined: %s)" % (role, name, ", ".join(sorted(environments))))
    source, target = environments[source_name], environments[target_name]
    _check_pair(source, target)
    return source, target


def site_url(env, domain, path):
    """The siteurl/home WordPress stores for a site at this address in ``env``: no trailing slash."""
    return ("%s://%s%s" % (env.scheme, domain, path)).rstrip("/")


def map_site_address(domain, path, source, target, network):
    """Return the (domain, path) in ``target`` of the site at (domain, path) in ``source``.

    The main site's host becomes the target's main host; a host under the
    source's ``subsite_domain`` keeps its own part and moves under the target's
    (``news.wfu.edu`` -> ``news.uat.wfu.edu``); ``site_domains`` of the target
    overrides both.  The path keeps its part below the source's base path,
    under the target's base path.
    """
    _check_pair(source, target)
    _check_main_site(source, network)
    return _map_address(network.site_at(domain, path), domain.lower(), path, source, target)


def site_addresses(source, target, network):
    """``{blog_id: (domain, path)}`` in ``target`` for every site of the network; two sites never share one."""
    _check_pair(source, target)
    _check_main_site(source, network)
    addresses = {}
    owners = {}
    for site in network.sites:
        address = _map_address(site, site.domain, site.path, source, target)
        if address in owners:
            raise ConfigError("%s and %s of %r would both live at %s%s in %r: give one of them another address with "
                              "site_domains of %r" % (owners[address], site, source.name, address[0], address[1],
                                                      target.name, target.name))
        owners[address] = site
        addresses[site.blog_id] = address
    return addresses


def derive_rules(source, target, network):
    """The ordered (search, replace) pairs that move the network's content from ``source`` to ``target``.

    Apply them with ``search_replace.replace_value`` to every site's tables and
    to the network tables.  They always cover the whole network, whichever site
    is being moved, because a site's content links to the other sites too.
    Order: the source's ``extra_replacements`` as written, then ``aliases``,
    then the sites' hosts; longer names before shorter ones.
    """
    rules = _Rules(source, target)
    for index, extra in enumerate(source.extra_replacements):
        if extra.applies_to(target.name):
            rules.add((extra.search, extra.replace), "extra_replacements[%d] of %r" % (index, source.name))
    shared_aliases = [key for key in source.aliases if key in target.aliases and source.aliases[key] != target.aliases[key]]
    for key in _longest_first(shared_aliases, source.aliases.get):
        for pair in _name_rules(source.aliases[key], target.aliases[key]):
            rules.add(pair, "aliases.%s" % key)
    host_mapping = _host_mapping(source, target, network)
    for source_host in _longest_first(host_mapping, str):
        target_host, site = host_mapping[source_host]
        for pair in _address_rules(source_host, target_host, source, target):
            rules.add(pair, "the address of %s" % site)
    rules.check_idempotent()
    return rules.pairs


def _longest_first(keys, text_of):
    """Longer names first, so that a name containing another is rewritten before it."""
    return sorted(keys, key=lambda key: (-len(text_of(key)), text_of(key)))


class _Rules:
    """Rules being collected, each with where it came from, for error messages."""

    def __init__(self, source, target):
        self.source = source
        self.target = target
        self.pairs = []
        self.origins = []
        self._by_search = {}

    def add(self, pair, origin):
        search, replace = pair
        if search in self._by_search:
            index = self._by_search[search]
            if self.pairs[index][1] == replace:
                return
            raise ConfigError("%s and %s both rewrite %r (to %r and to %r) for %s -> %s: make them agree"
                              % (self.origins[index], origin, search, self.pairs[index][1], replace,
                                 self.source.name, self.target.name))
        self._by_search[search] = len(self.pairs)
        self.pairs.append(pair)
        self.origins.append(origin)

    def check_idempotent(self):
        """Refuse rules that would rewrite their own output (``uat.uat.``, ``/wp/wp``) on a second run.

        Only a rule whose replacement holds some rule's search can leave text
        that a second run changes again; each such rule's search and
        replacement are run through all the rules twice.  Finding them costs
        a set lookup per search, not a scan per search, so a network of
        thousands of sites is checked in a moment.
        """
        replacements = [pair[1] for pair in self.pairs]
        occurring = set(_occurring([pair[0] for pair in self.pairs], replacements))
        suspects = set()
        for pair in self.pairs:
            if pair[0] in occurring:
                suspects.update(index for index, replacement in enumerate(replacements)
                                if pair[0] in replacement and replace_value(replacement, [pair]) != replacement)
        for index in sorted(suspects):
            for text in self.pairs[index]:
                for context in _probe_contexts(text):
                    once = replace_value(context, self.pairs)
                    twice = replace_value(once, self.pairs)
                    if twice != once:
                        raise ConfigError(self._not_idempotent(context.strip(), once.strip(), twice.strip()))

    def _not_idempotent(self, text, once, twice):
        first, again = self._first_change(text), self._first_change(once)
        hint = ""
        if again is not None and self.origins[again].startswith("extra_replacements"):
            search, replace = self.pairs[again]
            if search in replace:
                hint = (" Its replace contains its search, so every run adds another copy: make the search longer, or "
                        "use aliases, which match whole names only.")
        return ("the rules for %s -> %s are not idempotent: one run turns %r into %r (%s), and a second run turns that "
                "into %r (%s).%s Content that already points at %s would be damaged; check url, subsite_domain, "
                "site_domains, aliases and extra_replacements of both environments."
                % (self.source.name, self.target.name, text, once, self._origin(first), twice, self._origin(again),
                   hint, self.target.name))

    def _first_change(self, text):
        """Index of the first rule that changes ``text`` on its own, or None."""
        for index, pair in enumerate(self.pairs):
            if pair[0] in text and replace_value(text, [pair]) != text:
                return index
        return None

    def _origin(self, index):
        return "several rules together" if index is None else self.origins[index]


def _probe_contexts(text):
    return (" %s " % text, "//%s/" % text)


def _occurring(searches, texts):
    """The searches that occur in some of ``texts``.

    A search occurs only if every q-gram of it occurs somewhere, so most are
    ruled out by set lookups before the one exact scan.
    """
    joined = "\n".join(texts)
    size = min(8, min(len(search) for search in searches))
    grams = {joined[start:start + size] for start in range(len(joined) - size + 1)}
    return [search for search in dict.fromkeys(searches)
            if all(search[start:start + size] in grams for start in range(len(search) - size + 1)) and search in joined]


def _host_mapping(source, target, network):
    """``{source host: (target host, first site on it)}`` for every host of the network."""
    mapping = {}
    addresses = site_addresses(source, target, network)
    for site in network.sites:
        target_host = addresses[site.blog_id][0]
        known_host, known_site = mapping.setdefault(site.domain, (target_host, site))
        if known_host != target_host:
            raise ConfigError("%s and %s share the host %s in %r but would get different hosts (%s, %s) in %r: "
                              "links to that host cannot be rewritten for both; check site_domains of %r"
                              % (known_site, site, site.domain, source.name, known_host, target_host, target.name,
                                 target.name))
    return mapping


def _address_rules(source_host, target_host, source, target):
    """Rules moving one host of the network, with the environments' schemes and base paths.

    The bare host is matched as a whole host name (mail addresses, wp_blogs
    domains, ``//host`` links).  A scheme rule is added only when the schemes
    differ, path rules only when the base paths differ; when the source is
    installed at the root, the bare path rule needs the ``/`` after the host so
    that a mail address keeps its plain host.  Percent-encoded links
    (``https%3A%2F%2Fhost``) get their own rules: the host guard does not see
    a boundary after ``%2F``.
    """
    source_address = source_host + source.base_path.rstrip("/")
    target_address = target_host + target.base_path.rstrip("/")
    link_pairs = []
    if source.scheme != target.scheme:
        link_pairs.append(("%s://%s" % (source.scheme, source_address), "%s://%s" % (target.scheme, target_address)))
    name_pairs = []
    if source.base_path != target.base_path:
        link_pairs.append(("//" + source_address, "//" + target_address))
        if source.base_path == "/":
            name_pairs.append((source_address + "/", target_address + "/"))
        else:
            name_pairs.append((source_address, target_address))
    if source_host != target_host:
        name_pairs.append((source_host, target_host))
    rules = []
    for search, replace in link_pairs:
        rules += [HostPair(search, replace), HostPair(_percent_encoded(search), _percent_encoded(replace))]
    for search, replace in name_pairs:
        rules += _name_rules(search, replace)
    return rules


def _name_rules(search, replace):
    """A whole-name rule and its form after ``%2F`` in percent-encoded links (``u=https%3A%2F%2Fhost``)."""
    return [HostPair(search, replace), HostPair("%2F" + _percent_encoded(search), "%2F" + _percent_encoded(replace))]


def _percent_encoded(text):
    return quote(text, safe="")


def _map_address(site, domain, path, source, target):
    what = str(site) if site else "the address %s%s" % (domain, path)
    if site and site.blog_id in target.site_domains:
        new_domain = target.site_domains[site.blog_id]
    elif domain == source.host:
        new_domain = target.host
    elif domain == source.subsite_domain:
        new_domain = target.subsite_domain
    elif domain.endswith("." + source.subsite_domain):
        new_domain = domain[:-len(source.subsite_domain)] + target.subsite_domain
    else:
        raise ConfigError(
            "%s of %r is neither on the host of its url (%s) nor under its subsite_domain (%s): set subsite_domain of "
            "%r if its subdomain sites live under another domain, or give the site's address in %r with "
            "site_domains: {%s: <domain>}" % (what, source.name, source.host, source.subsite_domain, source.name,
                                              target.name, site.blog_id if site else "<blog id>"))
    if not path.startswith(source.base_path):
        raise ConfigError("%s of %r is not under the base path %s of its url %s: fix url of %r"
                          % (what, source.name, source.base_path, source.url, source.name))
    return new_domain, target.base_path + path[len(source.base_path):]


def _check_pair(source, target):
    if source.name == target.name:
        raise ConfigError("source_env and target_env are both %r: a migration needs two environments" % source.name)
    if source.host != target.host:
        return
    if source.base_path == target.base_path:
        raise ConfigError("environments %r and %r both have their main site at %s: a migration between them would "
                          "change nothing; fix url of one of them" % (source.name, target.name, source.address))
    inner, outer = sorted((source, target), key=lambda env: len(env.base_path))[::-1]
    if inner.base_path.startswith(outer.base_path):
        raise ConfigError("environments %r and %r share the host %s and %r's base path %s lies inside %r's %s: every "
                          "run would rewrite links again; give them different hosts or sibling paths"
                          % (source.name, target.name, source.host, inner.name, inner.base_path, outer.name,
                             outer.base_path))


def _check_main_site(source, network):
    main = network.main_site
    if (main.domain, main.path) != (source.host, source.base_path):
        raise ConfigError("url of %r is %s but wp_blogs puts the main site (blog %d) at %s%s: set url of %r to the "
                          "main site's address" % (source.name, source.url, main.blog_id, main.domain, main.path,
                                                   source.name))


def _parse_url(env_name, url):
    where = "environment %r: url" % env_name
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("%s is missing: give the main site's URL, e.g. https://www.example.edu" % where)
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in SCHEMES or not parts.netloc:
        raise ConfigError("%s %r needs a scheme and a host, e.g. https://www.example.edu" % (where, url))
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("%s %r must be scheme://host[:port][/path], without user, query or fragment" % (where, url))
    host = _parse_host(parts.netloc, where)
    segments = [segment for segment in parts.path.split("/") if segment]
    base_path = "/" + "".join(segment + "/" for segment in segments)
    return parts.scheme.lower(), host, base_path


def _parse_host(value, where):
    host = str(value).strip().lower() if isinstance(value, str) else ""
    if not HOST_RE.match(host):
        raise ConfigError("%s %r is not a host name (letters, digits, '-' and '.', optionally :port)" % (where, value))
    return host


def _parse_site_domains(env_name, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("environment %r: site_domains must map blog ids to domains, e.g. {12: magazine.example.edu}"
                          % env_name)
    domains = {}
    for blog_id, domain in value.items():
        try:
            blog_id = validate_site_id(blog_id)
        except ConfigError:
            raise ConfigError("environment %r: site_domains key %r is not a blog id" % (env_name, blog_id))
        if blog_id == MAIN_SITE_ID:
            raise ConfigError("environment %r: site_domains cannot name the main site (%d); its address is url"
                              % (env_name, MAIN_SITE_ID))
        domains[blog_id] = _parse_host(domain, "environment %r: site_domains.%d" % (env_name, blog_id))
    return domains


def _parse_aliases(env_name, value):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("environment %r: aliases must map names to values, e.g. {cdn_host: cdn.example.edu}" % env_name)
    aliases = {}
    for key, alias in value.items():
        if not isinstance(key, str) or not ALIAS_NAME_RE.match(key):
            raise ConfigError("environment %r: aliases key %r must be a name (letters, digits, '_')" % (env_name, key))
        if not isinstance(alias, str) or not alias.strip() or alias != alias.strip():
            raise ConfigError("environment %r: aliases.%s must be a non-empty string without surrounding spaces, "
                              "got %r" % (env_name, key, alias))
        aliases[key] = alias
    return aliases


def _parse_extra_replacements(env_name, value):
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError("environment %r: extra_replacements must be a list of {search, replace} mappings" % env_name)
    extras = []
    for index, item in enumerate(value):
        where = "environment %r: extra_replacements[%d]" % (env_name, index)
        if not isinstance(item, dict):
            raise ConfigError("%s must be a mapping with search and replace" % where)
        unknown = sorted(set(item) - set(EXTRA_REPLACEMENT_KEYS))
        if unknown:
            raise ConfigError("%s has unknown key(s) %s; the keys are: %s"
                              % (where, ", ".join(unknown), ", ".join(EXTRA_REPLACEMENT_KEYS)))
        search, replace = item.get("search"), item.get("replace")
        if not isinstance(search, str) or not search:
            raise ConfigError("%s.search must be a non-empty string" % where)
        if not isinstance(replace, str):
            raise ConfigError("%s.replace must be a string" % where)
        if search == replace:
            raise ConfigError("%s replaces %r with itself" % (where, search))
        targets = item.get("targets")
        if targets is not None:
            if isinstance(targets, str):
                targets = [targets]
            if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
                raise ConfigError("%s.targets must list environment names" % where)
            if env_name in targets:
                raise ConfigError("%s.targets names %r itself; extra_replacements apply when %r is the source"
                                  % (where, env_name, env_name))
            targets = tuple(targets)
        extras.append(ExtraReplacement(search, replace, targets))
    return tuple(extras)
