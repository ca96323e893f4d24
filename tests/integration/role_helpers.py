"""A WordPress network to migrate with the env_migrate role, and ways to watch and judge a run.

``MigrationSetup`` loads a generated network into a source database, creates an empty target
database and a migration database, and writes an inventory whose group_vars describe them
(environments ``dev`` → ``uat``).  Runs go through the real ``ansible-playbook
wfu.multisite.env_migrate``; the verdicts read the databases and the state files directly, never
through the collection's own code paths.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time

from helpers import (ANSIBLE_PLAYBOOK, addresses, create_database, drop_database, playbook_env, query,
                     row_counts, table_names, write_inventory)

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import quote_identifier
from tools.wpnetwork import load_network

SOURCE_URL = "https://dev.example.edu"
TARGET_URL = "https://uat.example.edu"
STRAY_MARKS = (tbl.STAGE_MARK, tbl.OLD_MARK)


class MigrationSetup:
    """Source network, empty target, migration database and inventory for one test."""

    def __init__(self, servers, directory, spec, extra_settings=None):
        self.servers = servers
        self.directory = str(directory)
        self.spec = spec
        self.source = servers["source"]
        self.target = servers["target"]
        self.migration = servers["migration"]
        self.source_db = create_database(self.source, prefix="dev")
        load_network(self.source.connection(), self.source_db, spec)
        self.target_db = create_database(self.target, prefix="uat")
        self.migration_db = create_database(self.migration, prefix="mig")
        environments = {
            "dev": {"url": SOURCE_URL, "db": self.source.connection(self.source_db)},
            "uat": {"url": TARGET_URL, "db": self.target.connection(self.target_db)},
        }
        self.inventory = write_inventory(self.directory, environments, self.migration.connection(self.migration_db),
                                         **(extra_settings or {}))
        self.state_dir = os.path.join(self.directory, "state")
        # Module files land here, so a process of this setup's run is told apart from any other run's.
        self.module_tmp = os.path.join(self.directory, "ansible-tmp")
        self.expected_urls = {site_id: url for site_id, (_domain, _path, url) in addresses(TARGET_URL, spec).items()}

    def drop(self):
        for server, database in ((self.source, self.source_db), (self.target, self.target_db),
                                 (self.migration, self.migration_db)):
            with contextlib.suppress(Exception):
                drop_database(server, database)

    # -- running the playbook ---------------------------------------------------------------------------------------
    def argv(self, extra_vars, *args):
        argv = [ANSIBLE_PLAYBOOK, "wfu.multisite.env_migrate", "-i", self.inventory]
        for key, value in extra_vars.items():
            argv += ["-e", json.dumps({key: value})]
        return argv + list(args)

    def env(self):
        env = playbook_env()
        env.update(ANSIBLE_REMOTE_TMP=self.module_tmp, ANSIBLE_LOCAL_TEMP=os.path.join(self.directory, "local-tmp"),
                   ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_FORCE_COLOR="0")
        return env

    def run(self, *args, timeout=600, **extra_vars):
        """Run env_migrate to its end; the CompletedProcess has stdout and stderr merged."""
        return subprocess.run(self.argv(extra_vars, *args), cwd=self.directory, env=self.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)

    def start(self, *args, **extra_vars):
        """Start env_migrate in its own session (process group), output to a file; returns the Popen."""
        log = open(os.path.join(self.directory, "run-%d.log" % time.monotonic_ns()), "w+", encoding="utf-8")
        proc = subprocess.Popen(self.argv(extra_vars, *args), cwd=self.directory, env=self.env(), stdout=log,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        proc.log = log
        return proc

    # -- the state files --------------------------------------------------------------------------------------------
    def migration_ids(self):
        """The migrations in the state directory, oldest first (ids start with the UTC time)."""
        if not os.path.isdir(self.state_dir):
            return []
        return sorted(name for name in os.listdir(self.state_dir)
                      if os.path.exists(os.path.join(self.state_dir, name, "state.json")))

    def state(self, migration_id=None):
        """state.json of a migration (default: the only one); None while it does not exist."""
        if migration_id is None:
            ids = self.migration_ids()
            if not ids:
                return None
            assert len(ids) == 1, "expected one migration, found %s" % ids
            migration_id = ids[0]
        path = os.path.join(self.state_dir, migration_id, "state.json")
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def site_log(self, migration_id, site_id):
        path = os.path.join(self.state_dir, migration_id, "logs", "site-%d.log" % site_id)
        with open(path, encoding="utf-8") as handle:
            return handle.read()

    def lock_files(self):
        folder = os.path.join(self.state_dir, "locks")
        if not os.path.isdir(folder):
            return {}
        found = {}
        for name in os.listdir(folder):
            if name.endswith(".lock"):
                with open(os.path.join(folder, name), encoding="utf-8") as handle:
                    found[name] = json.load(handle)
        return found

    # -- the databases ----------------------------------------------------------------------------------------------
    def migration_tables(self):
        return table_names(self.migration, self.migration_db)

    def target_tables(self):
        return table_names(self.target, self.target_db)

    def stray_target_tables(self):
        return [name for name in self.target_tables() if name.startswith(STRAY_MARKS)]

    def create_stray_table(self, server_name, name):
        server = self.servers[server_name]
        database = {"migration": self.migration_db, "target": self.target_db}[server_name]
        query(server, database, "CREATE TABLE %s (id INT PRIMARY KEY, note TEXT)" % quote_identifier(name))
        query(server, database, "INSERT INTO %s VALUES (1, 'left by an earlier run')" % quote_identifier(name))

    def create_times(self, site_id):
        """``{table: CREATE_TIME}`` of a site's tables in the target (a table migrated again is created anew)."""
        rows = query(self.target, None, "SELECT TABLE_NAME, CREATE_TIME FROM information_schema.TABLES "
                                        "WHERE TABLE_SCHEMA = %s", (self.target_db,))
        return {name: created for name, created in rows if tbl.owner_of(name, self.spec.prefix) == site_id}

    def site_problems(self, site_id):
        """What is wrong with one site in the target: missing tables, row counts, siteurl/home; [] when correct."""
        problems = []
        source_tables = tbl.site_tables(table_names(self.source, self.source_db), self.spec.prefix, site_id)
        target_tables = tbl.site_tables(self.target_tables(), self.spec.prefix, site_id)
        if source_tables != target_tables:
            return ["site %d: tables %s in the source but %s in the target" % (site_id, source_tables, target_tables)]
        source_rows = row_counts(self.source, self.source_db, source_tables)
        target_rows = row_counts(self.target, self.target_db, target_tables)
        if source_rows != target_rows:
            problems.append("site %d: rows %s in the source, %s in the target" % (site_id, source_rows, target_rows))
        options = tbl.site_table_prefix(self.spec.prefix, site_id) + "options"
        urls = dict(query(self.target, self.target_db, "SELECT option_name, option_value FROM %s WHERE option_name IN "
                                                       "('siteurl', 'home')" % quote_identifier(options)))
        want = self.expected_urls[site_id]
        for name in ("siteurl", "home"):
            if (urls.get(name) or "").rstrip("/") != want:
                problems.append("site %d: %s is %r, expected %r" % (site_id, name, urls.get(name), want))
        return problems

    def sites_in_target(self):
        return sorted({owner for owner in (tbl.owner_of(name, self.spec.prefix) for name in self.target_tables())
                       if isinstance(owner, int)})


