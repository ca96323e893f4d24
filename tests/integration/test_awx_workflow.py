"""The AWX workflow of issue 9 through ansible-runner: env_migrate_prepare, sliced env_migrate_sites, env_migrate_finish.

Every job is an AWX-like job of awx_jobs.py (its own private data dir and fresh HOME; one slice streamed through
``transmit | worker --delete | process``), on the database state backend: the state must outlive each job. The
sites' hosts come from the inventory plugin as AWX's inventory sync stores them (``ansible-inventory --list
--export``), cut into three slices as AWX's job slicing cuts them, the migration's settings in the inventory's
variables. Verdicts read the target, the migration database and the ``wfu_state_*`` rows directly.
"""

import json
import os
import time

import pytest

from awx_jobs import VENV_BIN, cancel, exported_inventory, new_job, run_job, secrets_in, slice_inventory, start_job, \
    tear_down
from helpers import connect, fingerprint, query, table_names
from role_helpers import SOURCE_URL, MigrationSetup
from tools.wpnetwork import NetworkSpec

STATE_TABLES = ["wfu_state_claims", "wfu_state_locks", "wfu_state_logs", "wfu_state_meta", "wfu_state_migrations",
                "wfu_state_runs"]
PYTHON = os.path.join(VENV_BIN, "python")
SITES = 9


class Workflow:
    """One network to migrate and the jobs of its workflows, all on the database state backend."""

    def __init__(self, servers, tmp_path, seed):
        self.servers = servers
        self.root = tmp_path / "jobs"
        self.root.mkdir()
        self.setup = MigrationSetup(servers, tmp_path / "setup", NetworkSpec(url=SOURCE_URL, subdomain=True,
                                                                             sites=SITES, seed=seed, posts_per_site=1))
        with open(os.path.join(self.setup.directory, "group_vars", "all.yml"), encoding="utf-8") as handle:
            settings = json.load(handle)
        # The inventory's variables in AWX; nothing of them lives on any job's disk once it ends.
        self.settings = dict(settings, wfu_state_backend="database", ansible_python_interpreter=PYTHON,
                             wfu_state_dir="/nonexistent/wfu-state-on-files-is-not-used")
        source = tmp_path / "dev.wfu_sites.yml"
        source.write_text(json.dumps({"plugin": "wfu.multisite.sites",
                                      "db": self.setup.source.connection(self.setup.source_db)}))
        self.sites_inventory = exported_inventory(str(source))
        self.sites_inventory.setdefault("all", {})["vars"] = self.settings
        self.jobs = []

    def localhost_inventory(self):
        return {"_meta": {"hostvars": {"localhost": {"ansible_connection": "local",
                                                     "ansible_python_interpreter": PYTHON}}},
                "all": {"children": ["ungrouped"], "vars": self.settings}, "ungrouped": {"hosts": ["localhost"]}}

    def job(self, name, playbook, inventory=None, **kwargs):
        job = new_job(self.root, name, playbook, inventory=inventory or self.localhost_inventory(), **kwargs)
        self.jobs.append(job)
        return job

    def state(self):
        found = query(self.servers["migration"], self.setup.migration_db, "SELECT state FROM wfu_state_migrations")
        assert len(found) <= 1
        return json.loads(found[0][0]) if found else None

    def rows(self, sql):
        return query(self.servers["migration"], self.setup.migration_db, sql)

    def site_problems(self):
        return [problem for site_id in range(1, SITES + 1) for problem in self.setup.site_problems(site_id)]

    def no_secret_anywhere(self):
        passwords = {server.password for server in (self.setup.source, self.setup.target, self.setup.migration)}
        return {job.name: secrets_in(job, *passwords) for job in self.jobs if secrets_in(job, *passwords)}

    def assert_all_migrated_and_nothing_left(self):
        """Every site correct in the target; the migration database holds only the state, with no claim or lock;
        no stray table in the target; no password in any job."""
        assert self.site_problems() == []
        assert table_names(self.servers["migration"], self.setup.migration_db) == STATE_TABLES
        assert self.setup.stray_target_tables() == []
        assert self.rows("SELECT COUNT(*) FROM wfu_state_claims") == ((0,),)
        assert self.rows("SELECT COUNT(*) FROM wfu_state_locks") == ((0,),)
        assert self.no_secret_anywhere() == {}

    def close(self):
        for job in self.jobs:
            tear_down(job)
        self.setup.drop()


