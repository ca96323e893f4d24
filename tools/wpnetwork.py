# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Synthetic WordPress multisite networks for tests, benchmarks and demos.

``generate_sql(spec)`` streams the SQL of a whole network: the WordPress 6.x
multisite schema (global tables and one set of blog tables per site) and
content built to exercise a migration — site, cross-site, main-site and
outside URLs in HTML, PHP-serialized options and meta (objects, floats,
``C:`` values, double serialization, multibyte and 4-byte UTF-8 text), JSON
with escaped slashes, ``guid`` columns, comments and users.  The same spec
always gives byte-identical SQL; each site draws from its own random stream
seeded by ``(seed, blog_id)``.  ``load_network`` loads it through PyMySQL.

See docs/test-network.md for what a network contains and how to use it.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import getpass
import hashlib
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator
from urllib.parse import urlsplit

CHARSET = "utf8mb4"
COLLATION = "utf8mb4_unicode_520_ci"
TABLE_OPTIONS = "DEFAULT CHARACTER SET %s COLLATE %s" % (CHARSET, COLLATION)
WP_DB_VERSION = 57155
# Rows are packed into multi-row INSERTs of about this many characters.
STATEMENT_SIZE = 1 << 20
# Every date in a network is an offset from this instant (GMT); the local time is five hours behind.
BASE_TIME = datetime.datetime(2023, 1, 2, 14, 0, 0)
LOCAL_OFFSET = datetime.timedelta(hours=-5)
PREFIX_RE = re.compile(r"^[A-Za-z0-9_]+$")
MAX_IDENTIFIER = 64

# Hosts and addresses outside any generated network: a migration must leave them as they are.
# ``webdev.example.edu`` contains ``dev.example.edu`` on purpose.
LIBRARY_URL = "https://library.example.edu"
WEBDEV_URL = "https://webdev.example.edu"
MAILTO = "mailto:someone@example.edu"
EXTERNAL_URLS = (LIBRARY_URL, WEBDEV_URL, MAILTO, "https://www.youtube.com", "https://wordpress.org")

# Blog flags by the last digit of a subsite's id, so a ten-site network has one site of each kind.
FLAGS_BY_LAST_DIGIT = {4: ("public", 0), 5: ("archived", 1), 6: ("mature", 1), 7: ("spam", 1), 8: ("deleted", 1)}

# -- WordPress schema (wp-admin/includes/schema.php, WordPress 6.x, multisite) ---------------------------------

GLOBAL_SCHEMA = {
    "users": """(
  ID bigint(20) unsigned NOT NULL auto_increment,
  user_login varchar(60) NOT NULL default '',
  user_pass varchar(255) NOT NULL default '',
  user_nicename varchar(50) NOT NULL default '',
  user_email varchar(100) NOT NULL default '',
  user_url varchar(100) NOT NULL default '',
  user_registered datetime NOT NULL default '0000-00-00 00:00:00',
  user_activation_key varchar(255) NOT NULL default '',
  user_status int(11) NOT NULL default '0',
  display_name varchar(250) NOT NULL default '',
  spam tinyint(2) NOT NULL default '0',
  deleted tinyint(2) NOT NULL default '0',
  PRIMARY KEY  (ID),
  KEY user_login_key (user_login),
  KEY user_nicename (user_nicename),
  KEY user_email (user_email)
)""",
    "usermeta": """(
  umeta_id bigint(20) unsigned NOT NULL auto_increment,
  user_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (umeta_id),
  KEY user_id (user_id),
  KEY meta_key (meta_key(191))
)""",
    "blogs": """(
  blog_id bigint(20) NOT NULL auto_increment,
  site_id bigint(20) NOT NULL default '0',
  domain varchar(200) NOT NULL default '',
  path varchar(100) NOT NULL default '',
  registered datetime NOT NULL default '0000-00-00 00:00:00',
  last_updated datetime NOT NULL default '0000-00-00 00:00:00',
  public tinyint(2) NOT NULL default '1',
  archived tinyint(2) NOT NULL default '0',
  mature tinyint(2) NOT NULL default '0',
  spam tinyint(2) NOT NULL default '0',
  deleted tinyint(2) NOT NULL default '0',
  lang_id int(11) NOT NULL default '0',
  PRIMARY KEY  (blog_id),
  KEY domain (domain(50),path(5)),
  KEY lang_id (lang_id)
)""",
    "blogmeta": """(
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  blog_id bigint(20) NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY meta_key (meta_key(191)),
  KEY blog_id (blog_id)
)""",
    "registration_log": """(
  ID bigint(20) NOT NULL auto_increment,
  email varchar(255) NOT NULL default '',
  IP varchar(30) NOT NULL default '',
  blog_id bigint(20) NOT NULL default '0',
  date_registered datetime NOT NULL default '0000-00-00 00:00:00',
  PRIMARY KEY  (ID),
  KEY IP (IP)
)""",
    "site": """(
  id bigint(20) NOT NULL auto_increment,
  domain varchar(200) NOT NULL default '',
  path varchar(100) NOT NULL default '',
  PRIMARY KEY  (id),
  KEY domain (domain(140),path(51))
)""",
    "sitemeta": """(
  meta_id bigint(20) NOT NULL auto_increment,
  site_id bigint(20) NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY meta_key (meta_key(191)),
  KEY site_id (site_id)
)""",
    "signups": """(
  signup_id bigint(20) NOT NULL auto_increment,
  domain varchar(200) NOT NULL default '',
  path varchar(100) NOT NULL default '',
  title longtext NOT NULL,
  user_login varchar(60) NOT NULL default '',
  user_email varchar(100) NOT NULL default '',
  registered datetime NOT NULL default '0000-00-00 00:00:00',
  activated datetime NOT NULL default '0000-00-00 00:00:00',
  active tinyint(1) NOT NULL default '0',
  activation_key varchar(50) NOT NULL default '',
  meta longtext,
  PRIMARY KEY  (signup_id),
  KEY activation_key (activation_key),
  KEY user_email (user_email),
  KEY user_login_email (user_login,user_email),
  KEY domain_path (domain(140),path(51))
)""",
}

SITE_SCHEMA = {
    "termmeta": """(
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  term_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY term_id (term_id),
  KEY meta_key (meta_key(191))
)""",
    "terms": """(
  term_id bigint(20) unsigned NOT NULL auto_increment,
  name varchar(200) NOT NULL default '',
  slug varchar(200) NOT NULL default '',
  term_group bigint(10) NOT NULL default 0,
  PRIMARY KEY  (term_id),
  KEY slug (slug(191)),
  KEY name (name(191))
)""",
    "term_taxonomy": """(
  term_taxonomy_id bigint(20) unsigned NOT NULL auto_increment,
  term_id bigint(20) unsigned NOT NULL default 0,
  taxonomy varchar(32) NOT NULL default '',
  description longtext NOT NULL,
  parent bigint(20) unsigned NOT NULL default 0,
  count bigint(20) NOT NULL default 0,
  PRIMARY KEY  (term_taxonomy_id),
  UNIQUE KEY term_id_taxonomy (term_id,taxonomy),
  KEY taxonomy (taxonomy)
)""",
    "term_relationships": """(
  object_id bigint(20) unsigned NOT NULL default 0,
  term_taxonomy_id bigint(20) unsigned NOT NULL default 0,
  term_order int(11) NOT NULL default 0,
  PRIMARY KEY  (object_id,term_taxonomy_id),
  KEY term_taxonomy_id (term_taxonomy_id)
)""",
    "commentmeta": """(
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  comment_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY comment_id (comment_id),
  KEY meta_key (meta_key(191))
)""",
    "comments": """(
  comment_ID bigint(20) unsigned NOT NULL auto_increment,
  comment_post_ID bigint(20) unsigned NOT NULL default '0',
  comment_author tinytext NOT NULL,
  comment_author_email varchar(100) NOT NULL default '',
  comment_author_url varchar(200) NOT NULL default '',
  comment_author_IP varchar(100) NOT NULL default '',
  comment_date datetime NOT NULL default '0000-00-00 00:00:00',
  comment_date_gmt datetime NOT NULL default '0000-00-00 00:00:00',
  comment_content text NOT NULL,
  comment_karma int(11) NOT NULL default '0',
  comment_approved varchar(20) NOT NULL default '1',
  comment_agent varchar(255) NOT NULL default '',
  comment_type varchar(20) NOT NULL default 'comment',
  comment_parent bigint(20) unsigned NOT NULL default '0',
  user_id bigint(20) unsigned NOT NULL default '0',
  PRIMARY KEY  (comment_ID),
  KEY comment_post_ID (comment_post_ID),
  KEY comment_approved_date_gmt (comment_approved,comment_date_gmt),
  KEY comment_date_gmt (comment_date_gmt),
  KEY comment_parent (comment_parent),
  KEY comment_author_email (comment_author_email(10))
)""",
    "links": """(
  link_id bigint(20) unsigned NOT NULL auto_increment,
  link_url varchar(255) NOT NULL default '',
  link_name varchar(255) NOT NULL default '',
  link_image varchar(255) NOT NULL default '',
  link_target varchar(25) NOT NULL default '',
  link_description varchar(255) NOT NULL default '',
  link_visible varchar(20) NOT NULL default 'Y',
  link_owner bigint(20) unsigned NOT NULL default '1',
  link_rating int(11) NOT NULL default '0',
  link_updated datetime NOT NULL default '0000-00-00 00:00:00',
  link_rel varchar(255) NOT NULL default '',
  link_notes mediumtext NOT NULL,
  link_rss varchar(255) NOT NULL default '',
  PRIMARY KEY  (link_id),
  KEY link_visible (link_visible)
)""",
    "options": """(
  option_id bigint(20) unsigned NOT NULL auto_increment,
  option_name varchar(191) NOT NULL default '',
  option_value longtext NOT NULL,
  autoload varchar(20) NOT NULL default 'yes',
  PRIMARY KEY  (option_id),
  UNIQUE KEY option_name (option_name),
  KEY autoload (autoload)
)""",
    "postmeta": """(
  meta_id bigint(20) unsigned NOT NULL auto_increment,
  post_id bigint(20) unsigned NOT NULL default '0',
  meta_key varchar(255) default NULL,
  meta_value longtext,
  PRIMARY KEY  (meta_id),
  KEY post_id (post_id),
  KEY meta_key (meta_key(191))
)""",
    "posts": """(
  ID bigint(20) unsigned NOT NULL auto_increment,
  post_author bigint(20) unsigned NOT NULL default '0',
  post_date datetime NOT NULL default '0000-00-00 00:00:00',
  post_date_gmt datetime NOT NULL default '0000-00-00 00:00:00',
  post_content longtext NOT NULL,
  post_title text NOT NULL,
  post_excerpt text NOT NULL,
  post_status varchar(20) NOT NULL default 'publish',
  comment_status varchar(20) NOT NULL default 'open',
  ping_status varchar(20) NOT NULL default 'open',
  post_password varchar(255) NOT NULL default '',
  post_name varchar(200) NOT NULL default '',
  to_ping text NOT NULL,
  pinged text NOT NULL,
  post_modified datetime NOT NULL default '0000-00-00 00:00:00',
  post_modified_gmt datetime NOT NULL default '0000-00-00 00:00:00',
  post_content_filtered longtext NOT NULL,
  post_parent bigint(20) unsigned NOT NULL default '0',
  guid varchar(255) NOT NULL default '',
  menu_order int(11) NOT NULL default '0',
  post_type varchar(20) NOT NULL default 'post',
  post_mime_type varchar(100) NOT NULL default '',
  comment_count bigint(20) NOT NULL default '0',
  PRIMARY KEY  (ID),
  KEY post_name (post_name(191)),
  KEY type_status_date (post_type,post_status,post_date,ID),
  KEY post_parent (post_parent),
  KEY post_author (post_author)
)""",
}