# -- watching a run from the outside ---------------------------------------------------------------------------------

def wait_for(condition, timeout, what, interval=0.05, proc=None):
    """Poll ``condition()`` until it returns something true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError("the run ended (rc %s) before %s:\n%s" % (proc.returncode, what, output_of(proc)))
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def output_of(proc, tail=8000):
    proc.log.flush()
    proc.log.seek(0)
    return proc.log.read()[-tail:]


def sites_with_status(state, status):
    if not state:
        return []
    return sorted(int(site_id) for site_id, record in state["sites"].items() if record["status"] == status)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def _read_proc(pid, name):
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def module_processes(module, under):
    """pids of the processes running ``module`` for a run whose module files go under the directory ``under``.

    That is the Python process of the module's AnsiballZ file, or, for a module whose action plugin runs it on the
    controller in a forked child (wfu_site_migrate), that child: it names itself after the module (its
    ``/proc/<pid>/comm``, 15 bytes at most) and carries the run's environment (``ANSIBLE_REMOTE_TMP=under``).
    """
    marker = ("AnsiballZ_%s.py" % module).encode()
    child_name = module.encode()[:15]
    run_env = b"ANSIBLE_REMOTE_TMP=" + under.encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            argv = _cmdline(pid)
            if any(part.endswith(marker) and part.startswith(under.encode()) for part in argv):
                found.append(pid)
            elif (_read_proc(pid, "comm").strip() == child_name
                  and run_env in _read_proc(pid, "environ").split(b"\0")):
                found.append(pid)
    return found


class SiteKiller(threading.Thread):
    """Kills the wfu_site_migrate process of one site with SIGKILL, as the OOM killer would.

    It waits until the state shows the site in progress, its work tables have appeared in the
    migration database (the copy is under way) and its module process is found, then kills that
    process.  ``killed`` is the pid; ``tables_at_kill`` the work tables there were.
    """

    def __init__(self, setup, site_id, timeout=300):
        super().__init__(name="site-killer", daemon=True)
        self.setup = setup
        self.site_id = site_id
        self.timeout = timeout
        self.killed = None
        self.tables_at_kill = []
        self.error = None
        self._finish = threading.Event()

    def stop(self):
        self._finish.set()
        self.join()

    def run(self):
        work = re.compile(r"^m%d__" % self.site_id)
        deadline = time.monotonic() + self.timeout
        try:
            while not self._finish.is_set() and time.monotonic() < deadline:
                if self.site_id in sites_with_status(self.setup.state(), "in_progress"):
                    tables = [t for t in self.setup.migration_tables() if work.match(t)]
                    pids = module_processes("wfu_site_migrate", self.setup.module_tmp)
                    if tables and len(pids) == 1:
                        os.kill(pids[0], signal.SIGKILL)
                        self.killed, self.tables_at_kill = pids[0], tables
                        return
                time.sleep(0.01)
        except Exception as exc:  # reported by the test, which cannot see this thread's exceptions
            self.error = exc
