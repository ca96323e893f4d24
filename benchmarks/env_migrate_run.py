"""A whole env_migrate run over many small sites: wall time and orchestration overhead per site.

Starts three throwaway servers, generates a network of N small sites (default
555, subdirectory layout), runs ``ansible-playbook wfu.multisite.env_migrate``
and reads the migration state afterwards.  It prints:

* the wall time of the playbook and of the site loop (first site started to last site finished);
* the time spent inside the pipeline phases of ``wfu_site_migrate`` (copy, replace, stage, ...);
* the orchestration overhead per site: site-loop wall time minus pipeline phase time, divided by the sites.
  That is everything that is not moving data: Ansible's task handling, the module's start-up (AnsiballZ,
  imports, connections), the state updates per site;
* the same overhead as a ratio to one bare ``include_tasks`` + ``ansible.builtin.ping`` loop item, measured in
  the same run (the floor of any per-item role work).

Run: ``.venv/bin/python -m benchmarks.env_migrate_run [--sites 555] [--subdomain]``; with ``WFU_BENCH_LOG=1`` the
playbook also writes ``ansible-timed.log`` (Ansible's log, a timestamp per task line) in the work directory.
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, ".venv", "collections")):
    if path not in sys.path:
        sys.path.insert(0, path)

import yaml  # noqa: E402

from tools.mariadb_servers import ServerSet  # noqa: E402
from tools.wpnetwork import NetworkSpec, load_network  # noqa: E402


def parse_time(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=555)
    parser.add_argument("--posts", type=int, default=2)
    parser.add_argument("--subdomain", action="store_true")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="wfu-bench-run-")
    with ServerSet(("source", "target", "migration")) as servers:
        started = time.monotonic()
        spec = NetworkSpec(url="https://dev.example.edu", subdomain=args.subdomain, sites=args.sites, seed=3,
                           posts_per_site=args.posts)
        summary = load_network(servers["source"].connection(), "wp_dev", spec)
        print("network: %d sites, %.1f MB, loaded in %.0f s" % (len(summary["sites"]), summary["bytes"] / 1e6,
                                                                time.monotonic() - started), flush=True)
        for server, database in ((servers["target"], "wp_uat"), (servers["migration"], "wp_migration")):
            with server.connect() as conn, conn.cursor() as cur:
                cur.execute("CREATE DATABASE `%s`" % database)
        os.makedirs(os.path.join(work, "group_vars"))
        with open(os.path.join(work, "hosts.yml"), "w", encoding="utf-8") as handle:
            handle.write("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                         "      ansible_python_interpreter: %s\n" % os.path.join(ROOT, ".venv", "bin", "python"))
        group_vars = {"wfu_environments": {
            "dev": {"url": "https://dev.example.edu", "db": servers["source"].connection("wp_dev")},
            "uat": {"url": "https://uat.example.edu", "db": servers["target"].connection("wp_uat")}},
            "wfu_migration_db": servers["migration"].connection("wp_migration"),
            "wfu_state_dir": os.path.join(work, "state")}
        with open(os.path.join(work, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
            yaml.safe_dump(group_vars, handle)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".venv", "collections"))
        if os.environ.get("WFU_BENCH_LOG"):
            env["ANSIBLE_LOG_PATH"] = os.path.join(work, "ansible-timed.log")
        started = time.monotonic()
        with open(os.path.join(work, "playbook.log"), "w", encoding="utf-8") as log:
            rc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i",
                                 os.path.join(work, "hosts.yml"), "wfu.multisite.env_migrate", "-e", "source_env=dev",
                                 "-e", "target_env=uat"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                check=False).returncode
        wall = time.monotonic() - started
    state_dir = os.path.join(work, "state")
    migration = sorted(d for d in os.listdir(state_dir) if d.startswith("dev-to-uat"))[-1]
    with open(os.path.join(state_dir, migration, "state.json"), encoding="utf-8") as handle:
        state = json.load(handle)
    sites = [s for s in state["sites"].values() if s.get("status") == "completed"]
    first = min(parse_time(s["started"]) for s in sites)
    last = max(parse_time(s["finished"]) for s in sites)
    loop = last - first
    phases = sum(pipeline_wall(s.get("result") or {}) for s in sites)
    print("playbook rc=%d, wall %.1f s (log: %s/playbook.log)" % (rc, wall, work))
    print("sites completed: %d of %d" % (len(sites), len(state["sites"])))
    print("site loop: %.1f s, %.3f s per site" % (loop, loop / len(sites)))
    print("pipeline (its own wall time, overlapping steps once): %.1f s, %.3f s per site" % (phases, phases / len(sites)))
    overhead = (loop - phases) / len(sites)
    print("orchestration overhead per site: %.3f s (site loop minus the pipeline's wall time)" % overhead)
    bare = bare_item_seconds(work, env, len(sites))
    print("one bare include_tasks + ansible.builtin.ping item: %.3f s" % bare)
    print("site-loop overhead / bare item: %.2f" % (overhead / bare))
    return rc


OVERLAPPING = ("copy", "replace", "stage")


def pipeline_wall(result):
    """The pipeline's own wall time for one site: its phases one after the other, except copy, replace and stage,
    which overlap table by table (their durations are summed over the tables), counted by their wall time."""
    durations = result.get("durations") or {}
    overlap = result.get("overlap_seconds")
    if overlap is None:
        return sum(durations.values())
    return sum(seconds for phase, seconds in durations.items() if phase not in OVERLAPPING) + overlap


BARE_PLAY = """- name: The bare loop
  hosts: localhost
  gather_facts: false
  tasks:
    - name: One include per item
      ansible.builtin.include_tasks: ping.yml
      loop: "{{ range(items | int) | list }}"
"""


def bare_item_seconds(work, env, items):
    """Seconds per item of a loop of ``include_tasks`` whose file holds one ``ansible.builtin.ping``: what any
    role pays per item, as the floor the site loop is compared with (the difference of a run of ``items`` items
    and a run of one, so the playbook's start-up is left out)."""
    with open(os.path.join(work, "bare.yml"), "w", encoding="utf-8") as handle:
        handle.write(BARE_PLAY)
    with open(os.path.join(work, "ping.yml"), "w", encoding="utf-8") as handle:
        handle.write("- name: Ping\n  ansible.builtin.ping:\n")
    walls = {}
    for count in (1, items):
        started = time.monotonic()
        subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", os.path.join(work, "hosts.yml"),
                        os.path.join(work, "bare.yml"), "-e", "items=%d" % count], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        walls[count] = time.monotonic() - started
    return (walls[items] - walls[1]) / max(1, items - 1)


if __name__ == "__main__":
    sys.exit(main())
