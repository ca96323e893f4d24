"""Run options and settings are checked before anything is locked: each bad value gets a message naming it."""

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.run_options import (
    RUN_OPTIONS, check_run, effective_options, normalize_options)

DB = {"host": "127.0.0.1", "port": 3307, "user": "wp", "password": "pw", "database": "dev_wp"}


def environments(**changes):
    envs = {"dev": {"url": "https://dev.example.edu", "db": dict(DB)},
            "uat": {"url": "https://uat.example.edu", "db": dict(DB, port=3308, database="uat_wp")}}
    for name, settings in changes.items():
        envs[name] = settings
    return envs


MIGRATION_DB = dict(DB, port=3309, database="wp_migration")


def test_strings_from_extra_vars_are_normalized():
    options = normalize_options({"include_sites": "5, 2,5", "site_timeout": "90", "backup": "no",
                                 "network_tables": "ONLY", "max_fail_percentage": 10})
    assert options == {"include_sites": [2, 5], "site_timeout": 90, "backup": False, "network_tables": "only",
                       "max_fail_percentage": 10}


@pytest.mark.parametrize("given, words", [
    ({"include_sites": ""}, "include_sites is empty"),
    ({"include_sites": []}, "include_sites is empty"),
    ({"exclude_sites": "2,x"}, "'x' is not one"),
    ({"include_sites": "0"}, "'0' is not one"),
    ({"site_timeout": -5}, "site_timeout must be at least 1"),
    ({"site_timeout": "soon"}, "site_timeout must be a whole number"),
    ({"max_consecutive_failures": -1}, "max_consecutive_failures must be at least 0"),
    ({"max_fail_percentage": 101}, "at most 100"),
    ({"network_tables": "maybe"}, "network_tables must be one of true, false, only"),
    ({"backup": "perhaps"}, "backup must be true or false"),
    ({"site_timout": 5}, "unknown run option(s) site_timout"),
    ({"backup_dir": "/nonexistent/dir"}, "is not a directory"),
    ({"target_only_tables": "drop"}, "target_only_tables must be one of keep, move_aside"),
])
def test_bad_options_are_refused_by_name(given, words):
    with pytest.raises(ConfigError) as caught:
        normalize_options(given)
    assert words in str(caught.value)


def test_backup_dir_must_be_a_directory(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        normalize_options({"backup_dir": str(a_file)})
    assert normalize_options({"backup_dir": str(tmp_path)}) == {"backup_dir": str(tmp_path)}


def test_none_means_not_given_and_saved_options_come_before_defaults():
    assert normalize_options({"site_timeout": None}) == {}
    options = effective_options(saved={"site_timeout": 60, "backup": False}, given={"backup": True})
    assert options["site_timeout"] == 60 and options["backup"] is True
    assert options["max_consecutive_failures"] == RUN_OPTIONS["max_consecutive_failures"].default


@pytest.mark.parametrize("envs, migration_db, words", [
    (environments(uat={"db": dict(DB, port=3308)}), MIGRATION_DB, "url"),
    (environments(uat={"url": "uat.example.edu", "db": dict(DB, port=3308)}), MIGRATION_DB, "uat"),
    (environments(uat={"url": "https://uat.example.edu", "db": dict(DB, port=3308), "table_prefx": "wp_"}),
     MIGRATION_DB, "unknown setting(s) table_prefx"),
    (environments(uat={"url": "https://uat.example.edu", "db": dict(DB, port=3308), "table_prefix": "wp-"}),
     MIGRATION_DB, "table_prefix"),
    (environments(uat={"url": "https://uat.example.edu", "db": dict(DB, port=3308, pasword="x")}),
     MIGRATION_DB, "unknown key(s) pasword"),
    (environments(uat={"url": "https://uat.example.edu", "db": dict(DB)}), MIGRATION_DB, "use the same database"),
    (environments(), dict(DB), "wfu_migration_db is the database of environment dev"),
    (environments(), dict(MIGRATION_DB, database=None), "wfu_migration_db.database is required"),
])
def test_bad_settings_are_refused_before_the_run(envs, migration_db, words):
    with pytest.raises(ConfigError) as caught:
        check_run(envs, migration_db, "dev", "uat", {})
    assert words in str(caught.value)


def test_source_and_target_must_be_two_known_environments():
    with pytest.raises(ConfigError, match="both dev"):
        check_run(environments(), MIGRATION_DB, "dev", "dev", {})
    with pytest.raises(ConfigError, match="'prod' is not an environment"):
        check_run(environments(), MIGRATION_DB, "prod", "uat", {})


def test_good_settings_return_the_normalized_options():
    assert check_run(environments(), MIGRATION_DB, "dev", "uat", {"site_timeout": "30"}) == {"site_timeout": 30}


def test_every_run_option_is_in_the_docs_with_its_default():
    """docs/running.md's options table lists each option of RUN_OPTIONS, with the default the code uses."""
    import os

    from ansible_collections.wfu.multisite.plugins.module_utils.run_options import RUN_OPTIONS

    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "docs", "running.md")
    rows = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if line.startswith("| `") and len(cells) >= 3:
                for name in cells[0].replace("`", "").split(","):
                    rows[name.strip()] = cells[1]
    for name, option in RUN_OPTIONS.items():
        assert name in rows, "docs/running.md lacks the run option %s" % name
        if isinstance(option.default, (bool, int)) or option.default in ("keep", "true"):
            assert rows[name] == str(option.default).lower(), (name, rows[name], option.default)


