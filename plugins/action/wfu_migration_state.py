# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for wfu_migration_state: the state store runs inside the controller's process.

A migration of 555 sites updates its state a thousand times or more; a module process costs about a
quarter of a second each time, a call in-process a few milliseconds.  The work is the module's
(the same ``module_utils.state_actions`` code), so when the task does not run on the controller as the same
user - another host, or become - the module is run there instead.

Under AWX every task of a job is the job's: ``awx_job_id`` and ``awx_workflow_job_id`` default to the job
variables AWX sets (``awx_job_id``/``tower_job_id``, ``awx_workflow_job_id``/``tower_workflow_job_id``), so
that a lock or claim taken by one task of the job is this run's to every other task, without each task
passing them.
"""

from __future__ import annotations

from ansible.utils.display import Display

from ansible_collections.wfu.multisite.plugins.module_utils.state_actions import (
    REQUIRED_IF, USER_ERRORS, argument_spec, run_action, task_failure)
from ansible_collections.wfu.multisite.plugins.plugin_utils.controller_action import ControllerAction

display = Display()

# The options that default to the variables AWX sets on every job, in the order they are looked up.
JOB_VARIABLES = {"awx_job_id": ("awx_job_id", "tower_job_id"),
                 "awx_workflow_job_id": ("awx_workflow_job_id", "tower_workflow_job_id")}


class ActionModule(ControllerAction):

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # unused, as in every action plugin since 2.x

        for option, names in JOB_VARIABLES.items():
            if self._task.args.get(option) in (None, ""):
                found = next((task_vars[name] for name in names if task_vars and task_vars.get(name) not in (None, "")),
                             None)
                if found is not None:
                    self._task.args[option] = str(found)

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
