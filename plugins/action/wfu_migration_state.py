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

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.wfu.multisite.plugins.module_utils.state_actions import (
    REQUIRED_IF, USER_ERRORS, argument_spec, run_action, task_failure)

display = Display()


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # unused, as in every action plugin since 2.x

        # Bad arguments fail the same way on either path.
        params = self.validate_argument_spec(argument_spec=argument_spec(), required_if=REQUIRED_IF)[1]

        if not self._runs_on_controller():
            result.update(self._execute_module(task_vars=task_vars))
            self._remove_tmp_path(self._connection._shell.tmpdir)
            return result

        try:
            result.update(run_action(params, check_mode=self._task.check_mode))
        except USER_ERRORS as exc:
            result.update(task_failure(exc, params), failed=True)
        for warning in result.pop("warnings", []):
            display.warning(warning)
        return result

    def _runs_on_controller(self):
        """True when the module would run on this machine as this user, so running in-process is the same."""
        return self._connection.transport == "local" and not self._play_context.become
