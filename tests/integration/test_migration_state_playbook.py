"""wfu_migration_state in real ansible-playbook runs: the action plugin, the module, and the locks.

The playbooks are written to a temporary directory and run with the repository's ansible-playbook;
each saves what its tasks registered to a JSON file.  The module path is forced with ``become``
(the action plugin then hands the task to the module, as it does for a remote host; ``su`` as root
needs no password), and the module files Ansible keeps (ANSIBLE_KEEP_REMOTE_FILES) show which
tasks really ran a module.
"""

import json
import os
import stat
import subprocess
import textwrap
import time


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANSIBLE_PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")

RUN = """
- name: A migration driven through the action plugin and the module
  hosts: localhost
  gather_facts: false
  module_defaults:
    wfu.multisite.wfu_migration_state:
      state_dir: "{{ wfu_state_dir }}"
  tasks:
    - name: Lock uat
      wfu.multisite.wfu_migration_state:
        action: lock
        target_env: uat
      register: lock_uat

    - name: Create the uat migration
      wfu.multisite.wfu_migration_state:
        action: create
        source_env: dev
        target_env: uat
        sites: "{{ range(1, 51) | list }}"
        options:
          site_timeout: 600
          max_consecutive_failures: 5
          db_password: not-to-be-saved
      register: create_uat

    - name: Note the time before the action plugin loop
      ansible.builtin.set_fact:
        plugin_loop_start: "{{ now().timestamp() }}"

    - name: Mark every site in progress (action plugin)
      wfu.multisite.wfu_migration_state:
        action: site
        migration_id: "{{ create_uat.migration_id }}"
        site_id: "{{ item }}"
        status: in_progress
        phase: copy
      loop: "{{ range(1, 51) | list }}"

    - name: Note the time after the action plugin loop
      ansible.builtin.set_fact:
        plugin_loop_end: "{{ now().timestamp() }}"

    - name: Record each site's outcome (action plugin)
      wfu.multisite.wfu_migration_state:
        action: site
        migration_id: "{{ create_uat.migration_id }}"
        site_id: "{{ item }}"
        status: "{{ 'timeout' if item == 33 else ('failed' if item in [7, 21] else 'completed') }}"
        phase: "{{ 'copy' if item in [7, 21, 33] else omit }}"
        failure_class: "{{ 'site' if item in [7, 21, 33] else omit }}"
        error: "{{ 'Access denied via mysql://wp:hunter2@db.example.edu/wp' if item in [7, 21, 33] else omit }}"
        details:
          rows: "{{ item * 10 }}"
      loop: "{{ range(1, 51) | list }}"
      register: outcomes

    - name: Lock pprd (module)
      wfu.multisite.wfu_migration_state:
        action: lock
        target_env: pprd
      become: true
      become_method: ansible.builtin.su
      register: lock_pprd

    - name: Create the pprd migration
      wfu.multisite.wfu_migration_state:
        action: create
        source_env: dev
        target_env: pprd
        sites: "{{ range(1, 21) | list }}"
        options:
          site_timeout: 600
      register: create_pprd

    - name: Note the time before the module loop
      ansible.builtin.set_fact:
        module_loop_start: "{{ now().timestamp() }}"

    - name: Mark every pprd site in progress (module)
      wfu.multisite.wfu_migration_state:
        action: site
        migration_id: "{{ create_pprd.migration_id }}"
        site_id: "{{ item }}"
        status: in_progress
      loop: "{{ range(1, 21) | list }}"
      become: true
      become_method: ansible.builtin.su
      register: module_marks

    - name: Note the time after the module loop
      ansible.builtin.set_fact:
        module_loop_end: "{{ now().timestamp() }}"

    - name: Complete all pprd sites but the last (action plugin)
      wfu.multisite.wfu_migration_state:
        action: site
        migration_id: "{{ create_pprd.migration_id }}"
        site_id: "{{ item }}"
        status: completed
      loop: "{{ range(1, 20) | list }}"

    - name: List the migrations
      wfu.multisite.wfu_migration_state:
        action: list
      register: listed

    - name: Show the uat migration
      wfu.multisite.wfu_migration_state:
        action: status
        migration_id: "{{ create_uat.migration_id }}"
      register: status

    - name: Finish the uat migration
      wfu.multisite.wfu_migration_state:
        action: finish
        migration_id: "{{ create_uat.migration_id }}"
        status: failed
        reason: 3 sites failed
      register: finished

    - name: Check mode writes nothing
      wfu.multisite.wfu_migration_state:
        action: site
        migration_id: "{{ create_uat.migration_id }}"
        site_id: 7
        status: in_progress
      check_mode: true
      register: checked

    - name: Save the results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        mode: "0600"
        content: "{{ {'lock_uat': lock_uat, 'create_uat': create_uat, 'outcomes': outcomes, 'lock_pprd': lock_pprd,
                      'module_marks': module_marks, 'listed': listed, 'status': status, 'finished': finished,
                      'checked': checked,
                      'plugin_seconds': plugin_loop_end | float - plugin_loop_start | float,
                      'module_seconds': module_loop_end | float - module_loop_start | float} | to_json }}"
"""

