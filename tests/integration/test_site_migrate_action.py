"""wfu_site_migrate's action plugin in real ansible-playbook runs: where the pipeline runs, and what stops it.

On the controller (local connection, no become) the pipeline runs in a forked child of the task's worker, not in a
shipped module; with become the module is shipped as before.  A child that cannot stop by itself is killed when the
task's ``timeout:`` fires.  (A child killed with SIGKILL in the middle of a copy, and one that reaches the module's
own ``timeout``, are in test_incident.py, through the role's rescue.)
"""

import json
import os
import subprocess

import pytest
from helpers import ANSIBLE_PLAYBOOK, MigrationSetup, addresses, connect, playbook_env, query, write_inventory
from role_helpers import module_processes

from tools.wpnetwork import NetworkSpec

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
SITE = 2


@pytest.fixture(scope="module")
def migration(servers, tmp_path_factory):
    """dev (sites 1 and 2) → uat (site 2), with an inventory for ansible-playbook."""
    setup = MigrationSetup(servers, NetworkSpec(url=DEV, site_ids=[SITE], posts_per_site=3),
                           NetworkSpec(url=UAT, site_ids=[SITE], posts_per_site=1, seed=2))
    directory = tmp_path_factory.mktemp("inventory")
    environments = {
        "dev": {"url": DEV, "db": setup.source.server.connection(setup.source.database)},
        "uat": {"url": UAT, "db": setup.target_server.connection(setup.target_database)},
    }
    setup.inventory = write_inventory(directory, environments, setup.migration_db())
    yield setup
    setup.drop()


PLAY = """- name: One site
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Migrate the site
      wfu.multisite.wfu_site_migrate:
        site_id: %(site)d
        source: "{{ wfu_environments.dev | combine({'name': 'dev'}) }}"
        target: "{{ wfu_environments.uat | combine({'name': 'uat'}) }}"
        migration_db: "{{ wfu_migration_db }}"
        backup: false
        timeout: %(module_timeout)d
      timeout: %(task_timeout)d
      become: %(become)s
      become_method: su
      register: site
      ignore_errors: true

    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ site | to_json }}"
        dest: "%(result)s"
        mode: "0600"
"""


def run_site_play(migration, tmp_path, module_timeout=0, task_timeout=300, become=False):
    """Run PLAY with its module files under tmp_path/remote (kept); return (CompletedProcess, result, module tmp)."""
    remote = str(tmp_path / "remote")
    result_path = str(tmp_path / "result.json")
    playbook = tmp_path / "site.yml"
    playbook.write_text(PLAY % {"site": SITE, "module_timeout": module_timeout, "task_timeout": task_timeout,
                                "become": "true" if become else "false", "result": result_path})
    env = playbook_env()
    env.update(ANSIBLE_REMOTE_TMP=remote, ANSIBLE_KEEP_REMOTE_FILES="1")
    done = subprocess.run([ANSIBLE_PLAYBOOK, str(playbook), "-i", migration.inventory], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-6000:]
    with open(result_path, encoding="utf-8") as handle:
        return done, json.load(handle), remote


def shipped_modules(remote):
    """The AnsiballZ files of wfu_site_migrate that the run left under its module directory."""
    found = []
    for directory, _dirs, files in os.walk(remote):
        found += [os.path.join(directory, name) for name in files if name == "AnsiballZ_wfu_site_migrate.py"]
    return found


def site_url_in_target(migration):
    rows = query(migration.target_server, migration.target_database,
                 "SELECT option_value FROM wp_%d_options WHERE option_name = 'siteurl'" % SITE)
    return rows[0][0]


def test_on_the_controller_the_pipeline_runs_without_shipping_the_module(migration, tmp_path):
    query(migration.target_server, migration.target_database,
          "UPDATE wp_%d_options SET option_value = 'https://stale.example' WHERE option_name = 'siteurl'" % SITE)
    done, result, remote = run_site_play(migration, tmp_path)
    assert not result.get("failed"), done.stdout[-4000:]
    assert result["changed"] and result["site_id"] == SITE
    assert result["url"].rstrip("/") == addresses(UAT, migration.source.spec)[SITE][2].rstrip("/")
    assert site_url_in_target(migration) == result["url"]
    assert shipped_modules(remote) == []
    assert migration.migration_tables() == []


def test_with_become_the_module_is_shipped_and_migrates_the_site(migration, tmp_path):
    query(migration.target_server, migration.target_database,
          "UPDATE wp_%d_options SET option_value = 'https://stale.example' WHERE option_name = 'siteurl'" % SITE)
    done, result, remote = run_site_play(migration, tmp_path, become=True)
    assert not result.get("failed"), done.stdout[-4000:]
    assert result["changed"] and result["site_id"] == SITE
    assert site_url_in_target(migration) == result["url"]
    assert len(shipped_modules(remote)) == 1


def test_the_task_timeout_kills_a_child_that_cannot_stop(migration, tmp_path):
    """No module timeout (0) and a source table locked: the copy waits; the task's timeout must end the child."""
    blocker = connect(migration.source.server, migration.source.database)
    try:
        blocker.cursor().execute("LOCK TABLES wp_%d_posts WRITE" % SITE)
        done, result, remote = run_site_play(migration, tmp_path, module_timeout=0, task_timeout=8)
        # Still holding the lock: the child was stopped by the task's timeout, not by the lock going away.
        assert result.get("failed"), done.stdout[-4000:]
        assert "timedout" in result, result
        assert module_processes("wfu_site_migrate", remote) == []
        with blocker.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE %s",
                        ("%metadata lock%",))
            waiting_for_the_lock = cur.fetchone()[0]
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE %s",
                        ("%table level lock%",))
            waiting_for_the_lock += cur.fetchone()[0]
        assert waiting_for_the_lock == 0
    finally:
        blocker.close()
