#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_site_migrate
short_description: Migrate one site of a WordPress multisite network to another environment
version_added: 0.1.0
description:
  - Runs the whole per-site pipeline in one call. It drops the site's leftovers in the migration database,
    copies the site's tables there, rewrites them with the search-replace rules derived for the environment pair
    (byte-exact on PHP-serialized data), loads the result into the target under staging names, verifies row counts
    and the site's C(siteurl)/C(home), and swaps the staged tables in with one C(RENAME TABLE) statement that also
    moves the current tables aside.
  - The previous tables are dropped only after the new ones are verified in place; if that check fails the swap is
    undone. When the call fails at any point it drops what it created and the target is left as it was.
  - A site that does not exist in the target yet is created, including its C(wp_blogs) row when the target network
    has none for it.
  - Tables of the site that only the target has (a plugin's table the source does not have) are reported in
    RV(target_only_tables); O(target_only_tables) decides whether they stay or move aside with the swap.
  - While it works on the site, the call holds the site's server-side lock on the target's server and on the
    migration database's server, so that no other run, on any host, writes the same site at the same time.
  - The content policy leaves rows out at copy time (O(exclude_transients), O(exclude_spam_comments),
    O(exclude_revisions), O(exclude_post_types)); the rows left out never reach the migration database, the copy is
    verified against the source's rows net of them, and RV(excluded) counts them per table.
  - When the site already exists in the target, the options that the target environment lists in
    C(preserve_options) keep the target's values (set on the staged options table after the search-replace, before
    the swap); see RV(preserved). A site new to the target keeps the source's values.
  - In check mode nothing is changed and the plan (tables, sizes, target address, rules, rows that would be left
    out, options that would be preserved) is returned.
  - When the task runs on the controller as the same user (local connection, no become), the module's action plugin
    runs the pipeline in a child process of the task's worker instead of shipping the module; the result is the
    same. A child killed by a signal fails the task with RV(rc) the negative signal number, as a killed module
    process does; the task's C(timeout) kills a child that cannot stop.
author:
  - WFU Web Platform Team (@wfu)
options:
  site_id:
    description: The blog id of the site to migrate.
    type: int
    required: true
  target_only_tables:
    description:
      - What to do with the site's tables that exist in the target but not in the source.
      - V(keep) leaves them in place beside the migrated tables.
      - V(move_aside) renames them to C(wfu_old__<table>) in the same C(RENAME TABLE) statement as the swap, so the
        site afterwards has exactly the source's tables; they go with the replaced tables (into the backup dump
        with O(backup_dir), kept with O(keep_backup_tables), dropped otherwise once the new tables are verified).
    type: str
    choices: [keep, move_aside]
    default: keep
  verify_urls:
    description:
      - Check that C(siteurl) and C(home) of the staged site are the site's address in the target before the swap.
    type: bool
    default: true
  exclude_spam_comments:
    description:
      - Leave out the comments whose C(comment_approved) is C(spam) or C(trash), and their C(commentmeta) rows.
    type: bool
    default: false
  exclude_revisions:
    description:
      - Leave out the posts of type C(revision) (revisions and autosaves), with their C(postmeta) and
        C(term_relationships) rows.
    type: bool
    default: false
  exclude_post_types:
    description:
      - Leave out the posts of these types, with their C(postmeta) and C(term_relationships) rows.
      - Names as WordPress keys post types (lower-case letters, digits, C(_) and C(-), at most 20 characters).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    support: none
    details: Every run copies the site again; the result is the same, but the call reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - wfu.multisite.connection
  - wfu.multisite.connection.environments
  - wfu.multisite.connection.migration_db
  - wfu.multisite.connection.pipeline
"""

EXAMPLES = r"""
- name: Migrate site 43 from prod to uat
  wfu.multisite.wfu_site_migrate:
    site_id: 43
    source: "{{ wfu_environments.prod | combine({'name': 'prod'}) }}"
    target: "{{ wfu_environments.uat | combine({'name': 'uat'}) }}"
    migration_db: "{{ wfu_migration_db }}"
    timeout: 1800
  timeout: 1860
  register: site43
