# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of an environment run, and the check of a run's settings before anything is locked or written.

This is the one place that knows the run options: their names, types, defaults and limits.  The playbooks
collect the options a run gives (extra vars with these names, see the ``run_options`` lookup), the role
hands them to ``wfu_migration_state action=validate``, and everything downstream gets them normalized:
integers as integers, site lists as sorted lists of ints, booleans as booleans.

``check_run`` validates everything that can be known without a database: the environments' settings,
the migration database against every environment's, the source/target pair, the options.  A bad setting
therefore fails the run before its lock or its state exist, so it leaves nothing behind.
"""

from __future__ import annotations

import os

from ansible_collections.wfu.multisite.plugins.module_utils.content_policy import (
    PRESERVE_KEYS, post_types, preserved_names)
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError, DB_OPTION_KEYS, same_database
from ansible_collections.wfu.multisite.plugins.module_utils.tables import validate_prefix, validate_site_id

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class Option:
    """One run option: its default and how a given value becomes a checked, normalized one."""

    def __init__(self, default=None, minimum=None, choices=None, doc=""):
        self.default = default
        self.minimum = minimum
        self.choices = choices
        self.doc = doc

    def normalize(self, name, value):
        raise NotImplementedError


class Flag(Option):
    def normalize(self, name, value):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError("%s must be true or false, not %r" % (name, value))


class Count(Option):
    def normalize(self, name, value):
        if isinstance(value, bool):
            raise ConfigError("%s must be a whole number, not %r" % (name, value))
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigError("%s must be a whole number, not %r" % (name, value)) from None
        if self.minimum is not None and number < self.minimum:
            raise ConfigError("%s must be at least %d, not %d" % (name, self.minimum, number))
        if self.choices is not None and number > self.choices:
            raise ConfigError("%s must be at most %d, not %d" % (name, self.choices, number))
        return number


class SiteList(Option):
    """Site ids: a list, or a comma-separated string (``-e include_sites=2,5``).  Empty is an error: it would
    otherwise mean "every site" for include_sites, the opposite of what was typed."""

    def normalize(self, name, value):
        items = value.split(",") if isinstance(value, str) else value
        if isinstance(items, int) and not isinstance(items, bool):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise ConfigError("%s must list site ids, e.g. %s=2,5; got %r" % (name, name, value))
        ids = set()
        for item in items:
            if isinstance(item, str) and not item.strip():
                continue
            try:
                ids.add(validate_site_id(item.strip() if isinstance(item, str) else item))
            except ConfigError:
                raise ConfigError("%s must list site ids (positive integers); %r is not one" % (name, item)) from None
        if not ids:
            raise ConfigError("%s is empty; give site ids (%s=2,5) or leave the option out" % (name, name))
        return sorted(ids)


class PostTypes(Option):
    """Post type names: a list, or a comma-separated string (``-e exclude_post_types=event,tribe_venue``)."""

    def normalize(self, name, value):
        return post_types(value, name)


class Choice(Option):
    def normalize(self, name, value):
        text = str(value).strip()
        lowered = text.lower()
        for choice, aliases in self.choices.items():
            if lowered == choice or lowered in aliases:
                return choice
        raise ConfigError("%s must be one of %s, not %r" % (name, ", ".join(self.choices), value))


class Directory(Option):
    def normalize(self, name, value):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("%s must be a directory path, not %r" % (name, value))
        path = os.path.abspath(os.path.expanduser(value.strip()))
        if not os.path.isdir(path):
            raise ConfigError("%s %s is not a directory (or does not exist); create it or give another" % (name, path))
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError("%s %s is not writable by this user" % (name, path))
        return path


class TaskFile(Option):
    """A task file the role includes (a hook): an existing, readable file, kept as an absolute path."""

    def normalize(self, name, value):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError("%s must be the path of a task file, not %r" % (name, value))
        path = os.path.abspath(os.path.expanduser(value.strip()))
        if not os.path.isfile(path):
            raise ConfigError("%s %s is not a file (or does not exist); give the path of a task file the role can "
                              "include" % (name, path))
        if not os.access(path, os.R_OK):
            raise ConfigError("%s %s is not readable by this user" % (name, path))
        return path


class Bucket(Option):
    """An S3 place for backups: ``s3://bucket/prefix`` or ``{bucket, prefix, region, endpoint_url}``; kept as a
    mapping of the keys given."""

    def normalize(self, name, value):
        from ansible_collections.wfu.multisite.plugins.module_utils.backup_s3 import backup_location

        location = backup_location(value)
        if location is None:
            raise ConfigError("%s is empty; give s3://bucket/prefix or leave the option out" % name)
        kept = {"bucket": location.bucket, "prefix": location.prefix.rstrip("/")}
        kept.update({key: getattr(location, key) for key in ("region", "endpoint_url") if getattr(location, key)})
        return kept


NETWORK_TABLES = Choice(default="true", choices={
    "true": ("yes", "on", "1"), "false": ("no", "off", "0"), "only": ()})

# name -> Option.  The defaults apply when neither the run nor the migration being resumed gives the option.
RUN_OPTIONS = {
    "include_sites": SiteList(doc="only these site ids"),
    "exclude_sites": SiteList(doc="leave these site ids out"),
    "active_only": Flag(False, doc="leave out archived, spam and deleted sites"),
    "exclude_main_site": Flag(False, doc="leave out the main site"),
    "network_tables": NETWORK_TABLES,
    "include_users": Flag(False, doc="also migrate the users tables with the network tables"),
    "skip_completed": Flag(True, doc="on resume, leave completed sites alone"),
    "retry_failed": Flag(True, doc="on resume, migrate failed and timed-out sites again"),
    "exclude_failed": Flag(False, doc="on resume, leave failed and timed-out sites alone"),
    "large_sites": SiteList(doc="site ids to treat as large"),
    "large_site_bytes": Count(0, minimum=0, doc="sites of at least this many bytes are large (0: none)"),
    "large_site_timeout_factor": Count(3, minimum=1, doc="a large site gets this many times site_timeout"),
    "defer_large_sites": Flag(True, doc="migrate large sites after the others"),
    "skip_large_sites": Flag(False, doc="mark large sites skipped instead of migrating them"),
    "site_timeout": Count(3600, minimum=1, doc="seconds one site may take"),
    "max_consecutive_failures": Count(5, minimum=0, doc="failures in a row that trigger a health check (0: never)"),
    "max_fail_percentage": Count(0, minimum=0, choices=100, doc="stop past this percentage of failed sites (0: never)"),
    "pause_on_failure": Flag(False, doc="ask continue/pause/abort when failures pile up on healthy databases"),
    "cleanup_on_failure": Flag(True, doc="drop a failed site's leftovers at once"),
    "health_check_interval": Count(0, minimum=0, doc="check every database every this many sites (0: never)"),
    "connection_test_interval": Count(0, minimum=0, doc="test the connections every this many sites (0: never)"),
    "backup": Flag(True, doc="keep the target's previous tables until the new ones are verified"),
    "backup_dir": Directory(doc="directory for dumps of the target's previous tables"),
    "backup_s3": Bucket(doc="also upload each backup (with backup_dir) to this bucket before the swap"),
    "work_dir": Directory(doc="directory for temporary files"),
    "verify_urls": Flag(True, doc="after the swap, check that each site's siteurl and home are its target URL"),
    "keep_files": Flag(False, doc="keep the target's replaced tables (as wfu_old__*) after the new ones are verified"),
    "target_only_tables": Choice(default="keep", choices={"keep": (), "move_aside": ()},
                                 doc="what the swap does with a site's tables the source does not have"),
    "media": Choice(default="auto", choices={"auto": (), "true": ("yes", "on", "1"), "false": ("no", "off", "0")},
                    doc="sync each site's media after its tables (auto: when both environments define media)"),
    "media_delete": Flag(False, doc="delete media of the target's site that the source's site lacks"),
    "exclude_transients": Flag(False, doc="leave out transients (site options, and site transients of the sitemeta)"),
    "exclude_spam_comments": Flag(False, doc="leave out spam and trashed comments, with their commentmeta"),
    "exclude_revisions": Flag(False, doc="leave out revisions and autosaves, with their postmeta and terms"),
    "exclude_post_types": PostTypes((), doc="leave out posts of these types, with their postmeta and terms"),
    "after_site_tasks": TaskFile(doc="a task file the role includes after each site, once its tables and media are in"),
    "after_run_tasks": TaskFile(doc="a task file the role includes once at the end of a run"),
}

# Options that choose which sites a run takes.  On a new migration they decide the migration's sites; on
# resume they narrow this run's queue only, so a later resume without them sees every remaining site.
RUN_FILTERS = ("include_sites", "exclude_sites")


def option_defaults():
    return {name: list(option.default) if isinstance(option.default, tuple) else option.default
            for name, option in RUN_OPTIONS.items()}


def normalize_options(given):
    """The given options, checked and normalized; ``None`` values count as not given.

    Raises ConfigError naming the option and what it accepts.
    """
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ConfigError("the run options must be a mapping, not %s" % type(given).__name__)
    unknown = sorted(set(given) - set(RUN_OPTIONS))
    if unknown:
        raise ConfigError("unknown run option(s) %s; the options are: %s" % (", ".join(unknown), ", ".join(RUN_OPTIONS)))
    return {name: RUN_OPTIONS[name].normalize(name, value) for name, value in given.items() if value is not None}


def effective_options(saved=None, given=None):
    """What a run runs with: the defaults, then the migration's saved options, then this run's."""
    options = option_defaults()
    for name, value in (saved or {}).items():
        if name in RUN_OPTIONS and value is not None:
            options[name] = value
    options.update(given or {})
    return options


def check_environments(environments):
    """Every environment's settings that need no database: url, table_prefix, the db mapping's keys."""
    from ansible_collections.wfu.multisite.plugins.module_utils.replace_rules import load_environments

    if not isinstance(environments, dict) or not environments:
        raise ConfigError("wfu_environments must be a mapping of environment names to their settings "
                          "(url, db, optional table_prefix); see docs/configuration.md")
    load_environments(environments)
    for name, settings in environments.items():
        check_database(settings.get("db"), "wfu_environments.%s.db" % name)
        if settings.get("media") is not None:
            check_media(name, settings["media"])
        for key in PRESERVE_KEYS:
            preserved_names(settings, key, "wfu_environments.%s" % name)
        if settings.get("table_prefix") is not None:
            try:
                validate_prefix(settings["table_prefix"])
            except ConfigError as exc:
                raise ConfigError("wfu_environments.%s.table_prefix: %s" % (name, exc)) from None


def check_media(env, media):
    """An environment's ``media`` setting (s3 or path), checked as the media sync reads it."""
    from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError
    from ansible_collections.wfu.multisite.plugins.module_utils.media import media_location

    try:
        media_location(env, media)
    except MigrationError as exc:
        raise ConfigError(str(exc)) from None


