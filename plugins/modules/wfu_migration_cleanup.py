#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_migration_cleanup
short_description: Drop leftover migration tables of one site, of the network, or of everything
version_added: 0.1.0
description:
  - Drops the work tables a migration left in the migration database (C(m<N>__*) for site N, C(mnet__*) for the
    network tables) and, when O(target) is given, the staging (C(wfu_stage__*)) and replaced (C(wfu_old__*)) tables
    left in the target database. A replaced table whose live table is missing is renamed back instead.
  - Only tables carrying these markers are touched. Running it twice changes nothing the second time.
  - Refuses to run when the migration database is also the database of an environment listed in O(protected_databases).
author:
  - WFU Web Platform Team (@wfu)
options:
  site_id:
    description:
      - A site id to clean only that site's tables, or C(network) for the network tables' leftovers.
      - Omit it to sweep every leftover.
    type: str
  target_prefix:
    description: The target's table prefix (decides which site a staging table belongs to).
    type: str
    default: wp_
  protected_names:
    description: Names of the O(protected_databases), in the same order, for error messages (when they have no C(name)).
    type: list
    elements: str
    default: []
  keep_backup_tables:
    description: Keep C(wfu_old__*) tables (previous versions of swapped tables) in the target.
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
    support: full
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - wfu.multisite.connection
  - wfu.multisite.connection.migration_db
  - wfu.multisite.connection.cleanup
"""

EXAMPLES = r"""
- name: Drop what a failed attempt at site 43 left behind
  wfu.multisite.wfu_migration_cleanup:
    migration_db: "{{ wfu_migration_db }}"
    target: "{{ wfu_environments.uat.db }}"
    site_id: "43"
    protected_databases: "{{ wfu_environments.values() | map(attribute='db') | list }}"
    protected_names: "{{ wfu_environments.keys() | list }}"

- name: See what a full sweep would drop
  wfu.multisite.wfu_migration_cleanup:
    migration_db: "{{ wfu_migration_db }}"
    protected_databases: "{{ wfu_environments.values() | map(attribute='db') | list }}"
    protected_names: "{{ wfu_environments.keys() | list }}"
  check_mode: true
  register: sweep
"""

RETURN = r"""
migration_db:
  description: Tables dropped (or, in check mode, that would be dropped) from the migration database.
  returned: always
  type: list
  elements: str
  sample: ["m43__wp_43_options", "m43__wp_43_posts"]
target:
  description: Staging and replaced tables dropped from the target database.
  returned: always
  type: list
  elements: str
  sample: ["wfu_stage__wp_43_posts"]
restored:
  description:
    - Replaced tables (C(wfu_old__X)) renamed back to C(X) because the live table C(X) was missing, so that the
      only copy of a site's previous tables is never dropped.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.wfu.multisite.plugins.module_utils.cleanup import sweep
from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR, ConfigError, db_option)
from ansible_collections.wfu.multisite.plugins.module_utils.errors import failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.spec import protected_databases_option


def main():
    module = AnsibleModule(
        argument_spec=dict(
            migration_db=db_option(required=True),
            site_id=dict(type="str"),
            target=db_option(),
            target_prefix=dict(type="str", default="wp_"),
            protected_databases=protected_databases_option(),
            protected_names=dict(type="list", elements="str", default=[]),
            keep_backup_tables=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))
    params = module.params
    names = params["protected_names"]
    protected = {db.get("name") or (names[index] if index < len(names) else "#%d" % (index + 1)): db
                 for index, db in enumerate(params["protected_databases"])}
    site_id = params["site_id"]
    try:
        result = sweep(params["migration_db"], protected=protected,
                       site_id=None if site_id in (None, "", "all") else site_id,
                       target=params["target"], target_prefix=params["target_prefix"],
                       keep_backup_tables=params["keep_backup_tables"], check_mode=module.check_mode)
    except ConfigError as exc:
        module.fail_json(msg=str(exc), failure_class="config", migration_db=[], target=[], restored=[])
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(migration_db=[], target=[], restored=[], **failure_result(exc, phase="cleanup", site_id=site_id))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