"""

RETURN = r"""
site_id:
  description: The site migrated.
  returned: always
  type: int
url:
  description: The site's address in the target, as checked in C(siteurl) and C(home).
  returned: success
  type: str
  sample: https://news.uat.wfu.edu
tables:
  description: The site's tables in the target.
  returned: success
  type: list
  elements: str
new_to_target:
  description: Whether the site had no tables in the target before.
  returned: success
  type: bool
blog_row_created:
  description: Whether a C(wp_blogs) row was added to the target for a site new to it.
  returned: success
  type: bool
rows:
  description: Rows copied.
  returned: success
  type: int
excluded:
  description:
    - Rows the content policy left out, by target table (only the tables a policy applies to).
  returned: success
  type: dict
  sample: {"wp_43_comments": 12, "wp_43_commentmeta": 20, "wp_43_options": 31}
preserved:
  description: The options whose target values were kept (C(preserve_options) of the target that the target has).
  returned: success
  type: list
  elements: str
  sample: ["admin_email", "blog_public"]
bytes:
  description: Bytes copied (as the copy measured them).
  returned: success
  type: int
copy_method:
  description: How the tables travelled (C(insert_select), C(dump) or C(pymysql)).
  returned: success
  type: str
rows_changed:
  description: Rows the search-replace changed.
  returned: success
  type: int
target_only_tables:
  description: The site's tables that the target had and the source has not.
  returned: success
  type: list
  elements: str
  sample: ["wp_6_links"]
target_only_rule:
  description: What was done with RV(target_only_tables) (O(target_only_tables)).
  returned: success
  type: str
  sample: keep
locks:
  description: Names of the server-side locks held while the site was migrated (target's server, then migration's).
  returned: success
  type: list
  elements: str
  sample: ["wfu:2f1c0e9a77b3:site:43", "wfu:9d0a14c5e2f1:site:43"]
replacements:
  description: Changed rows per table and column.
  returned: success
  type: dict
backup:
  description: Where the previous tables went (C(file) when dumped, C(tables) when kept in the target).
  returned: success
  type: dict
durations:
  description:
    - Seconds spent in each phase (prepare, clean, copy, replace, stage, preserve, verify, backup, swap, cleanup).
  returned: always
  type: dict
plan:
  description: In check mode, what would be done.
  returned: check mode
  type: dict
failure_class:
  description: On failure, C(systemic) (the databases or the machine are in trouble) or C(site) (this site only).
  returned: failure
  type: str
reason:
  description:
    - On failure, why, more precisely, for example C(connection), C(server_not_answering), C(access), C(site_in_use),
      C(disk_full), C(timeout), C(verification) or C(site_data).
  returned: failure
  type: str
database:
  description: On failure, the database it happened on (role, env, host, port, socket, database, user), when known.
  returned: failure
  type: dict
phase:
  description: On failure, the phase that failed.
  returned: failure
  type: str
timed_out:
  description: On failure, whether the call ran out of O(timeout).
  returned: failure
  type: bool
cleanup:
  description: On failure, what was undone or dropped.
  returned: failure
  type: list
  elements: str
rc:
  description: When the process running the pipeline was killed by a signal, the negative signal number.
  returned: when killed
  type: int
  sample: -9
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.wfu.multisite.plugins.module_utils.module_runner import run_pipeline
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import SiteMigration
from ansible_collections.wfu.multisite.plugins.module_utils.spec import SITE_OPTION_KEYS, site_migrate_options


def main():
    # On the controller (local connection, no become) the action plugin of the same name runs the pipeline in a
    # child process instead of this module; elsewhere this module runs, with the same spec.
    module = AnsibleModule(argument_spec=site_migrate_options(), supports_check_mode=True)
    run_pipeline(module, SiteMigration, site_id=module.params["site_id"], option_keys=SITE_OPTION_KEYS)


if __name__ == "__main__":
    main()