def media_wanted(environments, source_env, target_env, setting):
    """Whether a run syncs media: ``setting`` is the ``media`` run option (auto, true or false).

    ``true`` with an environment that has no ``media`` setting is an error naming it.
    """
    defined = [name for name in (source_env, target_env) if (environments.get(name) or {}).get("media") is not None]
    if setting == "false":
        return False
    if setting == "true" and len(defined) < 2:
        missing = [name for name in (source_env, target_env) if name not in defined]
        raise ConfigError("media=true, but wfu_environments.%s has no media setting; add one (s3 or path, see "
                          "docs/configuration.md) or run with media=false" % missing[0])
    return len(defined) == 2


def check_database(settings, where):
    if not isinstance(settings, dict) or not settings:
        raise ConfigError("%s must be a mapping with host (or unix_socket or config_file), user, password and "
                          "database" % where)
    unknown = sorted(set(settings) - set(DB_OPTION_KEYS) - {"name"})
    if unknown:
        raise ConfigError("%s has unknown key(s) %s; the keys are: %s"
                          % (where, ", ".join(unknown), ", ".join(DB_OPTION_KEYS)))
    if not any(settings.get(key) for key in ("host", "unix_socket", "config_file")):
        raise ConfigError("%s needs host, unix_socket or config_file" % where)
    if settings.get("port") is not None:
        Count(minimum=1, choices=65535).normalize(where + ".port", settings["port"])