def test_media_follows_the_environments_unless_the_run_says_otherwise(tmp_path):
    from ansible_collections.wfu.multisite.plugins.module_utils.run_options import media_wanted

    both = environments(dev=dict(environments()["dev"], media={"path": str(tmp_path / "dev")}),
                        uat=dict(environments()["uat"], media={"s3": {"bucket": "wfu-uat"}}))
    one = environments(dev=dict(environments()["dev"], media={"path": str(tmp_path / "dev")}))
    assert media_wanted(both, "dev", "uat", "auto") is True
    assert media_wanted(one, "dev", "uat", "auto") is False
    assert media_wanted(both, "dev", "uat", "false") is False
    with pytest.raises(ConfigError, match="media=true, but wfu_environments.uat has no media setting"):
        check_run(one, MIGRATION_DB, "dev", "uat", {"media": "yes"})
    assert check_run(both, MIGRATION_DB, "dev", "uat", {"media": "on"}) == {"media": "true"}


@pytest.mark.parametrize("media, words", [
    ({"s3": {"bucket": "b"}, "path": "/srv/uploads"}, "exactly one of s3"),
    ({"path": "uploads"}, "must be an absolute path"),
    ({"s3": {"bucket": "b", "secret_key": "x"}}, "is not accepted: S3 credentials"),
    ({"folder": "/srv"}, "wfu_environments.uat.media.folder"),
])
def test_a_bad_media_setting_is_refused_before_the_run(media, words):
    envs = environments(uat=dict(environments()["uat"], media=media))
    with pytest.raises(ConfigError, match=words):
        check_run(envs, MIGRATION_DB, "dev", "uat", {})


def test_hooks_are_task_files_that_exist(tmp_path):
    hook = tmp_path / "after_site.yml"
    hook.write_text("- ansible.builtin.debug: {msg: hi}\n")
    assert normalize_options({"after_site_tasks": str(hook)}) == {"after_site_tasks": str(hook)}
    with pytest.raises(ConfigError, match="after_run_tasks .*missing.yml is not a file"):
        normalize_options({"after_run_tasks": str(tmp_path / "missing.yml")})
    with pytest.raises(ConfigError, match="after_site_tasks .* is not a file"):
        normalize_options({"after_site_tasks": str(tmp_path)})


def test_backup_s3_is_a_bucket_and_a_prefix():
    assert normalize_options({"backup_s3": "s3://wfu-backups/uat/db/"}) == {
        "backup_s3": {"bucket": "wfu-backups", "prefix": "uat/db"}}
    assert normalize_options({"backup_s3": {"bucket": "b-1", "endpoint_url": "http://127.0.0.1:9000"}}) == {
        "backup_s3": {"bucket": "b-1", "prefix": "", "endpoint_url": "http://127.0.0.1:9000"}}
    with pytest.raises(ConfigError, match="backup_s3 must be s3://bucket/prefix"):
        normalize_options({"backup_s3": "wfu-backups/uat"})
    with pytest.raises(ConfigError, match="is not accepted: S3 credentials"):
        normalize_options({"backup_s3": {"bucket": "b-1", "aws_secret_access_key": "x"}})