RESUME = """
- name: Resume the pprd migration left running by a finished playbook
  hosts: localhost
  gather_facts: false
  module_defaults:
    wfu.multisite.wfu_migration_state:
      state_dir: "{{ wfu_state_dir }}"
  tasks:
    - name: Lock pprd
      wfu.multisite.wfu_migration_state:
        action: lock
        target_env: pprd
      register: lock_pprd

    - name: Resume the newest pprd migration
      wfu.multisite.wfu_migration_state:
        action: load
        migration_id: latest
        target_env: pprd
        options:
          site_timeout: 1200
      register: loaded

    - name: Redo the interrupted site
      wfu.multisite.wfu_migration_state:
        action: site
        migration_id: "{{ loaded.migration_id }}"
        site_id: "{{ item }}"
        status: completed
      loop: "{{ loaded.migration.sites_by_status.pending }}"
      register: redone

    - name: Finish it
      wfu.multisite.wfu_migration_state:
        action: finish
        migration_id: "{{ loaded.migration_id }}"
        status: completed
      register: finished

    - name: Save the results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        mode: "0600"
        content: "{{ {'lock_pprd': lock_pprd, 'loaded': loaded, 'redone': redone, 'finished': finished} | to_json }}"
"""

HOLD = """
- name: Hold the prod lock until told to stop
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Lock prod
      wfu.multisite.wfu_migration_state:
        action: lock
        target_env: prod
        state_dir: "{{ wfu_state_dir }}"

    - name: Say the lock is taken
      ansible.builtin.file:
        path: "{{ results_file }}.held"
        state: touch
        mode: "0600"

    - name: Wait for the signal to stop
      ansible.builtin.wait_for:
        path: "{{ results_file }}.release"
        timeout: 120

    - name: Unlock prod
      wfu.multisite.wfu_migration_state:
        action: unlock
        target_env: prod
        state_dir: "{{ wfu_state_dir }}"
      register: unlocked

    - name: Save the results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        mode: "0600"
        content: "{{ {'unlocked': unlocked} | to_json }}"
"""

CONTEND = """
- name: Try to take the prod lock
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Lock prod
      wfu.multisite.wfu_migration_state:
        action: lock
        target_env: prod
        state_dir: "{{ wfu_state_dir }}"
      register: contended
      ignore_errors: true

    - name: Save the results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        mode: "0600"
        content: "{{ {'contended': contended} | to_json }}"
"""


