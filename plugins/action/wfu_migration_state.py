# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for wfu_migration_state: the state store runs inside the controller's process.

A migration of 555 sites updates its state a thousand times or more; a module process costs about a
quarter of a second each time, a call in-process a few milliseconds.  The work is the module's
(the same ``module_utils.state_actions`` code), so when the task does not run on the controller as the same
user - another host, or become - the module is run there instead.
"""

from __future__ import annotations

from ansible.utils.display import Display

from ansible_collections.wfu.multisite.plugins.module_utils.state_actions import (
    REQUIRED_IF, USER_ERRORS, argument_spec, run_action, task_failure)
from ansible_collections.wfu.multisite.plugins.plugin_utils.controller_action import ControllerAction

display = Display()


class ActionModule(ControllerAction):

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # unused, as in every action plugin since 2.x

        # Bad arguments fail the same way on either path.
        params = self.validate_argument_spec(argument_spec=argument_spec(), required_if=REQUIRED_IF)[1]

        if not self._runs_on_controller():
            return self._ship_module(result, task_vars)

        try:
            result.update(run_action(params, check_mode=self._task.check_mode))
        except USER_ERRORS as exc:
            result.update(task_failure(exc, params), failed=True)
        for warning in result.pop("warnings", []):
            display.warning(warning)
        return result
