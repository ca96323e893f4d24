"""The AWX-like job harness (awx_jobs.py) itself: layout, fresh HOME, streaming, cancel, slices, secrets.

These are the harness's own guarantees, proven with the collection's ``migration_list`` playbook and tiny
playbooks; the env_migrate tests of issue 9 build on them (see awx_jobs.py).
"""

import json
import os
import stat
import time

import pytest

from awx_jobs import (cancel, exported_inventory, new_job, run_job, secrets_in, slice_inventory, start_job,
                      tear_down)
from helpers import LoadedNetwork
from tools.wpnetwork import NetworkSpec

CREATE_MIGRATION = """---
- name: Start a migration in the shared state directory
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Create it
      wfu.multisite.wfu_migration_state:
        action: create
        state_dir: "{{ wfu_state_dir }}"
        source_env: dev
        target_env: uat
        sites: [2, 3]
      register: created

    - name: Say its id
      ansible.builtin.debug:
        msg: "created {{ created.migration_id }}"
"""

LONG_TASK = """---
- name: A job that works until it is canceled
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Work, then clean up
      block:
        - name: Work for a long time
          ansible.builtin.shell: "echo $$ > {{ marker_dir }}/pid; exec sleep 300"
          changed_when: true
      always:
        - name: Clean up (AWX's cancel never gets here)
          ansible.builtin.file:
            path: "{{ marker_dir }}/always"
            state: touch
            mode: "0600"
"""

SECRET_TASKS = """---
- name: Use a password
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Use the password quietly
      ansible.builtin.debug:
        msg: "the password is {{ wfu_test_password }}"
      no_log: true

    - name: List the sites through the credential's option file
      wfu.multisite.wfu_sites_info:
        db:
          config_file: "{{ wfu_dev_db_config_file }}"
          database: "{{ wfu_test_database }}"
      register: listed

    - name: Count them
      ansible.builtin.assert:
        that: listed.summary.count == 3
"""

LEAK = """
    - name: Leak the password (a deliberate mistake the checker must catch)
      ansible.builtin.debug:
        msg: "the password is {{ wfu_test_password }}"
"""

SLICE_PLAY = """---
- name: One slice of the sites
  hosts: wfu_sites
  gather_facts: false
  tasks:
    - name: Name the site and the workflow
      ansible.builtin.debug:
        msg: "site {{ wfu_site_id }} of workflow {{ awx_workflow_job_id }} in job {{ awx_job_id }}"
"""


def debug_messages(job):
    return [event["event_data"]["res"]["msg"] for event in job.events
            if event.get("event") == "runner_on_ok" and "msg" in event.get("event_data", {}).get("res", {})]