def check_run(environments, migration_db, source_env=None, target_env=None, given=None):
    """Validate a run's settings and options before it locks or writes anything.

    Returns the normalized options this run gives.  ``source_env``/``target_env`` may be None on resume
    until the migration names them; the pair is checked once both are known.
    """
    check_environments(environments)
    check_database(migration_db, "wfu_migration_db")
    if not (migration_db or {}).get("database"):
        raise ConfigError("wfu_migration_db.database is required: the migration database the run works in")
    for name, settings in environments.items():
        if same_database(settings["db"], migration_db):
            raise ConfigError("wfu_migration_db is the database of environment %s (%s); the migration database "
                              "must be a scratch database of its own, since every run empties it"
                              % (name, describe_database(migration_db)))
    for role, name in (("source_env", source_env), ("target_env", target_env)):
        if name is not None and name not in environments:
            raise ConfigError("%s %r is not an environment of wfu_environments (defined: %s)"
                              % (role, name, ", ".join(sorted(environments))))
    if source_env is not None and target_env is not None:
        if source_env == target_env:
            raise ConfigError("source_env and target_env are both %s; give two different environments" % source_env)
        if same_database(environments[source_env]["db"], environments[target_env]["db"]):
            where = describe_database(environments[source_env]["db"])
            raise ConfigError("environments %s and %s use the same database (%s); a migration between them would "
                              "overwrite its own source" % (source_env, target_env, where))
    options = normalize_options(given)
    if source_env is not None and target_env is not None and "media" in options:
        media_wanted(environments, source_env, target_env, options["media"])
    return options


def describe_database(settings):
    where = settings.get("unix_socket") or "%s:%s" % (settings.get("host") or "localhost", settings.get("port") or 3306)
    return "%s, database %s" % (where, settings.get("database") or "(from its option file)")
