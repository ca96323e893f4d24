#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_network_migrate
short_description: Migrate the network tables of a WordPress multisite network to another environment
version_added: 0.1.0
description:
  - Moves C(wp_blogs), C(wp_site), C(wp_sitemeta), C(wp_blogmeta) (and C(wp_signups), C(wp_registration_log) when
    present; C(wp_users) and C(wp_usermeta) only with O(include_users)) through the same pipeline as a site. The
    domain and path of every C(wp_blogs) and C(wp_site) row are mapped to the target environment row by row; the
    other columns get the search-replace rules of the environment pair.
  - The tables are verified under staging names in the target and swapped in with one C(RENAME TABLE) statement;
    a failure leaves the target's network tables as they were.
  - A site that exists only in the target keeps its C(wp_blogs) and C(wp_blogmeta) rows (they are added to the
    staged tables unchanged), so it keeps working; it is reported in RV(target_only_sites). When its domain and
    path are the address a migrated site arrives at, the call fails before anything is written, naming both sites.
  - While it works, the call holds the network tables' server-side lock on the target's server and on the
    migration database's server.
  - With O(exclude_transients) the site transients of C(wp_sitemeta) (C(_site_transient_*)) are left out at copy
    time; RV(excluded) counts them.
  - The network options that the target environment lists in C(preserve_sitemeta) keep the target's values (set on
    the staged C(wp_sitemeta) before the swap); see RV(preserved).
  - In check mode nothing is changed and the plan (tables, each site's address in the target, rules, rows that
    would be left out, network options that would be preserved) is returned.
author:
  - WFU Web Platform Team (@wfu)
options:
  include_users:
    description: Also migrate C(wp_users) and C(wp_usermeta) (they are left alone by default).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
  idempotent:
    support: none
    details: Every run copies the tables again; the result is the same, but the call reports a change.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - wfu.multisite.connection
  - wfu.multisite.connection.environments
  - wfu.multisite.connection.migration_db
  - wfu.multisite.connection.pipeline
"""

EXAMPLES = r"""
- name: Migrate the network tables from prod to uat
  wfu.multisite.wfu_network_migrate:
    source: "{{ wfu_environments.prod | combine({'name': 'prod'}) }}"
    target: "{{ wfu_environments.uat | combine({'name': 'uat'}) }}"
    migration_db: "{{ wfu_migration_db }}"
"""

RETURN = r"""
tables:
  description: The network tables now in the target.
  returned: success
  type: list
  elements: str
sites:
  description: Number of C(wp_blogs) rows mapped.
  returned: success
  type: int
target_only_sites:
  description: Sites the target has and the source has not; their C(wp_blogs) and C(wp_blogmeta) rows were kept.
  returned: success
  type: list
  elements: dict
  sample: [{"blog_id": 9, "domain": "uat.example.edu", "path": "/lab/"}]
locks:
  description: Names of the server-side locks held while the tables were migrated.
  returned: success
  type: list
  elements: str
rows:
  description: Rows copied.
  returned: success
  type: int
rows_changed:
  description: Rows the search-replace changed.
  returned: success
  type: int
replacements:
  description: Changed rows per table and column.
  returned: success
  type: dict
backup:
  description: Where the previous tables went.
  returned: success
  type: dict
durations:
  description: Seconds per phase.
  returned: always
  type: dict
excluded:
  description: Rows the content policy left out, by target table (C(wp_sitemeta) with O(exclude_transients)).
  returned: success
  type: dict
  sample: {"wp_sitemeta": 2}
preserved:
  description: The network options whose target values were kept (C(preserve_sitemeta) of the target).
  returned: success
  type: list
  elements: str
  sample: ["active_sitewide_plugins"]
plan:
  description: In check mode, what would be done.
  returned: check mode
  type: dict
failure_class:
  description: On failure, C(systemic) or C(site).
  returned: failure
  type: str
reason:
  description: On failure, why, more precisely (as for M(wfu.multisite.wfu_site_migrate)).
  returned: failure
  type: str
database:
  description: On failure, the database it happened on, when known.
  returned: failure
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.wfu.multisite.plugins.module_utils.module_runner import run_pipeline
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import NetworkMigration
from ansible_collections.wfu.multisite.plugins.module_utils.spec import pipeline_options


def main():
    argument_spec = pipeline_options()
    argument_spec.update(include_users=dict(type="bool", default=False))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    run_pipeline(module, NetworkMigration, option_keys=("include_users",))


if __name__ == "__main__":
    main()