def playbook_env(tmp_path):
    env = dict(os.environ)
    env.update(ANSIBLE_REMOTE_TMP=str(tmp_path / "remote_tmp"), ANSIBLE_KEEP_REMOTE_FILES="1",
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".venv", "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="false")
    return env


def start_playbook(tmp_path, name, text, state_dir):
    """Start ansible-playbook on ``text``; its registered results land in <name>.json."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    results_file = tmp_path / (name + ".json")
    proc = subprocess.Popen([ANSIBLE_PLAYBOOK, str(path), "-e", "wfu_state_dir=%s" % state_dir,
                             "-e", "results_file=%s" % results_file],
                            cwd=str(tmp_path), env=playbook_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    proc.results_file = results_file
    return proc


def finish_playbook(proc, timeout=300):
    output = proc.communicate(timeout=timeout)[0]
    assert proc.returncode == 0, output
    return read(proc.results_file)


def run_playbook(tmp_path, name, text, state_dir):
    proc = start_playbook(tmp_path, name, text, state_dir)
    return proc.pid, finish_playbook(proc)


def read(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def tasks_that_ran_the_module(tmp_path):
    """How many tasks ran the wfu_migration_state module itself (Ansible kept their files; a loop shares one)."""
    remote_tmp = tmp_path / "remote_tmp"
    return len(list(remote_tmp.glob("*/AnsiballZ_wfu_migration_state.py"))) if remote_tmp.exists() else 0


def test_migration_state_through_ansible_playbook(tmp_path):
    state_dir = str(tmp_path / "migrations")
    pid, results = run_playbook(tmp_path, "run.yml", RUN, state_dir)

    # Both paths record the ansible-playbook process itself as the lock holder.
    assert results["lock_uat"]["lock"]["pid"] == pid
    assert results["lock_pprd"]["lock"]["pid"] == pid
    # Only the two become tasks ran the module: the pprd lock and the loop of 20 pprd marks.
    assert tasks_that_ran_the_module(tmp_path) == 2

    uat = results["create_uat"]["migration"]
    assert uat["id"].startswith("dev-to-uat-") and uat["counters"]["total"] == 50
    assert "db_password" not in uat["options"]

    outcomes = results["outcomes"]["results"]
    last = outcomes[-1]
    assert last["counters"] == {"pending": 0, "in_progress": 0, "completed": 47, "failed": 2, "timeout": 1,
                                "skipped": 0, "total": 50}
    assert outcomes[6]["consecutive_failures"] == 1 and outcomes[7]["consecutive_failures"] == 0
    assert outcomes[32]["site"]["status"] == "timeout" and outcomes[32]["site"]["attempts"] == 1
    assert last["site"]["result"] == {"rows": 500}
    assert "ansible_facts" not in last
    module_marks = results["module_marks"]["results"]
    assert module_marks[-1]["counters"]["in_progress"] == 20

    listed = results["listed"]
    assert listed["migrations"][0]["id"] == uat["id"]
    rows = {row["target_env"]: row for row in listed["migrations"]}
    assert rows["uat"]["progress"] == "47/50" and rows["uat"]["failures"] == 3 and rows["uat"]["resumable"]
    assert rows["pprd"]["progress"] == "19/20"
    assert listed["changed"] is False and len(listed["table"]) == 3

    status = results["status"]
    assert [site["id"] for site in status["failed_sites"]] == [7, 21, 33]
    assert status["migration"]["id"] == uat["id"] and "ansible_facts" not in status
    assert status["resume_command"] == "ansible-playbook wfu.multisite.env_migrate -e resume=%s" % uat["id"]
    assert results["finished"]["lock_released"] is True
    assert results["checked"]["changed"] is True and results["checked"]["site"]["attempts"] == 2

    # The files behind it.
    paths = uat["paths"]
    state = read(paths["state"])
    assert state["status"] == "failed" and state["reason"] == "3 sites failed"
    assert state["sites"]["7"]["attempts"] == 1 and state["sites"]["7"]["status"] == "failed"
    assert read(paths["completed"]) == [n for n in range(1, 51) if n not in (7, 21, 33)]
    assert [entry["id"] for entry in read(paths["failed"])] == [7, 21, 33]
    with open(os.path.join(paths["logs"], "site-21.log"), encoding="utf-8") as handle:
        assert len(handle.read().splitlines()) == 3  # in_progress, failed, its error line
    assert not os.path.exists(os.path.join(state_dir, "locks", "uat.lock"))
    for base, dirs, files in os.walk(state_dir):
        for name in dirs:
            assert stat.S_IMODE(os.stat(os.path.join(base, name)).st_mode) == 0o700
        for name in files:
            path = os.path.join(base, name)
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            assert "hunter2" not in text and "not-to-be-saved" not in text

    print("\nper site update, as a loop item: action plugin %.1f ms (50 calls), module %.1f ms (20 calls)"
          % (results["plugin_seconds"] * 1000 / 50, results["module_seconds"] * 1000 / 20))

    # The first playbook has exited: its pprd lock is stale and the next run takes it over and resumes.
    resumed_pid, results = run_playbook(tmp_path, "resume.yml", RESUME, state_dir)
    lock = results["lock_pprd"]
    assert lock["stale_lock_taken_over"] is True and lock["previous_holder"]["pid"] == pid
    assert lock["lock"]["pid"] == resumed_pid
    loaded = results["loaded"]
    assert loaded["interrupted"] == [20] and loaded["options_overridden"] == ["site_timeout"]
    assert loaded["migration"]["target_env"] == "pprd" and loaded["migration"]["options"]["site_timeout"] == 1200
    assert [result["site_id"] for result in results["redone"]["results"]] == [20]
    assert results["finished"]["lock_released"] is True
    assert results["finished"]["migration"]["counters"]["completed"] == 20
    assert not os.path.exists(os.path.join(state_dir, "locks", "pprd.lock"))


def test_a_live_run_keeps_its_lock(tmp_path):
    state_dir = str(tmp_path / "migrations")
    holder = start_playbook(tmp_path, "hold.yml", HOLD, state_dir)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(str(holder.results_file) + ".held"):
            assert holder.poll() is None, holder.communicate()[0]
            assert time.monotonic() < deadline, "the holding playbook did not take the lock"
            time.sleep(0.1)
        _pid, results = run_playbook(tmp_path, "contend.yml", CONTEND, state_dir)
        contended = results["contended"]
        assert contended["failed"] is True
        assert contended["holder"]["pid"] == holder.pid
        assert "still running" in contended["msg"] and "pid %d" % holder.pid in contended["msg"]
    finally:
        open(str(holder.results_file) + ".release", "w", encoding="utf-8").close()
    results = finish_playbook(holder)
    assert results["unlocked"]["released"] is True


RUN_AND_WAIT = """
- name: Start a migration into prod and wait to be killed
  hosts: localhost
  gather_facts: false
  module_defaults:
    wfu.multisite.wfu_migration_state:
      state_dir: "{{ wfu_state_dir }}"
  tasks:
    - name: Lock prod
      wfu.multisite.wfu_migration_state:
        action: lock
        target_env: prod
        awx_job_id: "4711"

    - name: Create the migration
      wfu.multisite.wfu_migration_state:
        action: create
        source_env: dev
        target_env: prod
        sites: [1, 2, 3]
        awx_job_id: "4711"
      register: created

    - name: Mark site 2 in progress
      wfu.multisite.wfu_migration_state:
        action: site
        migration_id: "{{ created.migration_id }}"
        site_id: 2
        status: in_progress

    - name: Say the run is under way
      ansible.builtin.file:
        path: "{{ results_file }}.held"
        state: touch
        mode: "0600"

    - name: Wait for the end
      ansible.builtin.wait_for:
        path: "{{ results_file }}.release"
        timeout: 120
"""

OBSERVE = """
- name: Look at prod's migration and try to clear its lock
  hosts: localhost
  gather_facts: false
  module_defaults:
    wfu.multisite.wfu_migration_state:
      state_dir: "{{ wfu_state_dir }}"
  tasks:
    - name: Show the newest migration
      wfu.multisite.wfu_migration_state:
        action: status
      register: status

    - name: List the migrations
      wfu.multisite.wfu_migration_state:
        action: list
      register: listed

    - name: Release prod's lock without force
      wfu.multisite.wfu_migration_state:
        action: unlock
        target_env: prod
      register: unlocked
      ignore_errors: true

    - name: Save the results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        mode: "0600"
        content: "{{ {'status': status, 'listed': listed, 'unlocked': unlocked} | to_json }}"
"""

RESUME_LATEST = """
- name: Resume the newest migration into prod
  hosts: localhost
  gather_facts: false
  module_defaults:
    wfu.multisite.wfu_migration_state:
      state_dir: "{{ wfu_state_dir }}"
  tasks:
    - name: Lock prod
      wfu.multisite.wfu_migration_state:
        action: lock
        target_env: prod
      register: locked

    - name: Resume
      wfu.multisite.wfu_migration_state:
        action: load
        migration_id: latest
      register: loaded

    - name: Save the results
      ansible.builtin.copy:
        dest: "{{ results_file }}"
        mode: "0600"
        content: "{{ {'locked': locked, 'loaded': loaded} | to_json }}"
"""


def test_a_killed_run_is_shown_interrupted_and_resumed(tmp_path):
    state_dir = str(tmp_path / "migrations")
    run = start_playbook(tmp_path, "run_and_wait.yml", RUN_AND_WAIT, state_dir)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(str(run.results_file) + ".held"):
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "the run did not start its migration"
            time.sleep(0.1)
        _pid, alive = run_playbook(tmp_path, "observe_alive.yml", OBSERVE, state_dir)
        run.kill()  # kill -9 of ansible-playbook: no rescue, no always
        run.communicate()
    finally:
        open(str(run.results_file) + ".release", "w", encoding="utf-8").close()  # lets an orphaned worker end

    migration = alive["status"]["migration"]
    assert migration["effective_status"] == "running" and migration["holder"]["pid"] == run.pid
    assert migration["holder"]["awx_job_id"] == "4711"
    refused = alive["unlocked"]
    assert refused["failed"] is True and refused["holder"]["pid"] == run.pid
    assert "pid %d" % run.pid in refused["msg"] and "still running" in refused["msg"] and "AWX job 4711" in refused["msg"]
    assert "-e force_unlock=prod -e force=true" in refused["msg"]

    _pid, dead = run_playbook(tmp_path, "observe_dead.yml", OBSERVE, state_dir)
    migration = dead["status"]["migration"]
    assert migration["status"] == "running" and migration["effective_status"] == "interrupted"
    assert "interrupted" in dead["status"]["report"][0]
    assert "Resume: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % migration["id"] in dead["status"]["report"]
    assert dead["listed"]["migrations"][0]["effective_status"] == "interrupted"
    assert dead["unlocked"]["released"] is True and dead["unlocked"]["previous_holder"]["liveness"] == "dead"

    resumed_pid, resumed = run_playbook(tmp_path, "resume_latest.yml", RESUME_LATEST, state_dir)
    assert resumed["locked"]["lock"]["pid"] == resumed_pid
    assert resumed["loaded"]["migration"]["id"] == migration["id"] and resumed["loaded"]["interrupted"] == [2]
    assert resumed["loaded"]["migration"]["holder"]["pid"] == resumed_pid