@pytest.fixture
def workflow(servers, tmp_path, request):
    flow = Workflow(servers, tmp_path, seed=31 + len(request.node.name))
    yield flow
    flow.close()


def stats_of(job):
    """What the job published with set_stats (AWX passes it on to the workflow's next jobs)."""
    (stats,) = [event for event in job.events if event.get("event") == "playbook_on_stats"]
    return stats["event_data"].get("artifact_data") or {}


def migrated_hosts(job):
    """The hosts whose site this job's worker migrated (its pipeline task ran on them)."""
    return sorted(event["event_data"]["host"] for event in job.events
                  if event.get("event") == "runner_on_ok"
                  and event["event_data"].get("task_action") == "wfu.multisite.wfu_site_migrate")


def ok(job):
    assert (job.status, job.rc) == ("successful", 0), job.stdout[-6000:]
    return job


def test_prepare_three_concurrent_slices_and_finish_migrate_every_site_once(workflow):
    # prepare, the third slice and finish run at -vvv: no password in their events, stdout or artifacts either.
    prepared = ok(run_job(workflow.job("prepare", "wfu.multisite.env_migrate_prepare", workflow_job_id=900,
                                       verbosity=3, extravars={"source_env": "dev", "target_env": "uat"})))
    migration_id = stats_of(prepared)["wfu_migration_id"]
    assert workflow.state()["network_tables"]["status"] == "completed"
    assert workflow.rows("SELECT COUNT(*) FROM wfu_state_locks") == ((0,),)  # the prepare job released its locks

    slices = [workflow.job("sites-%d" % number, "wfu.multisite.env_migrate_sites", workflow_job_id=900,
                           inventory=slice_inventory(workflow.sites_inventory, number, 3), streamed=number == 3,
                           verbosity=3 if number == 3 else 0, extravars={"wfu_migration_id": migration_id})
              for number in (1, 2, 3)]
    threads = [start_job(job) for job in slices]
    for thread in threads:
        thread.join(600)
    for job in slices:
        ok(job)
        assert stats_of(job) == {}  # only prepare and finish publish: nothing depends on the slices' order
    # Each slice migrated exactly its own hosts: every site by one worker, none twice.
    assert sorted(host for job in slices for host in migrated_hosts(job)) == sorted(
        "site-%d" % site_id for site_id in range(1, SITES + 1))
    for number, job in enumerate(slices, 1):
        assert migrated_hosts(job) == sorted(slice_inventory(workflow.sites_inventory, number, 3)["_meta"]["hostvars"])

    finished = ok(run_job(workflow.job("finish", "wfu.multisite.env_migrate_finish", workflow_job_id=900,
                                       verbosity=3, extravars={"wfu_migration_id": migration_id})))
    published = stats_of(finished)
    assert published["wfu_migration_id"] == migration_id and published["wfu_migration_status"] == "completed"
    assert published["wfu_migration_counters"]["completed"] == SITES

    state = workflow.state()
    assert state["id"] == migration_id and state["status"] == "completed" and state["stopping"] is None
    assert {key: (record["status"], record["attempts"]) for key, record in state["sites"].items()} == {
        str(site_id): ("completed", 1) for site_id in range(1, SITES + 1)}
    assert workflow.setup.sites_in_target() == list(range(1, SITES + 1))
    workflow.assert_all_migrated_and_nothing_left()


