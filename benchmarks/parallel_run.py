"""Many small sites at parallel 1, 2 and 4 on one controller, and as two slices of a workflow.

Starts three throwaway servers, generates a network of N small sites (default 200, subdirectory layout) once,
and migrates it four times into a fresh target and migration database:

* ``env_migrate -e parallel=1`` (the single-command loop, files backend);
* ``env_migrate -e parallel=2 -f 2`` and ``-e parallel=4 -f 4`` (sites as hosts, claiming their sites);
* the AWX workflow by hand on the database backend: ``env_migrate_prepare``, two ``env_migrate_sites`` at once
  over half of the sites each (as AWX's job slicing cuts an inventory of the sites' hosts, one site at a time per
  slice), ``env_migrate_finish``.

For each it prints the wall time of the whole run and of its sites (first site started to last site finished,
from the state), the sites per second and the speed-up over parallel 1.

Run: ``.venv/bin/python -m benchmarks.parallel_run [--sites 200]``.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, ".venv", "collections")):
    if path not in sys.path:
        sys.path.insert(0, path)

import pymysql  # noqa: E402

from tools.mariadb_servers import ServerSet  # noqa: E402
from tools.wpnetwork import NetworkSpec, load_network  # noqa: E402

PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")
WORKFLOW_JOB = "77"


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Bench:
    def __init__(self, servers, work, sites):
        self.servers = servers
        self.work = work
        self.sites = sites
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".venv", "collections"),
                        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")

    def fresh(self, name):
        """A new target and migration database and a new directory with the inventory of a run."""
        directory = os.path.join(self.work, name)
        os.makedirs(os.path.join(directory, "group_vars"))
        for server, database in ((self.servers["target"], "wp_uat"), (self.servers["migration"], "wp_migration")):
            with server.connect() as conn, conn.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS `%s`" % database)
                cur.execute("CREATE DATABASE `%s`" % database)
        settings = {"wfu_environments": {
            "dev": {"url": "https://dev.example.edu", "db": self.servers["source"].connection("wp_dev")},
            "uat": {"url": "https://uat.example.edu", "db": self.servers["target"].connection("wp_uat")}},
            "wfu_migration_db": self.servers["migration"].connection("wp_migration"),
            "wfu_state_dir": os.path.join(directory, "state"), "ansible_python_interpreter": PYTHON}
        with open(os.path.join(directory, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
            json.dump(settings, handle)
        with open(os.path.join(directory, "hosts.yml"), "w", encoding="utf-8") as handle:
            json.dump({"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}, handle)
        return directory

    def playbook(self, directory, inventory, playbook, *args, log="playbook.log"):
        with open(os.path.join(directory, log), "w", encoding="utf-8") as out:
            return subprocess.run([PLAYBOOK, "-i", inventory, playbook] + list(args), cwd=directory, env=self.env,
                                  stdout=out, stderr=subprocess.STDOUT, check=False).returncode

    def sites_inventory(self, directory, number, count):
        """The hosts of slice ``number`` of ``count`` (every count-th site, as AWX slices), in the plugin's shape."""
        hosts = {"site-%d" % site_id: {"wfu_site_id": site_id, "ansible_connection": "local"}
                 for site_id in range(1, self.sites + 1)}
        chosen = sorted(hosts)[number - 1::count]
        path = os.path.join(directory, "slice-%d.yml" % number)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"all": {"children": {"wfu_sites": {"hosts": {name: hosts[name] for name in chosen}}}}},
                      handle)
        # group_vars next to the inventory file apply to it too.
        return path

    def state_db(self):
        conn = pymysql.connect(**dict(self.servers["migration"].connection("wp_migration")))
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT state FROM wfu_state_migrations")
                return json.loads(cur.fetchone()[0])
        finally:
            conn.close()

    def state_files(self, directory):
        state_dir = os.path.join(directory, "state")
        migration = sorted(d for d in os.listdir(state_dir) if d.startswith("dev-to-uat"))[-1]
        with open(os.path.join(state_dir, migration, "state.json"), encoding="utf-8") as handle:
            return json.load(handle)

    def parallel(self, n):
        directory = self.fresh("parallel-%d" % n)
        started = time.monotonic()
        rc = self.playbook(directory, os.path.join(directory, "hosts.yml"), "wfu.multisite.env_migrate",
                           "-e", "source_env=dev", "-e", "target_env=uat", "-e", "parallel=%d" % n, "-f", str(max(n, 5)))
        return rc, time.monotonic() - started, self.state_files(directory), directory

    def slices(self, count):
        directory = self.fresh("slices-%d" % count)
        common = ["-e", "wfu_state_backend=database", "-e", "awx_workflow_job_id=%s" % WORKFLOW_JOB]
        started = time.monotonic()
        rc = self.playbook(directory, os.path.join(directory, "hosts.yml"), "wfu.multisite.env_migrate_prepare",
                           "-e", "source_env=dev", "-e", "target_env=uat", *common, log="prepare.log")
        migration_id = self.state_db()["id"] if rc == 0 else None
        codes = []
        if migration_id:
            def one(number):
                codes.append(self.playbook(directory, self.sites_inventory(directory, number, count),
                                           "wfu.multisite.env_migrate_sites", "-e", "wfu_migration_id=%s" % migration_id,
                                           *common, log="sites-%d.log" % number))
            threads = [threading.Thread(target=one, args=(number,)) for number in range(1, count + 1)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rc = max(codes) or self.playbook(directory, os.path.join(directory, "hosts.yml"),
                                             "wfu.multisite.env_migrate_finish", "-e",
                                             "wfu_migration_id=%s" % migration_id, *common, log="finish.log")
        return rc, time.monotonic() - started, self.state_db(), directory


def sites_wall(state):
    sites = [record for record in state["sites"].values() if record.get("status") == "completed"]
    return len(sites), max(parse_time(s["finished"]) for s in sites) - min(parse_time(s["started"]) for s in sites)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=200)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="wfu-bench-parallel-")
    with ServerSet(("source", "target", "migration")) as servers:
        spec = NetworkSpec(url="https://dev.example.edu", subdomain=False, sites=args.sites, seed=5, posts_per_site=2)
        summary = load_network(servers["source"].connection(), "wp_dev", spec)
        print("network: %d sites, %.1f MB; runs in %s" % (len(summary["sites"]), summary["bytes"] / 1e6, work),
              flush=True)
        bench = Bench(servers, work, len(summary["sites"]))
        base = None
        for label, run in (("parallel 1", lambda: bench.parallel(1)), ("parallel 2", lambda: bench.parallel(2)),
                           ("parallel 4", lambda: bench.parallel(4)), ("2 slices", lambda: bench.slices(2))):
            rc, wall, state, directory = run()
            done, loop = sites_wall(state)
            base = base or loop
            print("%-10s rc=%d status=%s: %d sites; run %.1f s, sites %.1f s (%.3f s per site, %.1f sites/s), "
                  "speed-up %.2f (logs: %s)" % (label, rc, state["status"], done, wall, loop, loop / done, done / loop,
                                                base / loop, directory), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