def pid_alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_job_layout_is_awx_like(tmp_path):
    job = new_job(tmp_path, "layout", "wfu.multisite.migration_list", extravars={"wfu_state_dir": "/x"},
                  workflow_job_id=77)

    pdd = job.private_data_dir
    for part in ("project/main.yml", "inventory/hosts", "env/extravars", "env/envvars", "env/settings"):
        assert os.path.exists(os.path.join(pdd, part)), part
    with open(os.path.join(pdd, "project", "main.yml"), encoding="utf-8") as handle:
        assert "ansible.builtin.import_playbook: wfu.multisite.migration_list" in handle.read()
    with open(os.path.join(pdd, "env", "extravars"), encoding="utf-8") as handle:
        extravars = json.load(handle)
    assert extravars == {"wfu_state_dir": "/x", "awx_job_id": job.job_id, "tower_job_id": job.job_id,
                         "awx_job_template_name": "layout", "awx_workflow_job_id": 77, "tower_workflow_job_id": 77}
    with open(os.path.join(pdd, "env", "envvars"), encoding="utf-8") as handle:
        envvars = json.load(handle)
    assert envvars["HOME"] == job.home and os.listdir(job.home) == []
    assert envvars["ANSIBLE_COLLECTIONS_PATH"].endswith(os.path.join(".venv", "collections"))
    assert stat.S_IMODE(os.stat(os.path.join(pdd, "env", "extravars")).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        new_job(tmp_path, "layout", "wfu.multisite.migration_list")


def test_state_is_shared_through_wfu_state_dir_only(tmp_path):
    """Each job has a fresh HOME, so only a state directory passed in (or the database backend) outlives a job."""
    state_dir = str(tmp_path / "state")
    created = run_job(new_job(tmp_path, "create", CREATE_MIGRATION, extravars={"wfu_state_dir": state_dir}))
    assert (created.status, created.rc) == ("successful", 0), created.stdout
    assert created.leftover_processes == []
    (message,) = [m for m in debug_messages(created) if m.startswith("created ")]
    migration_id = message.split()[1]
    assert os.listdir(created.home) in ([], [".ansible"])

    listed = run_job(new_job(tmp_path, "list", "wfu.multisite.migration_list", extravars={"wfu_state_dir": state_dir},
                             streamed=True))
    assert (listed.status, listed.rc) == ("successful", 0), listed.stdout
    assert migration_id in json.dumps(debug_messages(listed))
    assert not os.path.exists(listed.run_dir), "the worker's directory outlived the job (worker --delete)"

    default_dir = run_job(new_job(tmp_path, "list-default", "wfu.multisite.migration_list"))
    assert default_dir.status == "successful", default_dir.stdout
    assert debug_messages(default_dir) == ["No migrations yet."]


@pytest.mark.parametrize("streamed", [False, True], ids=["in-process", "transmit-worker-process"])
def test_cancel_kills_the_playbook_like_awx(tmp_path, streamed):
    markers = tmp_path / "markers"
    markers.mkdir()
    job = new_job(tmp_path, "long", LONG_TASK, extravars={"marker_dir": str(markers)}, streamed=streamed)
    thread = start_job(job)
    try:
        deadline = time.monotonic() + 60
        while not (markers / "pid").exists() or not (markers / "pid").read_text().strip():
            assert time.monotonic() < deadline, "the job never started its task"
            assert thread.is_alive(), "the job ended before its task started"
            time.sleep(0.1)
        pid = int((markers / "pid").read_text())
        assert pid_alive(pid)
        started = time.monotonic()

        cancel(job)
        thread.join(30)
        assert not thread.is_alive(), "cancel did not end the job"
    finally:
        tear_down(job)

    assert time.monotonic() - started < 30
    assert job.status == "canceled" and job.rc == 254, (job.status, job.rc)
    # ansible-runner's SIGKILL of the playbook's process group misses the task (ansible-core's workers setsid);
    # the end of the job's environment, as AWX removes its container, takes it.
    assert pid in job.leftover_processes, job.leftover_processes
    assert not pid_alive(pid), "the task's process survived the job"
    assert not (markers / "always").exists(), "an always block ran: AWX's cancel is a SIGKILL"
    assert "runner_on_start" in job.event_names()
    if streamed:
        assert not os.path.exists(job.run_dir)


@pytest.fixture(scope="module")
def small_network(servers):
    network = LoadedNetwork(servers["source"], NetworkSpec(url="https://dev.example.edu", subdomain=True, sites=3,
                                                           posts_per_site=2))
    yield network
    network.drop()


def secret_job(tmp_path, name, network, password, leak=False, streamed=False):
    server = network.server
    credential = ("wfu_source_db", {"environment": "dev", "host": server.host, "port": str(server.port),
                                    "user": server.user, "password": server.password})
    return new_job(tmp_path, name, SECRET_TASKS + (LEAK if leak else ""), verbosity=3, streamed=streamed,
                   extravars={"wfu_test_password": password, "wfu_test_database": network.database},
                   credentials=[credential])


@pytest.mark.parametrize("streamed", [False, True], ids=["in-process", "transmit-worker-process"])
def test_no_password_in_events_stdout_or_artifacts_at_vvv(tmp_path, small_network, streamed):
    password = "Dist1nctive-Pa55word-%d" % os.getpid()
    job = run_job(secret_job(tmp_path, "quiet", small_network, password, streamed=streamed))

    assert (job.status, job.rc) == ("successful", 0), job.stdout
    assert "ESTABLISH LOCAL CONNECTION" in job.stdout, "not run at -vvv"
    assert len([e for e in job.events if e.get("event") == "runner_on_ok"]) == 3
    assert secrets_in(job, password, small_network.server.password) == []


@pytest.mark.parametrize("streamed", [False, True], ids=["in-process", "transmit-worker-process"])
def test_the_secret_checker_catches_a_leak(tmp_path, small_network, streamed):
    password = "Dist1nctive-Pa55word-%d" % os.getpid()
    job = run_job(secret_job(tmp_path, "leaky", small_network, password, leak=True, streamed=streamed))

    assert job.status == "successful", job.stdout
    found = secrets_in(job, password)
    assert any(place.startswith("event ") and "runner_on_ok" in place for place in found), found
    assert any(place.startswith("stdout line ") for place in found), found
    assert any(place.startswith(os.path.join("artifacts", job.ident, "job_events")) for place in found), found
    assert secrets_in(job, small_network.server.password) == []


def test_slices_of_the_inventory_plugin_hosts_share_one_workflow(tmp_path, servers):
    network = LoadedNetwork(servers["source"], NetworkSpec(url="https://dev.example.edu", subdomain=True, sites=8,
                                                           posts_per_site=2))
    try:
        source = tmp_path / "dev.wfu_sites.yml"
        source.write_text(json.dumps({"plugin": "wfu.multisite.sites",
                                      "db": network.server.connection(network.database)}))
        inventory = exported_inventory(str(source))
        jobs = [new_job(tmp_path, "slice-%d" % n, SLICE_PLAY, inventory=slice_inventory(inventory, n, 3),
                        workflow_job_id=4242, streamed=n == 3) for n in (1, 2, 3)]
        threads = [start_job(job) for job in jobs]
        for thread in threads:
            thread.join(120)
    finally:
        for job in jobs:
            tear_down(job)
        network.drop()

    seen = {}
    for job in jobs:
        assert (job.status, job.rc) == ("successful", 0), job.stdout
        for message in debug_messages(job):
            words = message.split()
            assert words[4] == "4242" and words[7] == str(job.job_id), message
            seen.setdefault(int(words[1]), []).append(job.name)
    assert sorted(seen) == list(range(1, 9))
    assert all(len(names) == 1 for names in seen.values()), seen
    assert sorted(len([s for s, names in seen.items() if names == [job.name]]) for job in jobs) == [2, 3, 3]
