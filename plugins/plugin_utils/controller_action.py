# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection's action plugins that do a module's work on the controller share.

wfu_migration_state runs its module's code in-process, wfu_site_migrate in a forked child; both only when that is
the same as running the module (this machine, this user), and ship the module otherwise.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ControllerAction(ActionBase):
    """An action plugin that does its module's work on the controller when it may, and ships the module else."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def _runs_on_controller(self):
        """True when the module would run on this machine as this user, so doing its work here is the same."""
        return self._connection.transport == "local" and not self._play_context.become

    def _ship_module(self, result, task_vars):
        """Run the module where the task runs, with the interpreter it is given; return ``result`` updated."""
        result.update(self._execute_module(task_vars=task_vars))
        self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
