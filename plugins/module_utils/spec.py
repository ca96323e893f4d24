# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by the pipeline modules: an environment of ``wfu_environments`` plus its name."""

from __future__ import annotations

from ansible_collections.wfu.multisite.plugins.module_utils.db import db_option, db_suboptions


def environment_option(required=True):
    """One environment (``wfu_environments[name]`` combined with ``name``) as a module option."""
    return dict(type="dict", required=required, options=dict(
        name=dict(type="str", required=True),
        url=dict(type="str", required=True),
        db=db_option(required=True),
        table_prefix=dict(type="str", default="wp_"),
        subsite_domain=dict(type="str"),
        site_domains=dict(type="dict"),
        aliases=dict(type="dict"),
        extra_replacements=dict(type="list", elements="dict", options=dict(
            search=dict(type="str", required=True),
            replace=dict(type="str", required=True),
            targets=dict(type="list", elements="str"),
        )),
        # Read by wfu_media_sync; accepted so that the whole environment can be given.
        media=dict(type="dict"),
        # Of the target: the site options and network options whose target values a migration keeps.
        preserve_options=dict(type="list", elements="str"),
        preserve_sitemeta=dict(type="list", elements="str"),
    ))


def protected_databases_option():
    """Databases a cleanup must never sweep: every environment's, each with the environment's name."""
    suboptions = db_suboptions()
    suboptions["name"] = dict(type="str")
    return dict(type="list", elements="dict", default=[], options=suboptions)


def pipeline_options():
    """Options common to wfu_site_migrate and wfu_network_migrate."""
    return dict(
        source=environment_option(),
        target=environment_option(),
        migration_db=db_option(required=True),
        backup=dict(type="bool", default=True),
        backup_dir=dict(type="path"),
        backup_name=dict(type="str"),
        backup_s3=dict(type="raw"),
        keep_backup_tables=dict(type="bool", default=False),
        skip_columns=dict(type="list", elements="str", default=[]),
        work_dir=dict(type="path"),
        timeout=dict(type="int", default=0),
        lock_wait=dict(type="int", default=60),
        exclude_transients=dict(type="bool", default=False),
    )


# The options of wfu_site_migrate besides pipeline_options(), passed to SiteMigration as its options.
SITE_OPTION_KEYS = ("verify_urls", "target_only_tables", "exclude_spam_comments", "exclude_revisions",
                    "exclude_post_types")


def site_migrate_options():
    """The argument spec of wfu_site_migrate: its module and its action plugin validate with this one spec."""
    argument_spec = pipeline_options()
    argument_spec.update(site_id=dict(type="int", required=True), verify_urls=dict(type="bool", default=True),
                         target_only_tables=dict(type="str", choices=["keep", "move_aside"], default="keep"),
                         exclude_spam_comments=dict(type="bool", default=False),
                         exclude_revisions=dict(type="bool", default=False),
                         exclude_post_types=dict(type="list", elements="str", default=[]))
    return argument_spec
