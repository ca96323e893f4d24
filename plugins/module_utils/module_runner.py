# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What wfu_site_migrate and wfu_network_migrate share around the pipeline: build it, run it, report."""

from __future__ import annotations

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.wfu.multisite.plugins.module_utils.db import HAS_PYMYSQL, PYMYSQL_IMPORT_ERROR, ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MigrationError, failure_result
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint
from ansible_collections.wfu.multisite.plugins.module_utils.processes import find_playbook_pid

PIPELINE_OPTION_KEYS = ("backup", "backup_dir", "backup_name", "backup_s3", "keep_backup_tables", "skip_columns",
                        "work_dir", "lock_wait", "exclude_transients")


def run_pipeline(module, pipeline_class, **extra):
    """Build the pipeline from the module's parameters, run it and exit the module with its result.

    The pipeline stops (and undoes its work) when the ansible-playbook that started the module dies.
    """
    if not HAS_PYMYSQL:
        module.fail_json(msg=missing_required_lib("PyMySQL"), exception=str(PYMYSQL_IMPORT_ERROR))
    params = module.params
    options = {key: params[key] for key in PIPELINE_OPTION_KEYS if key in params}
    options.update({key: params[key] for key in extra.pop("option_keys", ()) if key in params})
    try:
        pipeline = pipeline_class(source=Endpoint(params["source"]), target=Endpoint(params["target"]),
                                  migration_db=params["migration_db"], options=options,
                                  check_mode=module.check_mode, **extra)
        result = pipeline.run(timeout=params["timeout"], watch_pid=find_playbook_pid())
    except ConfigError as exc:
        module.fail_json(msg=str(exc), failure_class="config", **_ids(extra))
    except MigrationError as exc:
        report = failure_result(exc)
        report.update(cleanup=getattr(exc, "cleanup", []), durations=getattr(exc, "durations", {}),
                      timed_out=getattr(exc, "timed_out", False))
        module.fail_json(**report)
    module.exit_json(**result)


def _ids(extra):
    return {"site_id": extra["site_id"]} if "site_id" in extra else {}
