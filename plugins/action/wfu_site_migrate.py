# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for wfu_site_migrate: on the controller, the pipeline runs in a forked child of the task's worker.

Shipping the module costs a site about half a second before its first query (the AnsiballZ package, a fresh
Python, the imports of ansible's module code, PyMySQL and the pipeline).  When the task runs on the controller
as the same user (local connection, no become) this plugin forks instead: the child runs the same pipeline code
(``module_runner.pipeline_outcome``) and writes its result as JSON to a pipe, the worker waits for it.

The child can die (the out-of-memory killer, a SIGKILL) without taking the worker with it: the worker, its
surviving parent, then reports the site as failed the way Ansible reports a killed module process (``rc`` the
negative signal number, no result of the module's own), so the role's rescue classifies and cleans as before.
When the task's ``timeout:`` fires in the worker, the worker kills the child before the timeout is reported; when
the worker dies, the kernel kills the child (``PR_SET_PDEATHSIG``).  The child's own time limit is the module's
``timeout`` option, as in the module.

Elsewhere (another host, or become), and when the controller's Python has no PyMySQL, the module itself is run
with the host's interpreter, as before.  Arguments are validated with the
module's spec on both paths, and the values of its no_log options are masked in what the child returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import json
import os
import signal
import traceback

from ansible.module_utils.common.parameters import remove_values

# Imported with this plugin, which the strategy loads in ansible-playbook's own process before any worker forks:
# every task's worker and every site's child then has the pipeline's code already (a fresh import costs each site
# 7 ms from .pyc files, 40 ms where none are written).
from ansible_collections.wfu.multisite.plugins.module_utils.module_runner import pipeline_outcome
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import SiteMigration
from ansible_collections.wfu.multisite.plugins.module_utils.spec import SITE_OPTION_KEYS, site_migrate_options
from ansible_collections.wfu.multisite.plugins.plugin_utils.controller_action import ControllerAction

# The name the child gives itself (/proc/<pid>/comm, at most 15 bytes): what ps and the tests see.
CHILD_NAME = b"wfu_site_migrat"
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1
# Exit status of a child that failed outside the pipeline's own error handling (its result says why).
_CHILD_ERROR = 3


class ActionModule(ControllerAction):

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp  # unused, as in every action plugin since 2.x

        # Bad arguments fail the same way on either path (the module validates with the same spec).
        validation, params = self.validate_argument_spec(argument_spec=site_migrate_options())

        if not self._runs_on_controller() or importlib.util.find_spec("pymysql") is None:
            # Elsewhere, or without PyMySQL in the controller's Python: the module, with the interpreter it is given.
            return self._ship_module(result, task_vars)

        failed, outcome = run_in_child(functools.partial(_site_pipeline, params, self._task.check_mode),
                                       params["site_id"])
        # As AnsibleModule.exit_json does: no value of a no_log option leaves the call, even inside a message.
        outcome = remove_values(outcome, validation._no_log_values)
        result.update(outcome)
        result["changed"] = bool(outcome.get("changed", False))
        if failed:
            result["failed"] = True
        return result


def _site_pipeline(params, check_mode):
    """The module's work: run the site's pipeline, return ``(failed, result)``."""
    return pipeline_outcome(params, check_mode, SiteMigration, site_id=params["site_id"], option_keys=SITE_OPTION_KEYS)


def run_in_child(work, site_id):
    """Call ``work()`` (it returns ``(failed, result)``) in a forked child and return what it returned.

    A child killed by a signal, or ending without a result, gives a failure as Ansible reports a module process
    that died.  Whatever interrupts the wait (the task's timeout, an interrupt of the run) kills the child first.
    """
    read_end, write_end = os.pipe()
    worker = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        os.close(read_end)
        _child(work, site_id, write_end, worker)
    os.close(write_end)
    try:
        chunks = []
        with open(read_end, "rb") as pipe:
            while True:
                chunk = pipe.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        status = os.waitpid(pid, 0)[1]
    except BaseException:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)
        raise
    return _outcome(site_id, b"".join(chunks), status)


def _died(site_id, message, rc):
    return {"msg": "MODULE FAILURE: the pipeline process of site %s %s" % (site_id, message), "rc": rc,
            "module_stdout": "", "module_stderr": "", "site_id": site_id, "timed_out": False, "cleanup": [],
            "durations": {}}


def _outcome(site_id, output, status):
    """``(failed, result)`` from what the child wrote and how it ended."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        # As Ansible reports a module process killed by a signal: no result of its own, rc the negative signal.
        return True, _died(site_id, "was killed by signal %d (%s)" % (number, signal.Signals(number).name), -number)
    try:
        failed, result = json.loads(output.decode("utf-8"))
    except (ValueError, TypeError, UnicodeDecodeError):
        code = os.WEXITSTATUS(status)
        return True, _died(site_id, "ended with status %d without a result" % code, code)
    return bool(failed), result


def _child(work, site_id, write_end, worker):
    status = _CHILD_ERROR
    try:
        _become_child(worker)
        payload = json.dumps(work(), default=str)
        status = 0
    except BaseException as exc:  # the child reports everything and always ends here
        payload = json.dumps([True, {"msg": "the pipeline process of site %s failed: %s" % (site_id, exc),
                                     "exception": traceback.format_exc(), "site_id": site_id, "timed_out": False,
                                     "cleanup": [], "durations": {}}])
    try:
        with open(write_end, "wb") as pipe:
            pipe.write(payload.encode("utf-8"))
    finally:
        os._exit(status)  # pylint: disable=protected-access


def _become_child(worker):
    """Detach the child from the worker's signal handling; have the kernel kill it when the worker dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != worker:  # the worker died between the fork and the prctl
        os._exit(_CHILD_ERROR)  # pylint: disable=protected-access
    libc.prctl(_PR_SET_NAME, ctypes.c_char_p(CHILD_NAME), 0, 0, 0)
    # The worker's handlers (the task timeout's SIGALRM, Ansible's SIGINT/SIGTERM) belong to the worker; the
    # pipeline arms its own SIGALRM for its time limit.
    for number in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