# The columns each generated row fills, in order (every column of the table).
COLUMNS = {
    "users": ("ID", "user_login", "user_pass", "user_nicename", "user_email", "user_url", "user_registered",
              "user_activation_key", "user_status", "display_name", "spam", "deleted"),
    "usermeta": ("umeta_id", "user_id", "meta_key", "meta_value"),
    "blogs": ("blog_id", "site_id", "domain", "path", "registered", "last_updated", "public", "archived", "mature",
              "spam", "deleted", "lang_id"),
    "blogmeta": ("meta_id", "blog_id", "meta_key", "meta_value"),
    "registration_log": ("ID", "email", "IP", "blog_id", "date_registered"),
    "site": ("id", "domain", "path"),
    "sitemeta": ("meta_id", "site_id", "meta_key", "meta_value"),
    "signups": ("signup_id", "domain", "path", "title", "user_login", "user_email", "registered", "activated",
                "active", "activation_key", "meta"),
    "termmeta": ("meta_id", "term_id", "meta_key", "meta_value"),
    "terms": ("term_id", "name", "slug", "term_group"),
    "term_taxonomy": ("term_taxonomy_id", "term_id", "taxonomy", "description", "parent", "count"),
    "term_relationships": ("object_id", "term_taxonomy_id", "term_order"),
    "commentmeta": ("meta_id", "comment_id", "meta_key", "meta_value"),
    "comments": ("comment_ID", "comment_post_ID", "comment_author", "comment_author_email", "comment_author_url",
                 "comment_author_IP", "comment_date", "comment_date_gmt", "comment_content", "comment_karma",
                 "comment_approved", "comment_agent", "comment_type", "comment_parent", "user_id"),
    "links": ("link_id", "link_url", "link_name", "link_image", "link_target", "link_description", "link_visible",
              "link_owner", "link_rating", "link_updated", "link_rel", "link_notes", "link_rss"),
    "options": ("option_id", "option_name", "option_value", "autoload"),
    "postmeta": ("meta_id", "post_id", "meta_key", "meta_value"),
    "posts": ("ID", "post_author", "post_date", "post_date_gmt", "post_content", "post_title", "post_excerpt",
              "post_status", "comment_status", "ping_status", "post_password", "post_name", "to_ping", "pinged",
              "post_modified", "post_modified_gmt", "post_content_filtered", "post_parent", "guid", "menu_order",
              "post_type", "post_mime_type", "comment_count"),
}


def site_table_prefix(prefix: str, blog_id: int) -> str:
    """``wp_`` for the main site (blog 1), ``wp_<id>_`` for every other site."""
    return prefix if blog_id == 1 else "%s%d_" % (prefix, blog_id)


def global_table_names(prefix: str) -> list[str]:
    """The network-wide tables: users, usermeta and the multisite tables."""
    return [prefix + name for name in GLOBAL_SCHEMA]


def site_table_names(prefix: str, blog_id: int) -> list[str]:
    """The ten tables WordPress creates for one site."""
    return [site_table_prefix(prefix, blog_id) + name for name in SITE_SCHEMA]


# -- PHP serialization --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PhpObject:
    """An object for ``php_serialize``: ``O:<len>:"<class>":<n>:{...}`` with public properties."""

    class_name: str
    properties: dict


@dataclass(frozen=True)
class PhpCustom:
    """A custom-serialized object, ``C:<len>:"<class>":<len>:{<payload>}`` (the ``Serializable`` format)."""

    class_name: str
    payload: str


@dataclass(frozen=True)
class PhpFloat:
    """A float written exactly as given, e.g. ``64.950000000000003`` as PHP < 7.1 spelled it."""

    literal: str


def php_serialize(value) -> str:
    """PHP's ``serialize()`` of a Python value; string lengths count UTF-8 bytes.

    dict → array with int/str keys, list/tuple → array with keys 0..n-1, float → PHP 7.1+ spelling.
    """
    out: list[str] = []
    _serialize_into(value, out)
    return "".join(out)


def _serialize_into(value, out):
    if isinstance(value, str):
        out.append('s:%d:"%s";' % (len(value.encode("utf-8")), value))
    elif value is None:
        out.append("N;")
    elif isinstance(value, bool):
        out.append("b:1;" if value else "b:0;")
    elif isinstance(value, int):
        out.append("i:%d;" % value)
    elif isinstance(value, float):
        out.append("d:%s;" % php_float_repr(value))
    elif isinstance(value, PhpFloat):
        out.append("d:%s;" % value.literal)
    elif isinstance(value, (list, tuple)):
        _serialize_members(enumerate(value), len(value), out)
    elif isinstance(value, dict):
        _serialize_members(value.items(), len(value), out)
    elif isinstance(value, PhpObject):
        out.append('O:%d:"%s":' % (len(value.class_name.encode("utf-8")), value.class_name))
        _serialize_members(value.properties.items(), len(value.properties), out, opener="")
    elif isinstance(value, PhpCustom):
        out.append('C:%d:"%s":%d:{%s}' % (len(value.class_name.encode("utf-8")), value.class_name,
                                          len(value.payload.encode("utf-8")), value.payload))
    else:
        raise TypeError("cannot serialize %r for PHP" % (value,))


def _serialize_members(items, count, out, opener="a:"):
    out.append("%s%d:{" % (opener, count))
    for key, member in items:
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError("PHP array keys are int or str, not %r" % (key,))
        _serialize_into(key, out)
        _serialize_into(member, out)
    out.append("}")


def php_float_repr(value: float) -> str:
    """A float as PHP >= 7.1 serializes it: shortest digits, exponent form outside 1e-5 .. 1e17."""
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INF" if value > 0 else "-INF"
    number = decimal.Decimal(repr(value)).normalize()
    sign, digits, exponent = number.as_tuple()
    scientific = len(digits) + exponent - 1
    if -5 < scientific < 17:
        return format(number, "f")
    mantissa = "".join(map(str, digits))
    mantissa = mantissa[0] + "." + (mantissa[1:] or "0")
    return "%s%sE%s%d" % ("-" if sign else "", mantissa, "+" if scientific >= 0 else "-", abs(scientific))


# -- SQL text -----------------------------------------------------------------------------------------------------

def sql_escape(text: str) -> str:
    """The body of a single-quoted MariaDB string literal (backslash escapes, as mariadb-dump writes them)."""
    return (text.replace("\\", "\\\\").replace("'", "\\'").replace("\0", "\\0")
            .replace("\n", "\\n").replace("\r", "\\r").replace("\x1a", "\\Z"))