def test_a_slice_cancelled_mid_site_is_finished_by_a_resume(workflow):
    prepared = ok(run_job(workflow.job("prepare", "wfu.multisite.env_migrate_prepare", workflow_job_id=901,
                                       extravars={"source_env": "dev", "target_env": "uat"})))
    migration_id = stats_of(prepared)["wfu_migration_id"]
    inventories = [slice_inventory(workflow.sites_inventory, number, 3) for number in (1, 2, 3)]
    # The copy of one site of slice 2 waits for a table lock in the source, so the slice is cancelled mid-site.
    stuck = sorted(inventories[1]["_meta"]["hostvars"].values(), key=lambda host: host["wfu_site_id"])[-1]
    stuck_id = stuck["wfu_site_id"]
    blocker = connect(workflow.setup.source, workflow.setup.source_db)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLES wp_%d_posts WRITE" % stuck_id)
        slices = [workflow.job("sites-%d" % number, "wfu.multisite.env_migrate_sites", workflow_job_id=901,
                               inventory=inventories[number - 1], extravars={"wfu_migration_id": migration_id})
                  for number in (1, 2, 3)]
        threads = [start_job(job) for job in slices]
        deadline = time.monotonic() + 300
        while (workflow.state()["sites"][str(stuck_id)]["status"] != "in_progress"
               or not workflow.rows("SELECT COUNT(*) FROM wfu_state_claims WHERE site_id = %d" % stuck_id)[0][0]):
            assert time.monotonic() < deadline, "site %d never started" % stuck_id
            time.sleep(0.2)
        cancel(slices[1])
        for thread in threads:
            thread.join(600)
    finally:
        blocker.close()
    ok(slices[0])
    ok(slices[2])
    assert slices[1].status == "canceled"
    state = workflow.state()
    # The other slices' sites are done; of the cancelled slice's, the stuck one (and any its lock held up, since
    # a site's first queries read the source's table list) stays as the cancel left it: in progress, or pending.
    cancelled_sites = {host["wfu_site_id"] for host in inventories[1]["_meta"]["hostvars"].values()}
    unfinished = {int(key): record["status"] for key, record in state["sites"].items() if record["status"] != "completed"}
    assert unfinished[stuck_id] == "in_progress" and set(unfinished) <= cancelled_sites, unfinished
    interrupted = sorted(site_id for site_id, status in unfinished.items() if status == "in_progress")

    # The workflow's finish: not completed, so it fails with the resume command.
    finish = run_job(workflow.job("finish", "wfu.multisite.env_migrate_finish", workflow_job_id=901,
                                  extravars={"wfu_migration_id": migration_id}))
    assert finish.status == "failed", finish.stdout[-4000:]
    assert "Resume with: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % migration_id in \
        " ".join(finish.stdout.split())
    assert workflow.state()["status"] == "paused"

    # The resume: the Sites node again, over every host, then Finish. The cancelled worker's claim is gone with it:
    # taken over without any unlock, the site cleaned and redone; the completed sites are left alone.
    again = ok(run_job(workflow.job("sites-again", "wfu.multisite.env_migrate_sites", workflow_job_id=911,
                                    inventory=workflow.sites_inventory,
                                    extravars={"wfu_migration_id": migration_id, "parallel": 3})))
    assert migrated_hosts(again) == sorted("site-%d" % site_id for site_id in unfinished)
    text = " ".join(again.stdout.split())
    for site_id in interrupted:
        assert "the claim of site %d of pid" % site_id in text and "whose run is gone" in text, again.stdout[-6000:]
    ok(run_job(workflow.job("finish-again", "wfu.multisite.env_migrate_finish", workflow_job_id=911,
                            extravars={"wfu_migration_id": migration_id})))
    state = workflow.state()
    assert state["status"] == "completed"
    assert {key: record["attempts"] for key, record in state["sites"].items()} == {
        str(site_id): 2 if site_id in interrupted else 1 for site_id in range(1, SITES + 1)}
    workflow.assert_all_migrated_and_nothing_left()


def test_overlapping_workers_attempt_each_site_once_and_a_later_job_finds_nothing_to_do(workflow):
    """Two sites jobs over every host at once (a slice launched twice by hand), then a third after them."""
    prepared = ok(run_job(workflow.job("prepare", "wfu.multisite.env_migrate_prepare", workflow_job_id=902,
                                       extravars={"source_env": "dev", "target_env": "uat"})))
    migration_id = stats_of(prepared)["wfu_migration_id"]
    twins = [workflow.job("twin-%d" % number, "wfu.multisite.env_migrate_sites", workflow_job_id=902,
                          inventory=workflow.sites_inventory, extravars={"wfu_migration_id": migration_id, "parallel": 3})
             for number in (1, 2)]
    threads = [start_job(job) for job in twins]
    for thread in threads:
        thread.join(600)
    for job in twins:
        ok(job)
    migrated = [migrated_hosts(job) for job in twins]
    assert not set(migrated[0]) & set(migrated[1]), migrated
    assert sorted(migrated[0] + migrated[1]) == sorted("site-%d" % site_id for site_id in range(1, SITES + 1))
    state = workflow.state()
    assert {key: (record["status"], record["attempts"]) for key, record in state["sites"].items()} == {
        str(site_id): ("completed", 1) for site_id in range(1, SITES + 1)}

    later = ok(run_job(workflow.job("later", "wfu.multisite.env_migrate_sites", workflow_job_id=902,
                                    inventory=workflow.sites_inventory, extravars={"wfu_migration_id": migration_id})))
    assert migrated_hosts(later) == []
    text = " ".join(later.stdout.split())
    assert all("site %d is completed in migration %s: nothing to do for it" % (site_id, migration_id) in text
               for site_id in range(1, SITES + 1)), later.stdout[-4000:]
    assert all(record["attempts"] == 1 for record in workflow.state()["sites"].values())
    assert workflow.rows("SELECT COUNT(*) FROM wfu_state_claims") == ((0,),)
    assert table_names(workflow.servers["migration"], workflow.setup.migration_db) == STATE_TABLES


