#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: wfu_sites_info
short_description: List the sites of a WordPress multisite network
version_added: 0.1.0
description:
  - Reads C(<prefix>blogs) of a multisite database and returns every site with its id, domain, path, registration
    dates, flags (public, archived, mature, spam, deleted), the tables it owns and their size in bytes.
  - Site N owns exactly the C(<prefix>N_*) tables; the main site (blog 1) owns the unnumbered tables except the
    network-wide ones (blogs, blogmeta, site, sitemeta, signups, registration_log, users, usermeta).
  - Filters select sites by id, skip archived/spam/deleted sites or the main site, and mark large sites.
author:
  - WFU Web Platform Team (@wfu)
options:
  table_prefix:
    description: The network's table prefix.
    type: str
    default: wp_
  include_sites:
    description: Only these site ids (a list, or a comma-separated string).
    type: list
    elements: str
  exclude_sites:
    description: Leave out these site ids.
    type: list
    elements: str
  active_only:
    description: Leave out archived, spam and deleted sites.
    type: bool
    default: false
  exclude_main_site:
    description: Leave out the main site (blog 1).
    type: bool
    default: false
  large_site_bytes:
    description: Mark sites whose tables hold at least this many bytes as large (0 disables the threshold).
    type: int
    default: 0
  large_sites:
    description: Site ids to mark as large whatever their size.
    type: list
    elements: str
  env:
    description: The name of the environment whose network this is, for messages (C(the database of dev)).
    type: str
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
  - wfu.multisite.connection.db
"""

EXAMPLES = r"""
- name: List the active sites of the dev network, marking sites over 500 MB as large
  wfu.multisite.wfu_sites_info:
    db: "{{ wfu_environments.dev.db }}"
    table_prefix: wp_
    active_only: true
    large_site_bytes: 524288000
  register: dev_sites

- name: Show the ids
  ansible.builtin.debug:
    msg: "{{ dev_sites.summary.ids }}"
"""

RETURN = r"""
sites:
  description: The selected sites, ordered by id.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: The blog id.
      type: int
    domain:
      description: The site's domain in this environment.
      type: str
    path:
      description: The site's path.
      type: str
    bytes:
      description: Data and index bytes of the site's tables (from information_schema).
      type: int
    large:
      description: Whether the site counts as large.
      type: bool
    tables:
      description: The tables the site owns.
      type: list
      elements: str
    archived:
      description: The archived flag (and likewise public, mature, spam, deleted).
      type: int
summary:
  description: Count, total bytes, ids and the ids of the large sites.
  returned: success
  type: dict
  sample: {"count": 3, "bytes": 1048576, "ids": [1, 2, 3], "large": [3]}
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.wfu.multisite.plugins.module_utils.db import (
    HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR, ConfigError, Database, db_option)
from ansible_collections.wfu.multisite.plugins.module_utils.errors import failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.sites import discover_sites, summarize


def main():
    module = AnsibleModule(
        argument_spec=dict(
            db=db_option(required=True),
            table_prefix=dict(type="str", default="wp_"),
            include_sites=dict(type="list", elements="str"),
            exclude_sites=dict(type="list", elements="str"),
            active_only=dict(type="bool", default=False),
            exclude_main_site=dict(type="bool", default=False),
            large_site_bytes=dict(type="int", default=0),
            large_sites=dict(type="list", elements="str"),
            env=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))
    params = module.params
    try:
        database = Database.from_params(params["db"], env=params["env"])
        with contextlib.closing(database.connect()) as conn:
            sites = discover_sites(conn, database.database, params["table_prefix"],
                                   include=params["include_sites"], exclude=params["exclude_sites"],
                                   active_only=params["active_only"], exclude_main=params["exclude_main_site"],
                                   large_site_bytes=params["large_site_bytes"], large_sites=params["large_sites"])
    except ConfigError as exc:
        module.fail_json(msg=str(exc), failure_class="config")
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(**failure_result(exc, phase="discover"))
    module.exit_json(changed=False, sites=sites, summary=summarize(sites))


if __name__ == "__main__":
    main()