def _sql_values(*values) -> str:
    """One parenthesised row: ints as numbers, strings quoted and escaped."""
    parts = []
    for value in values:
        if isinstance(value, int):
            parts.append(str(value))
        elif value is None:
            parts.append("NULL")
        else:
            parts.append("'" + sql_escape(value) + "'")
    return "(" + ",".join(parts) + ")"


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _when(seconds: int) -> str:
    """A GMT datetime ``seconds`` after the base time, as MariaDB text."""
    return (BASE_TIME + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def _local(seconds: int) -> str:
    return (BASE_TIME + LOCAL_OFFSET + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


class _InsertBatcher:
    """Multi-row INSERTs of about ``limit`` characters; one open statement per table, so tables can interleave."""

    def __init__(self, table_names: dict[str, str], limit: int = STATEMENT_SIZE):
        self.heads = {key: "INSERT INTO %s (%s) VALUES\n" % (_quote(name), ",".join(_quote(c) for c in COLUMNS[key]))
                      for key, name in table_names.items()}
        self.rows: dict[str, list[str]] = {key: [] for key in table_names}
        self.sizes = dict.fromkeys(table_names, 0)
        self.limit = limit

    def add(self, key: str, row: str) -> str | None:
        """Queue a row; return a finished statement when the table's batch is full."""
        self.rows[key].append(row)
        self.sizes[key] += len(row) + 2
        if self.sizes[key] >= self.limit:
            return self._flush(key)
        return None

    def drain(self) -> Iterator[str]:
        for key in self.rows:
            if self.rows[key]:
                yield self._flush(key)

    def _flush(self, key: str) -> str:
        statement = self.heads[key] + ",\n".join(self.rows[key])
        self.rows[key] = []
        self.sizes[key] = 0
        return statement


# -- The network's shape ------------------------------------------------------------------------------------------

@dataclass
class NetworkSpec:
    """What to generate.

    ``site_ids`` (explicit blog ids, 1 always added) wins over ``sites`` (ids 1..sites).
    ``large_sites`` maps a blog id to the approximate size, in bytes of SQL rows, its content should reach.
    ``subdomain_base`` is the host subdomain sites hang under (default: the main site's host), e.g.
    ``wfu.edu`` for a main site at ``www.wfu.edu`` with subsites at ``news.wfu.edu``.
    """

    url: str = "https://dev.example.edu"
    subdomain: bool = False
    sites: int = 10
    seed: int = 1
    prefix: str = "wp_"
    posts_per_site: int = 20
    large_sites: dict[int, int] = field(default_factory=dict)
    site_ids: list[int] | None = None
    subdomain_base: str | None = None

    def __post_init__(self):
        # Blog ids may arrive as strings from JSON or YAML.
        self.large_sites = {int(blog_id): int(size) for blog_id, size in (self.large_sites or {}).items()}
        self.validate()

    def validate(self):
        """Raise ValueError on a spec that cannot make a WordPress network."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must look like https://host[/path], got %r" % self.url)
        if parts.port or parts.query or parts.fragment or parts.username:
            raise ValueError("url %r: WordPress multisite takes a bare scheme://host[/path] (no port, query or user)" % self.url)
        if not isinstance(self.prefix, str) or not PREFIX_RE.match(self.prefix):
            raise ValueError("prefix %r: use letters, digits and '_' only" % (self.prefix,))
        if self.posts_per_site < 1:
            raise ValueError("posts_per_site must be at least 1")
        if self.site_ids is None and self.sites < 1:
            raise ValueError("sites must be at least 1 (the main site)")
        ids = self.blog_ids()
        if any(not isinstance(i, int) or isinstance(i, bool) or i < 1 for i in ids):
            raise ValueError("site_ids must be positive integers, got %r" % (self.site_ids,))
        longest = len(site_table_prefix(self.prefix, ids[-1])) + len("term_relationships")
        if longest > MAX_IDENTIFIER:
            raise ValueError("prefix %r with blog id %d makes table names longer than %d characters"
                             % (self.prefix, ids[-1], MAX_IDENTIFIER))
        unknown = sorted(set(self.large_sites) - set(ids))
        if unknown:
            raise ValueError("large_sites names blog ids that are not in the network: %s" % unknown)

    def blog_ids(self) -> list[int]:
        """The network's blog ids, ascending, main site (1) first."""
        if self.site_ids is not None:
            return sorted(set(self.site_ids) | {1})
        return list(range(1, self.sites + 1))


@dataclass(frozen=True)
class Site:
    """One generated site as wp_blogs describes it."""

    blog_id: int
    slug: str
    title: str
    domain: str
    path: str
    url: str
    table_prefix: str
    flags: dict

    @property
    def is_main(self) -> bool:
        return self.blog_id == 1


SITE_NAMES = (
    ("news", "News & Events"), ("admissions", "Admissions"), ("library-blog", "Library Blog"),
    ("arts", "Arts — Galerie d'été"), ("biology", "Biology"), ("chemistry", "Chemistry"),
    ("alumni", "Alumni 😀"), ("athletics", "Athletics"), ("law", "School of Law"),
    ("medicine", "Medicine"), ("business", "Business School"), ("japanese", "日本語プログラム"),
    ("music", "Music 𝄞 Department"), ("physics", "Physics"), ("research", "Research Office"),
    ("french", "Département de français"), ("studentlife", "Student Life"), ("careers", "Career Center"),
    ("history", "History"), ("webteam", "Web Services"),
)


def network_host(spec: NetworkSpec) -> str:
    return urlsplit(spec.url).hostname


def network_path(spec: NetworkSpec) -> str:
    """The network's path in wp_site: ``/`` or ``/something/``."""
    path = urlsplit(spec.url).path.strip("/")
    return "/" + path + "/" if path else "/"


def network_sites(spec: NetworkSpec) -> list[Site]:
    """Every site of the network, main site first."""
    spec.validate()
    scheme = urlsplit(spec.url).scheme
    host = network_host(spec)
    base_path = network_path(spec)
    sites = []
    for blog_id in spec.blog_ids():
        if blog_id == 1:
            slug, title, domain, path = "", "Example University", host, base_path
        else:
            index = (blog_id - 2) % len(SITE_NAMES)
            slug, title = SITE_NAMES[index]
            if blog_id - 2 >= len(SITE_NAMES):
                slug, title = "%s%d" % (slug, blog_id), "%s %d" % (title, blog_id)
            if spec.subdomain:
                domain, path = "%s.%s" % (slug, spec.subdomain_base or host), base_path
            else:
                domain, path = host, base_path + slug + "/"
        flags = {"public": 1, "archived": 0, "mature": 0, "spam": 0, "deleted": 0}
        if blog_id != 1 and blog_id % 10 in FLAGS_BY_LAST_DIGIT:
            name, value = FLAGS_BY_LAST_DIGIT[blog_id % 10]
            flags[name] = value
        sites.append(Site(blog_id=blog_id, slug=slug, title=title, domain=domain, path=path,
                          url="%s://%s%s" % (scheme, domain, path.rstrip("/")),
                          table_prefix=site_table_prefix(spec.prefix, blog_id), flags=flags))
    return sites


def site_urls(spec: NetworkSpec) -> dict[int, str]:
    """blog_id → the site's URL as its siteurl/home options hold it: ``scheme://domain/path``, no trailing slash."""
    return {site.blog_id: site.url for site in network_sites(spec)}


def _linked_sites(site: Site, sites: list[Site]) -> list[Site]:
    """Other subsites a site links to, chosen so that adding sites with higher ids changes nothing.

    The main site features the five lowest subsites; a subsite links to the nearest three below it.
    """
    subsites = [other for other in sites if not other.is_main]
    if site.is_main:
        return subsites[:5]
    return [other for other in subsites if other.blog_id < site.blog_id][-3:]


# -- Content ------------------------------------------------------------------------------------------------------

SENTENCES = (
    "The department welcomes new students every fall with a week of orientation events.",
    "Faculty members publish their research in journals across the sciences and the humanities.",
    "Our staff's office hours are posted on the main calendar each semester.",
    "Café conversations in the student center bring together people from every program.",
    "The 日本語 conversation table meets on Thursdays at noon in the language lounge.",
    "Graduates return each spring to share what they learned after commencement 🎓.",
    "Music students rehearse the 𝄞 treble parts before the winter concert.",
    "Applications are reviewed on a rolling basis until the program is full.",
    "The lab keeps its protocols at C:\\Lab\\Protocols on the shared drive, 100% backed up.",
    'Students called the new study rooms "the best on campus" in the spring survey.',
    "Naïve questions are welcome: the help desk answers them all, even at 2 a.m.",
    "Über 40 Studierende nahmen im letzten Jahr am Austauschprogramm teil.",
    "Le séminaire de littérature française se réunit le mercredi après-midi.",
    "Emoji reactions 😀👍 were the most used feature of the new newsletter.",
    "Parking permits for the 2023–24 year can be renewed online in August.",
    "The research office funds twelve undergraduate fellowships each summer.",
    "A new exhibit in the gallery pairs student photographs with archival letters.",
    "Visiting speakers this term include a poet, two economists and a marine biologist.",
    "The writing center offers one-on-one appointments, drop-in hours and workshops.",
    "Scholarship recipients are announced on the first Monday of April.",
    "Tickets are free for students; guests pay $5 at the door (cash or card).",
    "The committee's report uses the terms <em>access</em> and <em>equity</em> throughout.",
    "Zoë and José led the volunteer team that rebuilt the community garden.",
    "Questions about 50% tuition remission go to the benefits office, not the registrar.",
)

TITLES = (
    "Spring Open House", "Research Symposium", "Dean's List Announced", "Résumé Workshop",
    "日本語 Speech Contest", "Concert Night 𝄞", "Welcome Week 😀", "Library Hours Update",
    "Alumni Weekend", "Scholarship Deadline", "Faculty Spotlight", "Commencement 2023",
    "New Lab Opens", "Study Abroad Fair", "Café Philosophique", "Volunteer Day",
)

# WordPress's standard permalink rules (a subset), as rewrite_rules holds them.
REWRITE_RULES = {
    "^wp-json/?$": "index.php?rest_route=/",
    "^wp-json/(.*)?": "index.php?rest_route=/$matches[1]",
    "^index.php/wp-json/?$": "index.php?rest_route=/",
    "^wp-sitemap\\.xml$": "index.php?sitemap=index",
    "category/(.+?)/feed/(feed|rdf|rss|rss2|atom)/?$": "index.php?category_name=$matches[1]&feed=$matches[2]",
    "category/(.+?)/page/?([0-9]{1,})/?$": "index.php?category_name=$matches[1]&paged=$matches[2]",
    "category/(.+?)/?$": "index.php?category_name=$matches[1]",
    "tag/([^/]+)/feed/(feed|rdf|rss|rss2|atom)/?$": "index.php?tag=$matches[1]&feed=$matches[2]",
    "tag/([^/]+)/?$": "index.php?tag=$matches[1]",
    ".*wp-(atom|rdf|rss|rss2|feed|commentsrss2)\\.php$": "index.php?feed=old",
    ".*wp-app\\.php(/.*)?$": "index.php?error=403",
    "feed/(feed|rdf|rss|rss2|atom)/?$": "index.php?&feed=$matches[1]",
    "page/?([0-9]{1,})/?$": "index.php?&paged=$matches[1]",
    "comments/feed/(feed|rdf|rss|rss2|atom)/?$": "index.php?&feed=$matches[1]&withcomments=1",
    "search/(.+)/?$": "index.php?s=$matches[1]",
    "author/([^/]+)/?$": "index.php?author_name=$matches[1]",
    "([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})/?$": "index.php?year=$matches[1]&monthnum=$matches[2]&day=$matches[3]",
    "([0-9]{4})/([0-9]{1,2})/?$": "index.php?year=$matches[1]&monthnum=$matches[2]",
    "([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})/([^/]+)(?:/([0-9]+))?/?$":
        "index.php?year=$matches[1]&monthnum=$matches[2]&day=$matches[3]&name=$matches[4]&page=$matches[5]",
    "(.?.+?)/attachment/([^/]+)/?$": "index.php?attachment=$matches[2]",
    "(.?.+?)(?:/([0-9]+))?/?$": "index.php?pagename=$matches[1]&page=$matches[2]",
}

ROLE_CAPABILITIES = {
    "administrator": ("Administrator", (
        "switch_themes", "edit_themes", "activate_plugins", "edit_plugins", "edit_users", "edit_files",
        "manage_options", "moderate_comments", "manage_categories", "manage_links", "upload_files", "import",
        "unfiltered_html", "edit_posts", "edit_others_posts", "edit_published_posts", "publish_posts",
        "edit_pages", "read", "level_10", "level_9", "level_8", "level_7", "level_6", "level_5", "level_4",
        "level_3", "level_2", "level_1", "level_0", "edit_others_pages", "edit_published_pages",
        "publish_pages", "delete_pages", "delete_others_pages", "delete_published_pages", "delete_posts",
        "delete_others_posts", "delete_published_posts", "delete_private_posts", "edit_private_posts",
        "read_private_posts", "delete_private_pages", "edit_private_pages", "read_private_pages",
        "delete_users", "create_users", "unfiltered_upload", "edit_dashboard", "update_plugins",
        "delete_plugins", "install_plugins", "update_themes", "install_themes", "update_core", "list_users",
        "remove_users", "promote_users", "edit_theme_options", "delete_themes", "export")),
    "editor": ("Editor", (
        "moderate_comments", "manage_categories", "manage_links", "upload_files", "unfiltered_html",
        "edit_posts", "edit_others_posts", "edit_published_posts", "publish_posts", "edit_pages", "read",
        "level_7", "level_6", "level_5", "level_4", "level_3", "level_2", "level_1", "level_0",
        "edit_others_pages", "edit_published_pages", "publish_pages", "delete_pages", "delete_others_pages",
        "delete_published_pages", "delete_posts", "delete_others_posts", "delete_published_posts",
        "delete_private_posts", "edit_private_posts", "read_private_posts", "delete_private_pages",
        "edit_private_pages", "read_private_pages")),
    "author": ("Author", ("upload_files", "edit_posts", "edit_published_posts", "publish_posts", "read",
                          "level_2", "level_1", "level_0", "delete_posts", "delete_published_posts")),
    "contributor": ("Contributor", ("edit_posts", "read", "level_1", "level_0", "delete_posts")),
    "subscriber": ("Subscriber", ("read", "level_0")),
}
USER_ROLES = {role: {"name": name, "capabilities": dict.fromkeys(caps, True)}
              for role, (name, caps) in ROLE_CAPABILITIES.items()}
# The same in every site: serialized once.
USER_ROLES_SERIALIZED = php_serialize(USER_ROLES)
REWRITE_RULES_SERIALIZED = php_serialize(REWRITE_RULES)

THEMES = ("twentytwentyone", "twentytwentythree", "twentytwentyfour", "astra")
IMAGE_SIZES = (("thumbnail", 150, 150), ("medium", 300, 200), ("medium_large", 768, 512), ("large", 1024, 683))


def _json_for_wordpress(value) -> str:
    """JSON as wp_json_encode writes it by default: ASCII only (``\\u00e9``) and escaped slashes."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/")


def _slugify(title: str, post_id: int) -> str:
    ascii_words = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return "%s-%d" % (ascii_words or "post", post_id)


class _SiteBuilder:
    """The rows of one site's ten tables, streamed; memory does not grow with the site's size."""

    def __init__(self, spec: NetworkSpec, site: Site, sites: list[Site]):
        self.spec = spec
        self.site = site
        self.rng = random.Random("%d:%d" % (spec.seed, site.blog_id))
        self.main = sites[0]
        self.linked = [other.url for other in _linked_sites(site, sites)] or [self.main.url]
        self.url = site.url
        self.relative_url = "//" + site.url.split("://", 1)[1]
        self.uploads = site.url + "/wp-content/uploads" + ("" if site.is_main else "/sites/%d" % site.blog_id)
        self.author = 1 if site.is_main else site.blog_id
        self.theme = THEMES[site.blog_id % len(THEMES)]
        self.target = spec.large_sites.get(site.blog_id, 0)
        self.size = 0
        self.start = (site.blog_id - 1) * 7 * 3600
        self.meta_id = 0
        self.comment_id = 0
        self.commentmeta_id = 0
        # term_taxonomy_id -> number of objects; filled while posts are written, emitted last.
        self.term_counts = {tt_id: 0 for tt_id in range(1, 10)}
        attachment_count = max(2, spec.posts_per_site // 4)
        self.attachments = [(3 + k, "%d/%02d/photo-%d-%d.jpg" % (2023, 1 + k % 12, site.blog_id, k))
                            for k in range(attachment_count)]
        self.first_content_id = 3 + attachment_count
        self.post_id = self.first_content_id - 1
        self.blocks = [sql_escape(block) for block in self._content_blocks()]
        self.elementor_widgets = [sql_escape(widget) for widget in self._elementor_widgets()]

    # -- the stream -----------------------------------------------------------------------------------------------
    def rows(self) -> Iterator[tuple[str, str]]:
        """(table key, SQL row) pairs for every table of the site."""
        for key, row in self._all_rows():
            self.size += len(row)
            yield key, row

    def _all_rows(self):
        yield from self._hello_world_and_sample_page()
        yield from self._attachments()
        for number in range(2, self.spec.posts_per_site):
            yield from self._content_post(number)
        yield from self._global_styles_and_menu()
        number = self.spec.posts_per_site
        while self.size < self.target:
            yield from self._bulk_post(number)
            number += 1
        yield from self._options()
        yield from self._links()
        yield from self._terms()

    # -- building blocks ------------------------------------------------------------------------------------------
    def _content_blocks(self) -> list[str]:
        """About forty HTML blocks with this site's links; posts are assembled from them."""
        rng = self.rng
        blocks = []
        for index in range(40):
            first, second = rng.sample(SENTENCES, 2)
            other = self.linked[index % len(self.linked)]
            att_id, att_file = self.attachments[index % len(self.attachments)]
            image = "%s/%s" % (self.uploads, att_file)
            stem = image[:-4]
            kind = index % 10
            if kind == 0:
                html = ('<!-- wp:paragraph -->\n<p>%s Read more on <a href="%s/category/news/">our news page</a> '
                        'or <a href="%s/?p=%d">this earlier post</a>. %s</p>\n<!-- /wp:paragraph -->\n'
                        % (first, self.url, self.url, self.first_content_id + index % 5, second))
            elif kind == 1:
                html = ('<!-- wp:paragraph -->\n<p>%s See <a href="%s/events/">the events of a sister site</a> and '
                        '<a href="%s/about/">the university home page</a>. %s</p>\n<!-- /wp:paragraph -->\n'
                        % (first, other, self.main.url, second))
            elif kind == 2:
                html = ('<!-- wp:paragraph -->\n<p>%s The <a href="%s/hours/">library</a> and the '
                        '<a href="%s/guides/accessibility/">web development team</a> can help; write to '
                        '<a href="%s">someone@example.edu</a>. %s</p>\n<!-- /wp:paragraph -->\n'
                        % (first, LIBRARY_URL, WEBDEV_URL, MAILTO, second))
            elif kind == 3:
                html = ('<!-- wp:image {"id":%d,"sizeSlug":"large","linkDestination":"media"} -->\n'
                        '<figure class="wp-block-image size-large"><a href="%s"><img src="%s-1024x683.jpg" alt="%s" '
                        'class="wp-image-%d" srcset="%s-1024x683.jpg 1024w, %s-300x200.jpg 300w, %s-768x512.jpg 768w" '
                        'sizes="(max-width: 1024px) 100vw, 1024px" /></a><figcaption>%s</figcaption></figure>\n'
                        '<!-- /wp:image -->\n' % (att_id, image, stem, first[:40], att_id, stem, stem, stem, second))
            elif kind == 4:
                html = ('<!-- wp:heading -->\n<h2 class="wp-block-heading">%s</h2>\n<!-- /wp:heading -->\n'
                        '<!-- wp:paragraph -->\n<p>%s %s</p>\n<!-- /wp:paragraph -->\n'
                        % (rng.choice(TITLES), first, second))
            elif kind == 5:
                html = ('<!-- wp:list -->\n<ul><li><a href="%s/contact/">Contact us</a></li>'
                        '<li><a href="%s/">Partner site</a></li><li><a href="%s/search/?q=%s">Search the catalog</a></li>'
                        '<li><a href="%s/feed/">RSS feed</a></li></ul>\n<!-- /wp:list -->\n'
                        % (self.url, other, LIBRARY_URL, self.site.slug or "home", self.url))
            elif kind == 6:
                html = ('<!-- wp:quote -->\n<blockquote class="wp-block-quote"><p>%s 😀</p><cite>'
                        '<a href="https://wordpress.org/news/">WordPress News</a></cite></blockquote>\n<!-- /wp:quote -->\n'
                        % first)
            elif kind == 7:
                video = "https://www.youtube.com/watch?v=dQw%03d" % index
                html = ('<!-- wp:embed {"url":"%s","type":"video","providerNameSlug":"youtube","responsive":true} -->\n'
                        '<figure class="wp-block-embed is-type-video"><div class="wp-block-embed__wrapper">\n%s\n'
                        '</div></figure>\n<!-- /wp:embed -->\n' % (video, video))
            elif kind == 8:
                html = ('<!-- wp:cover {"url":"%s","id":%d,"dimRatio":50} -->\n<div class="wp-block-cover">'
                        '<img class="wp-block-cover__image-background wp-image-%d" alt="" src="%s" data-object-fit="cover"/>'
                        '<div class="wp-block-cover__inner-container"><!-- wp:buttons -->\n<div class="wp-block-buttons">'
                        '<!-- wp:button -->\n<div class="wp-block-button"><a class="wp-block-button__link wp-element-button" '
                        'href="%s/apply/">Apply now</a></div>\n<!-- /wp:button --></div>\n<!-- /wp:buttons --></div></div>\n'
                        '<!-- /wp:cover -->\n' % (image, att_id, att_id, image, self.main.url))
            else:
                html = ('[caption id="attachment_%d" align="alignnone" width="300"]<img class="size-medium wp-image-%d" '
                        'src="%s/wp-content/uploads%s/%s-300x200.jpg" alt="" width="300" height="200" /> %s[/caption]\n'
                        '[gallery ids="%s" link="file"]\n'
                        % (att_id, att_id, self.relative_url, "" if self.site.is_main else "/sites/%d" % self.site.blog_id,
                           att_file[:-4], first, ",".join(str(att[0]) for att in self.attachments[:3])))
            blocks.append(html)
        return blocks

    def _elementor_widgets(self) -> list[str]:
        """JSON elements in the shape a page builder stores (escaped slashes, \\u escapes)."""
        rng = self.rng
        widgets = []
        for index in range(12):
            att_id, att_file = self.attachments[index % len(self.attachments)]
            element = {
                "id": "%07x" % rng.getrandbits(28), "elType": "section", "isInner": False,
                "settings": {"background_background": "classic",
                             "background_image": {"url": "%s/%s" % (self.uploads, att_file), "id": att_id, "size": ""}},
                "elements": [{
                    "id": "%07x" % rng.getrandbits(28), "elType": "column", "settings": {"_column_size": 100},
                    "elements": [
                        {"id": "%07x" % rng.getrandbits(28), "elType": "widget", "widgetType": "text-editor",
                         "settings": {"editor": '<p>%s <a href="%s/programs/">Programs</a></p>'
                                                % (rng.choice(SENTENCES), self.url)}, "elements": []},
                        {"id": "%07x" % rng.getrandbits(28), "elType": "widget", "widgetType": "button",
                         "settings": {"text": "Visit", "link": {"url": "%s/" % self.linked[index % len(self.linked)],
                                                                "is_external": "", "nofollow": ""}},
                         "elements": []},
                    ]}],
            }
            widgets.append(_json_for_wordpress(element))
        return widgets

    def _post_row(self, post_id, when, content_sql, title, name, guid, post_type="post", status="publish",
                  parent=0, excerpt="", menu_order=0, mime="", comment_count=0, comments="open"):
        """A wp_posts row; ``content_sql`` is already escaped, the other strings are escaped here."""
        modified = when + 3600
        return ("(%d,%d,'%s','%s','%s','%s','%s','%s','%s','open','','%s','','','%s','%s','',%d,'%s',%d,'%s','%s',%d)"
                % (post_id, self.author, _local(when), _when(when), content_sql, sql_escape(title), sql_escape(excerpt),
                   status, comments, sql_escape(name), _local(modified), _when(modified), parent, sql_escape(guid),
                   menu_order, post_type, mime, comment_count))

    def _meta(self, post_id, key, value):
        self.meta_id += 1
        return "postmeta", _sql_values(self.meta_id, post_id, key, value)

    def _meta_escaped(self, post_id, key, value_sql):
        """A postmeta row whose value is already SQL-escaped (assembled from the precomputed pools)."""
        self.meta_id += 1
        return "postmeta", "(%d,%d,'%s','%s')" % (self.meta_id, post_id, key, value_sql)

    def _new_post_id(self):
        self.post_id += 1
        return self.post_id

    def _relate(self, post_id, tt_id):
        self.term_counts[tt_id] += 1
        return "term_relationships", "(%d,%d,0)" % (post_id, tt_id)

    def _body(self, count: int, post_id: int, title: str) -> str:
        heading = sql_escape('<!-- wp:heading {"level":3} -->\n<h3 class="wp-block-heading" id="post-%d">%s</h3>\n'
                             '<!-- /wp:heading -->\n' % (post_id, title))
        return heading + "".join(self.rng.choices(self.blocks, k=count))

    def _permalink(self, when, name):
        return "%s/%s/%s/" % (self.url, _local(when)[:10].replace("-", "/"), name)

    def _comments(self, post_id, when, count):
        rng = self.rng
        for index in range(count):
            self.comment_id += 1
            author_url = (self.linked[index % len(self.linked)], LIBRARY_URL, "", self.url)[rng.randrange(4)]
            content = "%s Thanks for <a href=\"%s/?p=%d\">this post</a>!" % (rng.choice(SENTENCES), self.url, post_id)
            stamp = when + 3600 * (index + 2)
            yield "comments", _sql_values(
                self.comment_id, post_id, ("Zoë Reader", "Jordan O'Neil", "田中 花子", "Sam 😀")[rng.randrange(4)],
                "reader%d@example.com" % rng.randrange(1000), author_url, "192.0.2.%d" % rng.randrange(1, 255),
                _local(stamp), _when(stamp), content, 0, "1",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36", "comment", 0, 0)
            if index % 2 == 0:
                self.commentmeta_id += 1
                yield "commentmeta", _sql_values(self.commentmeta_id, self.comment_id, "akismet_result", "false")
                self.commentmeta_id += 1
                history = {"time": PhpFloat("1684137600.1234569"), "event": "check-ham", "user": "",
                           "meta": {"response": "false"}}
                yield "commentmeta", _sql_values(self.commentmeta_id, self.comment_id, "akismet_history",
                                                 php_serialize(history))

    # -- posts ----------------------------------------------------------------------------------------------------
    def _hello_world_and_sample_page(self):
        when = self.start
        body = sql_escape("<!-- wp:paragraph -->\n<p>Welcome to %s. This is your first post: edit or delete it, "
                          "then start writing! Visit <a href=\"%s/\">the home page</a>.</p>\n<!-- /wp:paragraph -->"
                          % (self.site.title, self.url))
        yield "posts", self._post_row(1, when, body, "Hello world!", "hello-world", "%s/?p=1" % self.url,
                                      comment_count=1)
        self.comment_id += 1
        yield "comments", _sql_values(
            self.comment_id, 1, "A WordPress Commenter", "wapuu@wordpress.example", "https://wordpress.org/", "",
            _local(when), _when(when), "Hi, this is a comment.\nTo get started with moderating, editing, and deleting "
            "comments, please visit the Comments screen in the dashboard.", 0, "1", "", "comment", 0, 0)
        # Held and spam comments do not count in comment_count.
        for approved, author_url in (("0", WEBDEV_URL + "/"), ("spam", "https://spam.example.com/")):
            self.comment_id += 1
            yield "comments", _sql_values(
                self.comment_id, 1, "Visitor", "visitor@example.com", author_url, "198.51.100.7", _local(when + 90),
                _when(when + 90), "Great post! Details at %s" % author_url, 0, approved, "Mozilla/5.0", "comment", 0, 0)
        yield self._relate(1, 1)
        # A plugin that serialized an already serialized array: the payload of the outer string is serialized too.
        legacy = php_serialize(php_serialize({"source": self.url + "/?p=1", "imported": True, "rating": 0.5}))
        yield self._meta(1, "_wfu_legacy_import", legacy)
        page = sql_escape("<!-- wp:paragraph -->\n<p>This is an example page. Our address is on "
                          "<a href=\"%s/contact/\">the contact page</a>; the <a href=\"%s\">main site</a> "
                          "lists every department.</p>\n<!-- /wp:paragraph -->" % (self.url, self.main.url))
        yield "posts", self._post_row(2, when + 60, page, "Sample Page", "sample-page", "%s/?page_id=2" % self.url,
                                      post_type="page", comments="closed")
        yield self._meta(2, "_wp_page_template", "default")

    def _attachments(self):
        rng = self.rng
        for index, (att_id, att_file) in enumerate(self.attachments):
            when = self.start + 600 * (index + 1)
            name = att_file.rsplit("/", 1)[1][:-4]
            url = "%s/%s" % (self.uploads, att_file)
            yield "posts", self._post_row(att_id, when, "", name.replace("-", " ").title(), name, url,
                                          post_type="attachment", status="inherit", mime="image/jpeg",
                                          excerpt="Photo 📷 by the communications office")
            yield self._meta(att_id, "_wp_attached_file", att_file)
            yield self._meta(att_id, "_wp_attachment_metadata", php_serialize(self._attachment_metadata(att_file, rng)))
            yield self._meta(att_id, "_wp_attachment_image_alt", "Étudiants sur le campus — 日本語 %d" % index)

    @staticmethod
    def _attachment_metadata(att_file, rng):
        stem = att_file.rsplit("/", 1)[1][:-4]
        sizes = {size: {"file": "%s-%dx%d.jpg" % (stem, width, height), "width": width, "height": height,
                        "mime-type": "image/jpeg", "filesize": rng.randrange(8000, 90000)}
                 for size, width, height in IMAGE_SIZES}
        # Sites upgraded from PHP < 7.1 keep floats spelled with 17 significant digits.
        focal = PhpFloat("64.950000000000003") if rng.random() < 0.5 else "50"
        image_meta = {"aperture": "2.8", "credit": "Zoë Photographer", "camera": "Canon EOS R5",
                      "caption": "Café au lait ☕ 😀", "created_timestamp": "1684137600", "copyright": "© Example",
                      "focal_length": focal, "iso": "100", "shutter_speed": 0.5, "title": "日本語のタイトル",
                      "orientation": "1", "keywords": []}
        return {"width": 1920, "height": 1280, "file": att_file, "filesize": rng.randrange(200000, 900000),
                "sizes": sizes, "image_meta": image_meta}

    def _seo_meta(self, title, permalink, att_file):
        return php_serialize({
            "title": "%s | %s" % (title, self.site.title), "description": self.rng.choice(SENTENCES),
            "canonical": permalink, "og_image": "%s/%s" % (self.uploads, att_file), "robots": ["index", "follow"],
            "score": 0.5 if len(title) % 2 else 87.25,
            "schema": PhpObject("stdClass", {"type": "Article", "url": permalink, "publisher": self.main.url + "/"}),
        })

    def _elementor_data(self, count):
        return "[" + ",".join(self.rng.choices(self.elementor_widgets, k=count)) + "]"

    def _content_post(self, number):
        rng = self.rng
        post_id = self._new_post_id()
        when = self.start + 86400 * number + rng.randrange(3600)
        title = rng.choice(TITLES)
        name = _slugify(title, post_id)
        is_page = number % 4 == 3
        comment_count = 0 if is_page else rng.randrange(3)
        body = self._body(rng.randrange(3, 9), post_id, title)
        if is_page:
            guid, permalink = "%s/?page_id=%d" % (self.url, post_id), "%s/%s/" % (self.url, name)
        else:
            guid, permalink = "%s/?p=%d" % (self.url, post_id), self._permalink(when, name)
        excerpt = "" if number % 3 else "%s — see %s/" % (title, self.url)
        yield "posts", self._post_row(post_id, when, body, title, name, guid, post_type="page" if is_page else "post",
                                      excerpt=excerpt, comment_count=comment_count,
                                      comments="closed" if is_page else "open")
        yield from self._comments(post_id, when, comment_count)
        att_id, att_file = self.attachments[number % len(self.attachments)]
        yield self._meta(post_id, "_edit_last", str(self.author))
        yield self._meta(post_id, "_edit_lock", "%d:%d" % (1684137600 + post_id, self.author))
        yield self._meta(post_id, "_thumbnail_id", str(att_id))
        yield self._meta(post_id, "_wfu_seo", self._seo_meta(title, permalink, att_file))
        if is_page:
            yield self._meta(post_id, "_wp_page_template", "default")
            yield self._meta(post_id, "_elementor_edit_mode", "builder")
            yield self._meta_escaped(post_id, "_elementor_data", self._elementor_data(2))
        else:
            yield self._relate(post_id, 1 + number % 4)
            yield self._relate(post_id, 5 + number % 3)
        if number % 5 == 0:
            yield self._meta(post_id, "_oembed_%032x" % rng.getrandbits(128),
                             '<iframe title="Campus tour" width="500" height="281" '
                             'src="https://www.youtube.com/embed/dQw%03d?feature=oembed" frameborder="0"></iframe>'
                             % (number % 1000))
            yield self._meta(post_id, "enclosure", "%s/2023/05/podcast-%d.mp3\n%d\naudio/mpeg\n"
                             % (self.uploads, number, 1000000 + number))
        if number % 3 == 0:
            revision_id = self._new_post_id()
            yield "posts", self._post_row(revision_id, when + 7200, body, title, "%d-revision-v1" % post_id,
                                          "%s/?p=%d" % (self.url, revision_id), post_type="revision",
                                          status="inherit", parent=post_id, comments="closed")

    def _bulk_post(self, number):
        """A long post with a revision and page-builder data: what makes real sites big."""
        rng = self.rng
        post_id = self._new_post_id()
        when = self.start + 3600 * (number % 20000) + rng.randrange(3600)
        title = TITLES[number % len(TITLES)]
        name = _slugify(title, post_id)
        body = self._body(rng.randrange(12, 30), post_id, title)
        comment_count = 1 if number % 4 == 0 else 0
        yield "posts", self._post_row(post_id, when, body, title, name, "%s/?p=%d" % (self.url, post_id),
                                      comment_count=comment_count)
        yield from self._comments(post_id, when, comment_count)
        revision_id = self._new_post_id()
        yield "posts", self._post_row(revision_id, when + 600, body, title, "%d-revision-v1" % post_id,
                                      "%s/?p=%d" % (self.url, revision_id), post_type="revision",
                                      status="inherit", parent=post_id, comments="closed")
        att_id, att_file = self.attachments[number % len(self.attachments)]
        yield self._meta(post_id, "_edit_last", str(self.author))
        yield self._meta(post_id, "_thumbnail_id", str(att_id))
        yield self._meta(post_id, "_elementor_edit_mode", "builder")
        yield self._meta_escaped(post_id, "_elementor_data", self._elementor_data(rng.randrange(4, 10)))
        yield self._meta(post_id, "_wfu_seo", self._seo_meta(title, self._permalink(when, name), att_file))
        yield self._relate(post_id, 1 + number % 4)
        yield self._relate(post_id, 5 + number % 3)

    def _global_styles_and_menu(self):
        when = self.start + 86400 * 400
        styles_id = self._new_post_id()
        att_id, att_file = self.attachments[0]
        styles = {
            "version": 3, "isGlobalStylesUserThemeJSON": True,
            "styles": {"background": {"backgroundImage": {"url": "%s/%s" % (self.uploads, att_file), "id": att_id}},
                       "elements": {"link": {"color": {"text": "#9e7e38"}}}},
            "settings": {"custom": {"homeUrl": self.url + "/", "tagline": "Café 😀 𝄞"}},
        }
        yield "posts", self._post_row(styles_id, when, sql_escape(_json_for_wordpress(styles)),
                                      "Custom Styles", "wp-global-styles-%s" % self.theme,
                                      "%s/?p=%d" % (self.url, styles_id), post_type="wp_global_styles",
                                      comments="closed")
        yield self._relate(styles_id, 9)
        first_subsite = self.linked[0]
        items = (("About the University", "custom", self.main.url + "/about/", 0),
                 ("Partner site", "custom", first_subsite + "/", 0),
                 ("Library", "custom", LIBRARY_URL + "/", 0),
                 ("Sample Page", "post_type", "", 2))
        for order, (title, item_type, url, object_id) in enumerate(items, start=1):
            item_id = self._new_post_id()
            yield "posts", self._post_row(item_id, when + order, "", title, str(item_id),
                                          "%s/?p=%d" % (self.url, item_id), post_type="nav_menu_item",
                                          menu_order=order, comments="closed")
            yield self._meta(item_id, "_menu_item_type", item_type)
            yield self._meta(item_id, "_menu_item_menu_item_parent", "0")
            yield self._meta(item_id, "_menu_item_object_id", str(object_id or item_id))
            yield self._meta(item_id, "_menu_item_object", "page" if object_id else "custom")
            yield self._meta(item_id, "_menu_item_target", "")
            yield self._meta(item_id, "_menu_item_classes", php_serialize([""]))
            yield self._meta(item_id, "_menu_item_xfn", "")
            yield self._meta(item_id, "_menu_item_url", url)
            yield self._relate(item_id, 8)

    # -- options, links, terms ------------------------------------------------------------------------------------
    def _options(self):
        for option_id, (name, value, autoload) in enumerate(self._option_values(), start=1):
            if not isinstance(value, str):
                value = php_serialize(value)
            yield "options", _sql_values(option_id, name, value, autoload)

    def _option_values(self):
        """(name, value, autoload): WordPress's own options, widgets, theme mods and a plugin's odd values."""
        site = self.site
        att_id, att_file = self.attachments[0]
        image = "%s/%s" % (self.uploads, att_file)
        header = PhpObject("stdClass", {"attachment_id": att_id, "url": image, "thumbnail_url": image,
                                        "height": 1280, "width": 1920})
        other = self.linked[0]
        widget_text = {
            2: {"title": "Visit us — Café 😀", "filter": True, "visual": True,
                "text": '<p>Find us on <a href="%s/contact/">the contact page</a>, at <a href="%s/">the library</a> '
                        'or by <a href="%s">email</a>.</p>' % (self.url, LIBRARY_URL, MAILTO)},
            3: {"title": "日本語 links", "filter": True, "visual": False,
                "text": '<a href="%s/">Partner site</a> · <a href="%s/">Home</a> · <a href="%s/">Web team</a>'
                        % (other, self.main.url, WEBDEV_URL)},
            "_multiwidget": 1,
        }
        widget_block = {
            2: {"content": '<!-- wp:paragraph -->\n<p><a href="%s/apply/">Apply</a> or <a href="%s/visit/">visit</a>'
                           ' 😀</p>\n<!-- /wp:paragraph -->' % (self.main.url, self.url)},
            3: {"content": '<!-- wp:image {"id":%d} -->\n<figure class="wp-block-image"><img src="%s" alt="" '
                           'class="wp-image-%d"/></figure>\n<!-- /wp:image -->' % (att_id, image, att_id)},
            "_multiwidget": 1,
        }
        sidebars = {"wp_inactive_widgets": [], "sidebar-1": ["block-2", "text-2", "media_image-2"],
                    "sidebar-2": ["block-3", "text-3"], "array_version": 3}
        media_widget = {2: {"attachment_id": att_id, "url": image, "title": "Campus", "size": "medium",
                            "link_type": "custom", "link_url": self.url + "/gallery/", "image_title": "Étudiants",
                            "width": 1920, "height": 1280}, "_multiwidget": 1}
        theme_mods = {0: False, "nav_menu_locations": {"primary": 8, "footer": 8}, "custom_css_post_id": -1,
                      "header_image": image, "header_image_data": header, "custom_logo": att_id,
                      "background_image": self.uploads + "/2023/02/background.jpg",
                      "footer_links": [self.main.url + "/privacy/", LIBRARY_URL + "/", MAILTO]}
        cron_args = [self.url + "/feed/"]
        cron = {
            1672675200 + self.site.blog_id * 60: {"wp_version_check": {
                "40cd750bba9870f18aada2478b24840a": {"schedule": "twicedaily", "args": [], "interval": 43200}}},
            1672678800 + self.site.blog_id * 60: {"wfu_sync_feed": {
                _md5(php_serialize(cron_args)): {"schedule": False, "args": cron_args}}},
            "version": 2,
        }
        legacy_settings = php_serialize({"home": self.url, "logo": image, "links": [self.main.url, other],
                                         "label": "Résumé — 日本語 😀"})
        header_json = {"logo": {"url": image, "alt": "Café 😀"},
                       "menu": [{"title": "Home", "url": self.url + "/"}, {"title": "Library", "url": LIBRARY_URL + "/"}]}
        display_cache = PhpCustom("ArrayObject", "x:i:0;%s;m:a:0:{}" % php_serialize(
            {"layout": "grid", "columns": 3, "label": "Résumé 😀"}))
        events = [{"title": title, "url": "%s/events/%d/" % (self.url, index), "venue": "Salle Molière",
                   "starts": 1684137600 + 86400 * index} for index, title in enumerate(TITLES[:5])]
        theme_title = self.theme.replace("twentytwenty", "Twenty Twenty-").title()
        yield from (
            ("siteurl", self.url, "yes"), ("home", self.url, "yes"), ("blogname", site.title, "yes"),
            ("blogdescription", "Just another Example University site — ça marche 😀", "yes"),
            ("users_can_register", "0", "yes"), ("admin_email", "webmaster@example.edu", "yes"),
            ("start_of_week", "1", "yes"), ("use_balanceTags", "0", "yes"), ("use_smilies", "1", "yes"),
            ("require_name_email", "1", "yes"), ("comments_notify", "1", "yes"), ("posts_per_rss", "10", "yes"),
            ("rss_use_excerpt", "0", "yes"), ("mailserver_url", "mail.example.com", "yes"),
            ("mailserver_login", "login@example.com", "yes"), ("mailserver_pass", "password", "yes"),
            ("mailserver_port", "110", "yes"), ("default_category", "1", "yes"),
            ("default_comment_status", "open", "yes"), ("default_ping_status", "open", "yes"),
            ("default_pingback_flag", "1", "yes"), ("posts_per_page", "10", "yes"), ("date_format", "F j, Y", "yes"),
            ("time_format", "g:i a", "yes"), ("links_updated_date_format", "F j, Y g:i a", "yes"),
            ("comment_moderation", "0", "yes"), ("moderation_notify", "1", "yes"),
            ("permalink_structure", "/%year%/%monthnum%/%day%/%postname%/", "yes"),
            ("rewrite_rules", REWRITE_RULES_SERIALIZED, "yes"), ("hack_file", "0", "yes"), ("blog_charset", "UTF-8", "yes"),
            ("moderation_keys", "", "no"),
            ("active_plugins", ["akismet/akismet.php", "wfu-directory/wfu-directory.php"], "yes"),
            ("category_base", "", "yes"), ("ping_sites", "http://rpc.pingomatic.com/", "yes"),
            ("comment_max_links", "2", "yes"), ("gmt_offset", "", "yes"), ("default_email_category", "1", "yes"),
            ("recently_edited", ["/var/www/html/wp-content/themes/%s/style.css" % self.theme], "no"),
            ("template", self.theme, "yes"), ("stylesheet", self.theme, "yes"),
            ("comment_registration", "0", "yes"), ("html_type", "text/html", "yes"), ("use_trackback", "0", "yes"),
            ("default_role", "subscriber", "yes"), ("db_version", str(WP_DB_VERSION), "yes"),
            ("uploads_use_yearmonth_folders", "1", "yes"), ("upload_path", "", "yes"),
            ("blog_public", str(site.flags["public"]), "yes"), ("default_link_category", "2", "yes"),
            ("show_on_front", "page", "yes"), ("page_on_front", "2", "yes"), ("page_for_posts", "0", "yes"),
            ("tag_base", "", "yes"), ("show_avatars", "1", "yes"), ("avatar_rating", "G", "yes"),
            ("upload_url_path", "", "yes"), ("thumbnail_size_w", "150", "yes"), ("thumbnail_size_h", "150", "yes"),
            ("thumbnail_crop", "1", "yes"), ("medium_size_w", "300", "yes"), ("medium_size_h", "300", "yes"),
            ("avatar_default", "mystery", "yes"), ("large_size_w", "1024", "yes"), ("large_size_h", "1024", "yes"),
            ("image_default_link_type", "none", "yes"), ("thread_comments", "1", "yes"),
            ("comments_per_page", "50", "yes"), ("comment_order", "asc", "yes"),
            ("sticky_posts", [self.first_content_id], "yes"),
            ("widget_categories", {2: {"title": "Catégories", "count": 0, "hierarchical": 0, "dropdown": 0},
                                   "_multiwidget": 1}, "yes"),
            ("widget_text", widget_text, "yes"),
            ("widget_rss", {2: {"url": LIBRARY_URL + "/feed/", "title": "Library news", "items": 5},
                            "_multiwidget": 1}, "yes"),
            ("uninstall_plugins", [], "no"), ("timezone_string", "America/New_York", "yes"),
            ("default_post_format", "0", "yes"), ("link_manager_enabled", "0", "yes"),
            ("finished_splitting_shared_terms", "1", "yes"), ("site_icon", str(att_id), "yes"),
            ("medium_large_size_w", "768", "yes"), ("medium_large_size_h", "0", "yes"),
            ("wp_page_for_privacy_policy", "0", "yes"), ("show_comments_cookies_opt_in", "1", "yes"),
            ("admin_email_lifespan", "1700000000", "yes"), ("disallowed_keys", "", "no"),
            ("comment_previously_approved", "1", "yes"), ("auto_plugin_theme_update_emails", [], "no"),
            ("auto_update_core_dev", "enabled", "yes"), ("auto_update_core_minor", "enabled", "yes"),
            ("auto_update_core_major", "enabled", "yes"), ("wp_force_deactivated_plugins", [], "yes"),
            ("wp_attachment_pages_enabled", "0", "yes"), ("initial_db_version", "53496", "yes"),
            (site.table_prefix + "user_roles", USER_ROLES_SERIALIZED, "yes"), ("fresh_site", "0", "yes"), ("WPLANG", "", "yes"),
            ("widget_block", widget_block, "yes"), ("sidebars_widgets", sidebars, "yes"),
            ("widget_media_image", media_widget, "yes"),
            ("widget_nav_menu", {2: {"title": "Menu", "nav_menu": 8}, "_multiwidget": 1}, "yes"),
            ("cron", cron, "yes"), ("theme_mods_" + self.theme, theme_mods, "yes"),
            ("theme_mods_twentyseventeen", {"header_textcolor": "blank", "header_image": image,
                                            "header_image_data": header}, "no"),
            ("current_theme", theme_title, "yes"), ("nav_menu_options", {0: False, "auto_add": []}, "off"),
            ("recovery_keys", [], "yes"), ("https_detection_errors", [], "off"), ("site_logo", str(att_id), "yes"),
            ("wfu_legacy_settings", php_serialize(legacy_settings), "no"),
            ("wfu_header_json", _json_for_wordpress(header_json), "auto"),
            ("wfu_display_cache", php_serialize(display_cache), "off"),
            ("wfu_maintenance_mode", php_serialize(False), "on"),
            ("wfu_feature_flags", {"new_header": True, "beta": False, "ratio": PhpFloat("0.10000000000000001"),
                                   "zoom": 1.5, "limit": None}, "on"),
            ("wfu_portal_links", "\n".join((self.url + "/", other + "/", LIBRARY_URL + "/", WEBDEV_URL + "/")), "auto"),
            ("_transient_timeout_wfu_events", str(1700000000 + site.blog_id), "off"),
            ("_transient_wfu_events", events, "off"),
        )

    def _links(self):
        links = ((LIBRARY_URL + "/", "University Library", "_blank", "Books, journals and research help"),
                 (WEBDEV_URL + "/", "Web Development", "", "Guides for site owners"),
                 (self.main.url + "/", "Example University", "", "Home"),
                 (self.linked[0] + "/", "Partner site", "", "Née d'une collaboration 😀"))
        for link_id, (url, name, target, description) in enumerate(links, start=1):
            yield "links", _sql_values(link_id, url, name, "", target, description, "Y", self.author, 0,
                                       "0000-00-00 00:00:00", "", "", "")

    def _terms(self):
        terms = ((1, "Uncategorized", "uncategorized", "category", ""),
                 (2, "News", "news", "category", 'Stories from <a href="%s/category/news/">our newsroom</a>.' % self.url),
                 (3, "Événements", "evenements", "category", "Concerts, conférences et expositions 🎭"),
                 (4, "研究 Research", "research", "category", ""),
                 (5, "campus", "campus", "post_tag", ""),
                 (6, "students", "students", "post_tag", ""),
                 (7, "😀 Fun", "fun", "post_tag", ""),
                 (8, "Main Menu", "main-menu", "nav_menu", ""),
                 (9, self.theme, self.theme, "wp_theme", ""))
        for term_id, name, slug, taxonomy, description in terms:
            yield "terms", _sql_values(term_id, name, slug, 0)
            yield "term_taxonomy", _sql_values(term_id, term_id, taxonomy, description, 0, self.term_counts[term_id])
        yield "termmeta", _sql_values(1, 2, "wfu_banner", "%s/%s" % (self.uploads, self.attachments[0][1]))
        yield "termmeta", _sql_values(2, 3, "wfu_style", php_serialize(
            {"color": "#9e7e38", "links": [LIBRARY_URL + "/", self.url + "/category/evenements/"], "label": "Été ☀️"}))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


# -- Network tables -----------------------------------------------------------------------------------------------

def _network_rows(spec: NetworkSpec, sites: list[Site]) -> Iterator[tuple[str, str]]:
    """Rows of the global tables: the network, its blogs, users and sign-ups."""
    main = sites[0]
    host = network_host(spec)
    base_path = network_path(spec)
    scheme = urlsplit(spec.url).scheme
    yield "site", _sql_values(1, host, base_path)
    for meta_id, site in enumerate(sites, start=1):
        registered = 7 * 3600 * (site.blog_id - 1)
        flags = site.flags
        yield "blogs", _sql_values(site.blog_id, 1, site.domain, site.path, _when(registered),
                                   _when(registered + 86400 * 500 + 61 * site.blog_id), flags["public"],
                                   flags["archived"], flags["mature"], flags["spam"], flags["deleted"], 0)
        yield "blogmeta", _sql_values(meta_id, site.blog_id, "db_version", str(WP_DB_VERSION))
    subsites = [site for site in sites if not site.is_main]
    network_options = (
        ("site_name", "Example University Sites"), ("admin_email", "webmaster@example.edu"), ("admin_user_id", "1"),
        ("registration", "none"),
        ("upload_filetypes", "jpg jpeg png gif webp mov avi mpg 3gp 3g2 midi mid pdf doc ppt odt pptx docx pps ppsx xls "
                             "xlsx key mp3 ogg flac m4a wav mp4 m4v webm ogv flv"),
        ("blog_upload_space", "100"), ("fileupload_maxk", "1500"),
        ("site_admins", ["admin"]), ("allowedthemes", dict.fromkeys(THEMES, True)),
        ("illegal_names", ["www", "web", "root", "admin", "main", "invite", "administrator", "files"]),
        ("wpmu_upgrade_site", str(WP_DB_VERSION)),
        ("welcome_email", "Howdy USERNAME,\n\nYour new SITE_NAME site has been successfully set up at:\nBLOG_URL\n\n"
                          "You can log in to the administrator account with the following information:\n\n"
                          "Username: USERNAME\nPassword: PASSWORD\nLog in here: BLOG_URLwp-login.php\n\n"
                          "We hope you enjoy your new site. Thanks!\n\n--The Team @ SITE_NAME"),
        ("first_post", "Welcome to %%s. This is your first post. Edit or delete it, then start writing! "
                       "See <a href=\"%s/\">the network's home</a>." % main.url),
        ("siteurl", "%s://%s%s" % (scheme, host, base_path)), ("add_new_users", "0"),
        ("upload_space_check_disabled", "1"), ("subdomain_install", "1" if spec.subdomain else "0"),
        ("ms_files_rewriting", "0"), ("user_count", str(1 + len(subsites))), ("initial_db_version", "53496"),
        ("active_sitewide_plugins", {"akismet/akismet.php": 1672668000, "wfu-network-tools/wfu-network-tools.php": 1672668000}),
        ("WPLANG", "en_US"), ("main_site", "1"), ("site_meta_supported", "1"), ("blog_count", str(len(sites))),
        ("can_compress_scripts", "1"), ("global_terms_enabled", "0"), ("registrationnotification", "yes"),
        ("menu_items", {"plugins": "1"}), ("recently_activated", []),
        ("wfu_network_settings", {"home": main.url + "/", "cdn": PhpObject("stdClass", {
            "enabled": True, "origin": main.url + "/wp-content/", "ttl": 3600, "ratio": PhpFloat("0.33333333333333331")}),
            "sites": [site.url + "/" for site in subsites[:5]], "support": WEBDEV_URL + "/help/"}),
        ("_site_transient_theme_roots", dict.fromkeys(THEMES, "/themes")),
        ("_site_transient_timeout_theme_roots", "1700000000"),
    )
    for meta_id, (key, value) in enumerate(network_options, start=1):
        yield "sitemeta", _sql_values(meta_id, 1, key, value if isinstance(value, str) else php_serialize(value))
    yield from _user_rows(spec, sites)
    yield from _signup_rows(spec, sites)
    for log_id, site in enumerate(subsites, start=1):
        yield "registration_log", _sql_values(log_id, "editor%d@example.edu" % site.blog_id,
                                              "10.0.%d.%d" % (site.blog_id // 256, site.blog_id % 256), site.blog_id,
                                              _when(7 * 3600 * (site.blog_id - 1)))


def _user_rows(spec: NetworkSpec, sites: list[Site]):
    """The network admin (user 1) and one editor per subsite (user id = blog id)."""
    meta_id = 0
    main = sites[0]
    users = [(1, "admin", "Network Admin", "webmaster@example.edu", main, "administrator", 10)]
    names = ("Zoë Martín", "田中 花子", "Jordan O'Neil", "Sam Lee 😀", "Ana Łukasiewicz")
    for site in sites[1:]:
        users.append((site.blog_id, "editor%d" % site.blog_id, "%s %d" % (names[site.blog_id % len(names)], site.blog_id),
                      "editor%d@example.edu" % site.blog_id, site, "editor", 7))
    for user_id, login, display, email, site, role, level in users:
        rng = random.Random("%d:user:%d" % (spec.seed, user_id))
        # A phpass-shaped hash of nothing in particular.
        password = "$P$B" + "".join(rng.choices("./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", k=31))
        yield "users", _sql_values(user_id, login, password, login, email, site.url, _when(7 * 3600 * (user_id - 1)),
                                   "", 0, display, 1 if site.flags["spam"] else 0, 0)
        session = {"%064x" % rng.getrandbits(256): {"expiration": 1700000000 + user_id, "ip": "192.0.2.10",
                                                    "ua": "Mozilla/5.0 (Macintosh)", "login": 1699000000 + user_id}}
        meta = (("nickname", login), ("first_name", display.split(" ", 1)[0]), ("last_name", display.split(" ", 1)[-1]),
                ("description", "Écrit sur %s — %s" % (site.title, site.url)), ("rich_editing", "true"),
                ("syntax_highlighting", "true"), ("comment_shortcuts", "false"), ("admin_color", "fresh"),
                ("use_ssl", "0"), ("show_admin_bar_front", "true"), ("locale", ""),
                (site.table_prefix + "capabilities", php_serialize({role: True})),
                (site.table_prefix + "user_level", str(level)), ("dismissed_wp_pointers", ""),
                ("primary_blog", str(site.blog_id)), ("source_domain", site.domain),
                ("session_tokens", php_serialize(session)),
                (site.table_prefix + "dashboard_quick_press_last_post_id", str(3 + user_id % 7)))
        for key, value in meta:
            meta_id += 1
            yield "usermeta", _sql_values(meta_id, user_id, key, value)


def _signup_rows(spec: NetworkSpec, sites: list[Site]):
    """A pending site sign-up and an activated user sign-up."""
    host = network_host(spec)
    base_path = network_path(spec)
    if spec.subdomain:
        domain, path = "newdept.%s" % (spec.subdomain_base or host), base_path
    else:
        domain, path = host, base_path + "newdept/"
    rng = random.Random("%d:signups" % spec.seed)
    yield "signups", _sql_values(1, domain, path, "New Department — Nouveau département", "newdept-owner",
                                 "newdept@example.edu", _when(86400 * 600), "0000-00-00 00:00:00", 0,
                                 "%016x" % rng.getrandbits(64), php_serialize({"lang_id": 1, "public": 1, "WPLANG": ""}))
    yield "signups", _sql_values(2, "", "", "", "guest%d" % len(sites), "guest@example.com", _when(86400 * 601),
                                 _when(86400 * 602), 1, "%016x" % rng.getrandbits(64),
                                 php_serialize({"add_to_blog": str(sites[-1].blog_id), "new_role": "subscriber"}))


# -- Streaming --------------------------------------------------------------------------------------------------

def _create_statements(names: dict[str, str], schema: dict[str, str], drop_existing: bool) -> Iterator[str]:
    for key, name in names.items():
        if drop_existing:
            yield "DROP TABLE IF EXISTS %s" % _quote(name)
        yield "CREATE TABLE %s %s %s" % (_quote(name), schema[key], TABLE_OPTIONS)


def _batched(owner: int, rows, names: dict[str, str]) -> Iterator[tuple[int, str]]:
    batcher = _InsertBatcher(names)
    for key, row in rows:
        statement = batcher.add(key, row)
        if statement is not None:
            yield owner, statement
    for statement in batcher.drain():
        yield owner, statement


def _statements(spec: NetworkSpec, drop_existing: bool = False) -> Iterator[tuple[int, str]]:
    """(owner, statement): owner 0 for the session settings and global tables, else the blog id."""
    sites = network_sites(spec)
    yield 0, "SET NAMES %s COLLATE %s" % (CHARSET, COLLATION)
    # Backslash escapes on, strict (a value too long for its column is an error, not a silent truncation),
    # zero dates allowed as WordPress's defaults need.
    yield 0, "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'"
    names = {key: spec.prefix + key for key in GLOBAL_SCHEMA}
    for statement in _create_statements(names, GLOBAL_SCHEMA, drop_existing):
        yield 0, statement
    yield from _batched(0, _network_rows(spec, sites), names)
    for site in sites:
        names = {key: site.table_prefix + key for key in SITE_SCHEMA}
        for statement in _create_statements(names, SITE_SCHEMA, drop_existing):
            yield site.blog_id, statement
        yield from _batched(site.blog_id, _SiteBuilder(spec, site, sites).rows(), names)


def generate_sql(spec: NetworkSpec, drop_existing: bool = False) -> Iterator[str]:
    """The network's SQL, one statement at a time (no trailing ``;``), INSERTs of about 1 MB each.

    ``drop_existing`` puts a ``DROP TABLE IF EXISTS`` before each ``CREATE TABLE``.
    """
    for _owner, statement in _statements(spec, drop_existing):
        yield statement


def write_sql(spec: NetworkSpec, stream, drop_existing: bool = False) -> int:
    """Write the network's SQL, ``;``-terminated, to a binary stream; return the number of bytes."""
    header = ("-- WordPress multisite test network: url=%s subdomain=%s seed=%d prefix=%s\n"
              % (spec.url, spec.subdomain, spec.seed, spec.prefix)).encode("utf-8")
    stream.write(header)
    written = len(header)
    for statement in generate_sql(spec, drop_existing):
        data = (statement + ";\n").encode("utf-8")
        stream.write(data)
        written += len(data)
    return written


# -- Loading ------------------------------------------------------------------------------------------------------

class NetworkExistsError(RuntimeError):
    """The database already holds tables the network would create."""


def _db_module():
    """The collection's connection helpers; the collection path is added when run from a checkout."""
    try:
        from ansible_collections.wfu.multisite.plugins.module_utils import db
    except ImportError:
        collections = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "collections")
        sys.path.insert(0, collections)
        from ansible_collections.wfu.multisite.plugins.module_utils import db
    return db


def network_table_names(spec: NetworkSpec) -> list[str]:
    """Every table the network has: the global ones, then each site's ten."""
    names = global_table_names(spec.prefix)
    for blog_id in spec.blog_ids():
        names.extend(site_table_names(spec.prefix, blog_id))
    return names


def load_network(conn_params: dict, database: str, spec: NetworkSpec, replace: bool = False) -> dict:
    """Create ``database`` if missing and load the network into it through PyMySQL.

    An existing table of the network is an error unless ``replace`` (then the network's tables are dropped and
    recreated; other tables stay).  Returns a summary: ``database``, ``url``, ``subdomain``, ``prefix``, ``seed``,
    ``network_tables``, ``sites`` (``blog_id, domain, path, url, flags, tables, bytes``), ``bytes``, ``statements``,
    ``seconds``.  ``bytes`` are bytes of SQL sent.
    """
    db = _db_module()
    db.validate_identifier(database, "database name")
    spec.validate()
    started = time.monotonic()
    sites = network_sites(spec)
    sent = dict.fromkeys([0] + [site.blog_id for site in sites], 0)
    statements = 0
    conn = db.connect(conn_params, database="", autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS %s CHARACTER SET %s COLLATE %s"
                        % (_quote(database), CHARSET, COLLATION))
            cur.execute("USE %s" % _quote(database))
            cur.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,))
            existing = sorted({row[0] for row in cur.fetchall()} & set(network_table_names(spec)))
            if existing and not replace:
                raise NetworkExistsError(
                    "database %s already has %d of the network's tables (%s%s); load into an empty database or pass "
                    "replace=True (--replace) to drop and recreate them"
                    % (database, len(existing), ", ".join(existing[:5]), ", ..." if len(existing) > 5 else ""))
            owner_loading = 0
            for owner, statement in _statements(spec, drop_existing=replace):
                if owner != owner_loading:
                    conn.commit()
                    owner_loading = owner
                data = statement.encode("utf-8")
                cur.execute(data)
                sent[owner] += len(data)
                statements += 1
        conn.commit()
    finally:
        conn.close()
    return {
        "database": database, "url": spec.url, "subdomain": spec.subdomain, "prefix": spec.prefix, "seed": spec.seed,
        "network_tables": global_table_names(spec.prefix),
        "sites": [{"blog_id": site.blog_id, "domain": site.domain, "path": site.path, "url": site.url,
                   "flags": dict(site.flags), "tables": site_table_names(spec.prefix, site.blog_id),
                   "bytes": sent[site.blog_id]} for site in sites],
        "bytes": sum(sent.values()), "statements": statements, "seconds": round(time.monotonic() - started, 3),
    }


# -- Command line ---------------------------------------------------------------------------------------------------

def parse_size(text: str) -> int:
    """``150M`` → 150000000 (K, M, G are powers of 1000; a plain number is bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError("size %r: use a number with an optional K, M or G suffix" % text)
    factor = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9}[match.group(2).upper()]
    return int(float(match.group(1)) * factor)


def _large_site(text: str) -> tuple[int, int]:
    blog_id, size = text.split(":", 1) if ":" in text else (text, "")
    try:
        return int(blog_id), parse_size(size)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--large wants BLOG_ID:SIZE such as 3:150M (%s)" % exc) from exc


def _site_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--site-ids wants comma-separated blog ids such as 1,2,3,20") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.wpnetwork",
        description="Generate a synthetic WordPress multisite network as SQL, or load it into MariaDB. "
                    "The password for --database comes from $WFU_DB_PASSWORD, a --config-file or a prompt.")
    shape = parser.add_argument_group("network")
    shape.add_argument("--url", default=NetworkSpec.url, help="main site URL (default %(default)s)")
    shape.add_argument("--subdomain", action="store_true", help="subdomain network (default: subdirectories)")
    shape.add_argument("--subdomain-base", help="host the subdomain sites hang under (default: the main host)")
    shape.add_argument("--sites", type=int, default=NetworkSpec.sites, help="number of sites, main included")
    shape.add_argument("--site-ids", type=_site_ids, help="explicit blog ids, e.g. 1,2,3,20,21 (overrides --sites)")
    shape.add_argument("--seed", type=int, default=NetworkSpec.seed)
    shape.add_argument("--prefix", default=NetworkSpec.prefix, help="table prefix (default %(default)s)")
    shape.add_argument("--posts-per-site", type=int, default=NetworkSpec.posts_per_site)
    shape.add_argument("--large", type=_large_site, action="append", default=[], metavar="BLOG_ID:SIZE",
                       help="make a site about SIZE bytes of SQL (K/M/G suffixes), e.g. 3:150M; repeatable")
    output = parser.add_argument_group("output (one of)")
    output.add_argument("--sql", action="store_true", help="write the SQL to stdout (or --output)")
    output.add_argument("--output", help="file for --sql")
    output.add_argument("--database", help="load into this database (created if missing)")
    conn = parser.add_argument_group("connection for --database")
    conn.add_argument("--host", default="127.0.0.1")
    conn.add_argument("--port", type=int, default=3306)
    conn.add_argument("--user", default=os.environ.get("USER", "root"))
    conn.add_argument("--config-file", help="a [client] option file with the connection settings")
    conn.add_argument("--replace", action="store_true", help="drop and recreate the network's tables if present")
    conn.add_argument("--add-drop-table", action="store_true", help="with --sql: DROP TABLE IF EXISTS before each CREATE")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sql == bool(args.database):
        parser.error("give exactly one of --sql and --database")
    try:
        spec = NetworkSpec(url=args.url, subdomain=args.subdomain, sites=args.sites, seed=args.seed,
                           prefix=args.prefix, posts_per_site=args.posts_per_site, large_sites=dict(args.large),
                           site_ids=args.site_ids, subdomain_base=args.subdomain_base)
    except ValueError as exc:
        parser.error(str(exc))
    started = time.monotonic()
    if args.sql:
        if args.output:
            with open(args.output, "wb") as stream:
                written = write_sql(spec, stream, args.add_drop_table)
        else:
            written = write_sql(spec, sys.stdout.buffer, args.add_drop_table)
            sys.stdout.flush()
        seconds = time.monotonic() - started
        sys.stderr.write("wrote %d bytes of SQL in %.2f s (%.1f MB/s)\n"
                         % (written, seconds, written / 1e6 / max(seconds, 1e-9)))
        return 0
    params = {"host": args.host, "port": args.port, "user": args.user}
    if args.config_file:
        params = {"config_file": args.config_file}
    password = os.environ.get("WFU_DB_PASSWORD")
    if password is None and not args.config_file and sys.stdin.isatty():
        password = getpass.getpass("MariaDB password for %s: " % args.user)
    if password is not None:
        params["password"] = password
    try:
        summary = load_network(params, args.database, spec, replace=args.replace)
    except NetworkExistsError as exc:
        sys.stderr.write("%s\n" % exc)
        return 2
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