def test_once_the_policy_stops_the_run_no_worker_starts_a_site_and_finish_says_why(workflow):
    """Two sites in a row fail with max_consecutive_failures 2: the health check finds every database answering,
    so the run aborts (pause_on_failure is off); the workers of the sites after them start nothing."""
    for site_id in (2, 3):  # a site whose options table is gone cannot be migrated
        query(workflow.setup.source, workflow.setup.source_db, "DROP TABLE wp_%d_options" % site_id)
    prepared = ok(run_job(workflow.job("prepare", "wfu.multisite.env_migrate_prepare", workflow_job_id=903,
                                       extravars={"source_env": "dev", "target_env": "uat",
                                                  "max_consecutive_failures": 2})))
    migration_id = stats_of(prepared)["wfu_migration_id"]
    # One site at a time, in name order: site-1 completes, site-2 and site-3 fail, then the run stops.
    sites = ok(run_job(workflow.job("sites", "wfu.multisite.env_migrate_sites", workflow_job_id=903,
                                    inventory=workflow.sites_inventory, extravars={"wfu_migration_id": migration_id})))
    state = workflow.state()
    assert state["stopping"]["status"] == "aborted", state["stopping"]
    assert "2 consecutive failures while every database answers" in state["stopping"]["reason"]
    assert {key: record["status"] for key, record in state["sites"].items()} == dict(
        {"1": "completed", "2": "failed", "3": "failed"}, **{str(site_id): "pending" for site_id in range(4, SITES + 1)})
    assert all(state["sites"][str(site_id)]["attempts"] == 0 for site_id in range(4, SITES + 1))
    assert migrated_hosts(sites) == ["site-1"]
    assert "is stopping" in " ".join(sites.stdout.split())

    finish = run_job(workflow.job("finish", "wfu.multisite.env_migrate_finish", workflow_job_id=903,
                                  extravars={"wfu_migration_id": migration_id}))
    assert finish.status == "failed"
    text = " ".join(finish.stdout.split())
    assert "Migration %s ended aborted: 2 consecutive failures" % migration_id in text, finish.stdout[-4000:]
    assert "Resume with: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % migration_id in text
    assert stats_of(finish)["wfu_migration_status"] == "aborted"
    assert table_names(workflow.servers["migration"], workflow.setup.migration_db) == STATE_TABLES
    assert workflow.rows("SELECT COUNT(*) FROM wfu_state_claims") == ((0,),)


def migration_states(flow):
    """``{id: state}`` of every migration in the migration database (none before the first job made its tables)."""
    if "wfu_state_migrations" not in table_names(flow.servers["migration"], flow.setup.migration_db):
        return {}
    return {migration_id: json.loads(state) for migration_id, state in
            flow.rows("SELECT id, state FROM wfu_state_migrations")}


def sites_with(state, status):
    return sorted(int(key) for key, record in state["sites"].items() if record["status"] == status)


def wait_for_state(flow, predicate, what, seconds=300):
    deadline = time.monotonic() + seconds
    while not predicate(migration_states(flow)):
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.2)


