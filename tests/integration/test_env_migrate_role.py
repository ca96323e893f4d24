"""The env_migrate role's options, run as users run it: ``ansible-playbook wfu.multisite.env_migrate``.

Each test gets a small generated network in fresh databases of the session's servers and its own
state directory.  Outcomes are judged from the databases and the state files, not from the output.
"""

import os
import re

import pytest
from helpers import fingerprint, query
from role_helpers import SOURCE_URL, TARGET_URL, MigrationSetup, sites_with_status

from tools.wpnetwork import NetworkSpec, load_network

NETWORK_TABLES = ("wp_blogs", "wp_site", "wp_sitemeta", "wp_blogmeta")


@pytest.fixture
def make_setup(servers, tmp_path):
    made = []

    def make(spec, name="run"):
        setup = MigrationSetup(servers, tmp_path / name, spec)
        made.append(setup)
        return setup

    yield make
    for setup in made:
        setup.drop()


def small_network(**overrides):
    settings = dict(url=SOURCE_URL, subdomain=True, seed=5, posts_per_site=1)
    settings.update(overrides)
    return NetworkSpec(**settings)


def assert_ok(run):
    assert run.returncode == 0, run.stdout[-6000:]


def attempts(setup):
    return {site_id: record["attempts"] for site_id, record in setup.state()["sites"].items()}


def recap_changed(run):
    """The ``changed=`` count of the play recap."""
    return int(re.search(r"localhost\s*:.*changed=(\d+)", run.stdout).group(1))


def test_discovery_options_choose_the_sites(make_setup):
    # Site 5 is archived (generator flags by last digit); 1 is the main site.
    setup = make_setup(small_network(site_ids=[1, 2, 3, 4, 5]))

    run = setup.run(source_env="dev", target_env="uat", exclude_sites="3", active_only=True, exclude_main_site=True,
                    network_tables=False)

    assert_ok(run)
    state = setup.state()
    assert state["status"] == "completed"
    assert sorted(int(site_id) for site_id in state["sites"]) == [2, 4]
    assert setup.sites_in_target() == [2, 4]
    for site_id in (2, 4):
        assert setup.site_problems(site_id) == []
    assert state["network_tables"]["status"] == "skipped"
    assert not set(NETWORK_TABLES) & set(setup.target_tables())


def test_network_tables_only(make_setup):
    setup = make_setup(small_network(site_ids=[1, 2, 3]))

    only = setup.run(source_env="dev", target_env="uat", network_tables="only")

    assert_ok(only)
    state = setup.state()
    assert (state["status"], state["network_tables"]["status"], state["sites"]) == ("completed", "completed", {})
    assert set(NETWORK_TABLES) <= set(setup.target_tables())
    assert setup.sites_in_target() == []
    domains = [row[0] for row in query(setup.target, setup.target_db, "SELECT domain FROM wp_blogs")]
    assert len(domains) == 3 and all(domain.endswith("uat.example.edu") for domain in domains), domains


def test_check_mode_changes_nothing_and_writes_no_state(make_setup, servers):
    setup = make_setup(small_network(site_ids=[1, 2, 3]))
    # The target already holds the network, as a refresh finds it; a stray table waits in the migration database.
    load_network(setup.target.connection(), setup.target_db, small_network(url=TARGET_URL, site_ids=[1, 2, 3], seed=9))
    setup.create_stray_table("migration", "m2__wp_2_posts")
    target_before = fingerprint(setup.target, setup.target_db)

    run = setup.run("--check", source_env="dev", target_env="uat")

    assert_ok(run)
    assert "Check mode: nothing was changed" in run.stdout
    assert fingerprint(setup.target, setup.target_db) == target_before
    assert setup.migration_tables() == ["m2__wp_2_posts"]
    assert not os.path.exists(setup.state_dir) or not os.listdir(setup.state_dir), os.listdir(setup.state_dir)


