# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What wfu_site_migrate and wfu_network_migrate share around the pipeline: build it, run it, report.

``pipeline_outcome`` is the whole call as data (``(failed, result)``); the modules exit with it, and the
action plugin of wfu_site_migrate (``plugins/action/wfu_site_migrate.py``) returns it from the child process it
runs the pipeline in.
"""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.wfu.multisite.plugins.module_utils.db import HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR, ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError, failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint
from ansible_collections.wfu.multisite.plugins.module_utils.processes import find_playbook_pid

PIPELINE_OPTION_KEYS = ("backup", "backup_dir", "backup_name", "backup_s3", "keep_backup_tables", "skip_columns",
                        "work_dir", "lock_wait", "exclude_transients")


def pipeline_outcome(params, check_mode, pipeline_class, option_keys=(), **extra):
    """Build the pipeline from the validated ``params``, run it and return ``(failed, result)``.

    The pipeline stops (and undoes its work) when the ansible-playbook that started the call dies.
    """
    if not HAS_PYMYSQL:
        return True, {"msg": missing_required_lib("PyMySQL"), "exception": str(PYMYSQL_IMPORT_ERROR)}
    options = {key: params[key] for key in PIPELINE_OPTION_KEYS if key in params}
    options.update({key: params[key] for key in option_keys if key in params})
    try:
        pipeline = pipeline_class(source=Endpoint(params["source"]), target=Endpoint(params["target"]),
                                  migration_db=params["migration_db"], options=options,
                                  check_mode=check_mode, **extra)
        return False, pipeline.run(timeout=params["timeout"], watch_pid=find_playbook_pid())
    except ConfigError as exc:
        return True, dict(msg=str(exc), failure_class="config", **_ids(extra))
    except MigrationError as exc:
        report = failure_result(exc)
        report.update(cleanup=getattr(exc, "cleanup", []), durations=getattr(exc, "durations", {}),
                      timed_out=getattr(exc, "timed_out", False))
        return True, report


def run_pipeline(module, pipeline_class, **extra):
    """Run the pipeline with the module's parameters and exit the module with its result."""
    failed, result = pipeline_outcome(module.params, module.check_mode, pipeline_class, **extra)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


def _ids(extra):
    return {"site_id": extra["site_id"]} if "site_id" in extra else {}