def test_single_command_jobs_resume_after_an_outage_and_a_cancel_and_a_third_job_lists_both(tmp_path):
    """The single-command playbook as AWX job templates, every job in its own private data dir and HOME:

    job A (streamed through transmit | worker --delete | process) aborts by itself when the target stops after two
    sites; job B, ``resume=latest``, completes it.  Job C starts a new migration and is cancelled in the middle of a
    site; job D, ``resume=latest``, completes it without any unlock.  Job E, ``migration_list``, shows both."""
    from tools.mariadb_servers import ServerSet, start_server_again, stop_server

    with ServerSet(("source", "target", "migration")) as servers:
        flow = Workflow(servers, tmp_path, seed=77)
        try:
            setup = flow.setup
            job_a = flow.job("a", "wfu.multisite.env_migrate", streamed=True, verbosity=3, extravars={
                "source_env": "dev", "target_env": "uat", "max_consecutive_failures": 2})
            thread = start_job(job_a)
            wait_for_state(flow, lambda states: states and len(sites_with(list(states.values())[0], "completed")) >= 2,
                           "two sites of job A")
            stop_server(setup.target)
            thread.join(600)
            assert job_a.status == "failed", job_a.stdout[-4000:]
            (first_id, first), = migration_states(flow).items()
            assert first["status"] == "aborted" and sites_with(first, "pending"), first["status"]
            assert "Resume with: ansible-playbook wfu.multisite.env_migrate -e resume=%s" % first_id in \
                " ".join(job_a.stdout.split())
            start_server_again(setup.target)

            ok(run_job(flow.job("b", "wfu.multisite.env_migrate", extravars={"resume": "latest"})))
            first = migration_states(flow)[first_id]
            assert first["status"] == "completed" and sites_with(first, "completed") == list(range(1, SITES + 1))
            assert flow.site_problems() == []

            # Job C: a new migration; the copy of site 3 waits for a table lock in the source, and the job is
            # cancelled there (AWX's cancel: the playbook's process group SIGKILLed, no rescue, no always).
            blocker = connect(setup.source, setup.source_db)
            try:
                with blocker.cursor() as cur:
                    cur.execute("LOCK TABLES wp_3_posts WRITE")
                job_c = flow.job("c", "wfu.multisite.env_migrate", extravars={"source_env": "dev", "target_env": "uat"})
                thread = start_job(job_c)
                wait_for_state(flow, lambda states: any(
                    migration_id != first_id and 3 in sites_with(state, "in_progress")
                    for migration_id, state in states.items()), "site 3 of job C in progress")
                cancel(job_c)
                thread.join(600)
            finally:
                blocker.close()
            assert job_c.status == "canceled"
            (second_id,) = set(migration_states(flow)) - {first_id}

            resumed = ok(run_job(flow.job("d", "wfu.multisite.env_migrate", extravars={"resume": "latest"})))
            second = migration_states(flow)[second_id]
            assert second["status"] == "completed"
            assert {key: record["attempts"] for key, record in second["sites"].items()} == {
                str(site_id): 2 if site_id == 3 else 1 for site_id in range(1, SITES + 1)}
            assert "Took over lock 'uat'" in " ".join(resumed.stdout.split()), resumed.stdout[-6000:]
            listed = ok(run_job(flow.job("e", "wfu.multisite.migration_list")))
            assert first_id in listed.stdout and second_id in listed.stdout, listed.stdout[-4000:]
            flow.assert_all_migrated_and_nothing_left()
        finally:
            flow.close()


def test_the_workflow_in_check_mode_changes_nothing(workflow):
    """Job templates of job type "check": Prepare before anything exists, then Sites and Finish of a prepared
    migration, each with --check: no state written, no table or row changed anywhere, nothing locked or claimed."""
    setup = workflow.setup

    def databases():
        return {server: fingerprint(workflow.servers[server], database)
                for server, database in (("target", setup.target_db), ("migration", setup.migration_db))}

    before = databases()
    ok(run_job(workflow.job("prepare-check", "wfu.multisite.env_migrate_prepare", workflow_job_id=910, check=True,
                            extravars={"source_env": "dev", "target_env": "uat"})))
    assert databases() == before  # not even the state's tables

    prepared = ok(run_job(workflow.job("prepare", "wfu.multisite.env_migrate_prepare", workflow_job_id=911,
                                       extravars={"source_env": "dev", "target_env": "uat"})))
    migration_id = stats_of(prepared)["wfu_migration_id"]
    state, before = workflow.state(), databases()
    checked = ok(run_job(workflow.job("sites-check", "wfu.multisite.env_migrate_sites", workflow_job_id=911,
                                      check=True, inventory=workflow.sites_inventory,
                                      extravars={"wfu_migration_id": migration_id})))
    ok(run_job(workflow.job("finish-check", "wfu.multisite.env_migrate_finish", workflow_job_id=911, check=True,
                            extravars={"wfu_migration_id": migration_id})))
    assert databases() == before
    assert workflow.state() == state
    assert setup.sites_in_target() == []
    # Each worker looked at its site and said what it would do, the site untouched.
    assert migrated_hosts(checked) == []
    for site_id in range(1, SITES + 1):
        assert "Check mode: nothing was changed. Site %d would be migrated by this worker" % site_id in checked.stdout
