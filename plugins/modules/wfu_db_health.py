#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_db_health
short_description: Test whether each database of a migration answers, within a time limit
version_added: 0.2.0
description:
  - Connects to each database in O(databases) and runs C(SELECT 1), each probe bounded by O(timeout) seconds for
    the connection and the reply, so a hung server (one that accepts nothing or answers nothing) is reported
    instead of blocking the run.
  - The result names each database as a user knows it (C(the target database of uat (127.0.0.1:3307/wp_uat))),
    and says for each failure its class (V(systemic) for connection, authentication and unanswered servers).
  - The task never fails because a database is down; that is its answer. The run policy of the M(wfu.multisite.env_migrate)
    role reads it.
author:
  - WFU Web Platform Team (@wfu)
options:
  databases:
    description: The databases to test.
    type: list
    elements: dict
    required: true
    suboptions:
      role:
        description: What the database is to the migration.
        type: str
        required: true
        choices: [source, target, migration]
      env:
        description: The environment's name (for V(source) and V(target)).
        type: str
      host:
        description: Server host name or address.
        type: str
      port:
        description: Server port.
        type: int
      user:
        description: User name.
        type: str
      password:
        description: Password.
        type: str
      database:
        description: Database name.
        type: str
      config_file:
        description: A C([client]) option file whose values fill what is not given.
        type: path
      unix_socket:
        description: Socket path instead of host and port.
        type: path
      ssl:
        description: TLS settings (C(ca), C(cert), C(key), C(verify_server_cert)).
        type: dict
  timeout:
    description: Seconds each probe may take to connect, and again to be answered.
    type: int
    default: 10
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
"""

EXAMPLES = r"""
- name: Test the target and the migration database
  wfu.multisite.wfu_db_health:
    databases:
      - "{{ wfu_environments.uat.db | combine({'role': 'target', 'env': 'uat'}) }}"
      - "{{ wfu_migration_db | combine({'role': 'migration'}) }}"
    timeout: 5
  register: health
"""

RETURN = r"""
health:
  description: Per database label, whether it answered and, if not, why.
  returned: always
  type: dict
  sample:
    "the target database of uat (127.0.0.1:3307/wp_uat)":
      ok: false
      msg: "(1045, \"Access denied for user 'wp'@'localhost'\")"
      failure_class: systemic
      reason: auth
healthy:
  description: Whether every database answered.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.wfu.multisite.plugins.module_utils.db import HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR
from ansible_collections.wfu.multisite.plugins.module_utils.health import check_databases


def main():
    module = AnsibleModule(
        argument_spec=dict(
            databases=dict(type="list", elements="dict", required=True, options=dict(
                role=dict(type="str", required=True, choices=["source", "target", "migration"]),
                env=dict(type="str"),
                host=dict(type="str"),
                port=dict(type="int"),
                user=dict(type="str"),
                password=dict(type="str", no_log=True),
                database=dict(type="str"),
                config_file=dict(type="path"),
                unix_socket=dict(type="path"),
                ssl=dict(type="dict"),
            )),
            timeout=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))
    databases = [{key: value for key, value in entry.items() if value is not None} for entry in module.params["databases"]]
    health = check_databases(databases, timeout=max(1, module.params["timeout"]))
    module.exit_json(changed=False, health=health, healthy=all(result["ok"] for result in health.values()))


if __name__ == "__main__":
    main()