def test_resume_chooses_sites_by_their_outcome(make_setup):
    setup = make_setup(small_network(site_ids=[1, 2, 3, 4]))
    # Site 3 points at an address the rules do not map, so its URL check fails: an error of that site alone.
    siteurl = query(setup.source, setup.source_db,
                    "SELECT option_value FROM wp_3_options WHERE option_name = 'siteurl'")
    query(setup.source, setup.source_db, "UPDATE wp_3_options SET option_value = 'https://elsewhere.example.org' "
                                         "WHERE option_name = 'siteurl'")

    first = setup.run(source_env="dev", target_env="uat", include_sites="1,2,3", network_tables=False)

    assert first.returncode != 0
    migration_id = setup.migration_ids()[0]
    state = setup.state()
    assert sorted(state["sites"]) == ["1", "2", "3"]
    assert (sites_with_status(state, "completed"), sites_with_status(state, "failed")) == ([1, 2], [3])
    assert "elsewhere.example.org" in state["sites"]["3"]["error"]
    assert setup.sites_in_target() == [1, 2]
    query(setup.source, setup.source_db, "UPDATE wp_3_options SET option_value = %s WHERE option_name = 'siteurl'",
          siteurl[0])
    untouched = fingerprint(setup.target, setup.target_db)
    created = {site_id: setup.create_times(site_id) for site_id in (1, 2)}

    # exclude_failed leaves the failed site alone, even though retry_failed (default true) asks for it.
    excluded = setup.run(resume="latest", exclude_failed=True)

    assert excluded.returncode != 0
    assert "Resume with: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % migration_id in excluded.stdout
    assert attempts(setup) == {"1": 1, "2": 1, "3": 1}
    assert fingerprint(setup.target, setup.target_db) == untouched

    # Overrides are saved with the migration, so exclude_failed must be turned off again here.
    redone = setup.run(resume="latest", exclude_failed=False, retry_failed=False, skip_completed=False)

    assert redone.returncode != 0
    assert attempts(setup) == {"1": 2, "2": 2, "3": 1}
    assert all(setup.create_times(site_id) != created[site_id] for site_id in (1, 2))
    assert setup.sites_in_target() == [1, 2]
    created = {site_id: setup.create_times(site_id) for site_id in (1, 2)}

    retried = setup.run(resume="latest", retry_failed=True, skip_completed=True)

    assert_ok(retried)
    state = setup.state()
    assert state["status"] == "completed"
    assert attempts(setup) == {"1": 2, "2": 2, "3": 2}
    assert {site_id: setup.create_times(site_id) for site_id in (1, 2)} == created
    assert [setup.site_problems(site_id) for site_id in (1, 2, 3)] == [[], [], []]
    assert setup.sites_in_target() == [1, 2, 3]
    finished = fingerprint(setup.target, setup.target_db)
    created = {site_id: setup.create_times(site_id) for site_id in (1, 2, 3)}

    again = setup.run(resume=migration_id)

    assert_ok(again)
    assert recap_changed(again) == 0, again.stdout[-4000:]
    assert "0 of 3 sites to migrate" in again.stdout
    assert fingerprint(setup.target, setup.target_db) == finished
    assert {site_id: setup.create_times(site_id) for site_id in (1, 2, 3)} == created
    assert attempts(setup) == {"1": 2, "2": 2, "3": 2}


def test_large_sites_go_last_or_are_skipped(make_setup):
    # Site 2 is large by size (a few MB of posts), site 3 because the run names it.
    setup = make_setup(small_network(site_ids=[1, 2, 3, 4], large_sites={2: 4_000_000}))
    options = dict(source_env="dev", target_env="uat", network_tables=False, large_site_bytes=2_000_000,
                   large_sites="3")

    deferred = setup.run(**options)

    assert_ok(deferred)
    first_id = setup.migration_ids()[0]
    sites = setup.state(first_id)["sites"]
    assert [site_id for site_id in sites if sites[site_id].get("large")] == ["2", "3"]
    by_finish = sorted(sites, key=lambda site_id: sites[site_id]["finished"])
    assert by_finish == ["1", "4", "2", "3"]
    assert [setup.site_problems(site_id) for site_id in (1, 2, 3, 4)] == [[], [], [], []]

    skipped = setup.run(skip_large_sites=True, include_sites="1,2,3", **options)

    assert_ok(skipped)
    second_id = [mid for mid in setup.migration_ids() if mid != first_id][0]
    state = setup.state(second_id)
    assert state["status"] == "completed"
    assert (sites_with_status(state, "completed"), sites_with_status(state, "skipped")) == ([1], [2, 3])
    assert all(state["sites"][site_id]["attempts"] == 0 for site_id in ("2", "3"))


NEW_RUN = "give source_env and target_env for a new migration"


@pytest.mark.parametrize("extra_vars, message", [
    ({}, NEW_RUN),
    ({"source_env": "dev"}, NEW_RUN),
    ({"source_env": "dev", "target_env": "nowhere"}, "target_env 'nowhere' is not an environment of wfu_environments"
                                                     " (defined: dev, uat)"),
    ({"source_env": "dev", "target_env": "dev"}, "source_env and target_env are both dev"),
    ({"resume": "latest"}, "no migrations"),
    ({"source_env": "dev", "target_env": "uat", "include_sites": ""}, "include_sites is empty"),
    ({"source_env": "dev", "target_env": "uat", "include_sites": "1,77"},
     "include_sites names sites that are not in %s.wp_blogs: 77"),
    ({"source_env": "dev", "target_env": "uat", "site_timeout": -5}, "site_timeout must be at least 1, not -5"),
    ({"source_env": "dev", "target_env": "uat", "max_consecutive_failures": "-1"},
     "max_consecutive_failures must be at least 0"),
    ({"source_env": "dev", "target_env": "uat", "network_tables": "maybe"},
     "network_tables must be one of true, false, only, not 'maybe'"),
    ({"source_env": "dev", "target_env": "uat", "backup_dir": "/nonexistent/backups"},
     "backup_dir /nonexistent/backups is not a directory"),
], ids=["nothing", "no-target", "unknown-env", "same-env", "nothing-to-resume", "empty-include", "unknown-site",
        "negative-timeout", "negative-failures", "network-maybe", "backup-dir"])
def test_invalid_requests_fail_with_a_clear_message(make_setup, extra_vars, message):
    setup = make_setup(small_network(site_ids=[1]))

    run = setup.run(**extra_vars)

    assert run.returncode != 0
    message = message.replace("%s", setup.source_db) if "%s" in message else message
    assert message in run.stdout, run.stdout[-3000:]
    assert "Traceback" not in run.stdout
    assert setup.migration_ids() == [] and setup.target_tables() == []
    # Refused before the locks: no lock file stays behind to block the next run.
    locks = os.path.join(setup.state_dir, "locks")
    assert not os.path.isdir(locks) or os.listdir(locks) == []
