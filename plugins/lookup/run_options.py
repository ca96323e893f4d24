# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: run_options
short_description: The env_migrate run options a play was given, by their short names
version_added: 0.2.0
description:
  - Returns one mapping with every run option of the M(wfu.multisite.env_migrate) role that is defined as a
    variable (usually an extra var such as C(-e site_timeout=900)), keyed by its short name.
  - The option names, types, defaults and limits live in one place, C(plugins/module_utils/run_options.py); the
    values are returned as given and checked by C(wfu.multisite.wfu_migration_state action=validate), so a bad
    value fails the run before it locks or writes anything.
  - Takes no terms.
author:
  - WFU Web Platform Team (@wfu)
"""

EXAMPLES = r"""
- name: Run the role with this play's options
  ansible.builtin.include_role:
    name: wfu.multisite.env_migrate
  vars:
    env_migrate_options: "{{ lookup('wfu.multisite.run_options') }}"
"""

RETURN = r"""
_raw:
  description: One mapping of option name to the value given.
  type: list
  elements: dict
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.wfu.multisite.plugins.module_utils.run_options import RUN_OPTIONS


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        given = {}
        for name in RUN_OPTIONS:
            if name in variables:
                value = self._templar.template(variables[name])
                if value is not None:
                    given[name] = value
        return [given]
