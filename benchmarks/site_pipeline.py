"""The whole per-site pipeline against a raw one-hop ``mariadb-dump | mariadb`` copy of the same tables.

Starts its own three servers, generates a network whose site 2 holds about
``--mb`` MB (site 3 stays small), then measures in the same run:

(a) raw: ``bash -o pipefail -c 'mariadb-dump … | mariadb …'`` of site 2's tables, source → a scratch
    database on the target server (passwords in option files, as the pipeline does it);
(b) playbook: ``ansible-playbook wfu.multisite.migrate_site -e site_id=…`` for the small and the large site,
    with the peak RSS (VmHWM) of every process under ansible-playbook, polled from /proc;
(c) SiteMigration called directly (in a fresh Python process, so its peak RSS is its own);
(d) the playbook again for the large site with the migration database on the target's server, where the
    staging hop is a cross-database ``RENAME TABLE`` (no copy at all).

Goal: (b) ≤ 2 × (a) for the large site, and memory flat in site size.
Run: ``.venv/bin/python -m benchmarks.site_pipeline [--mb 150]`` (not a test; a few minutes at 150 MB).
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, ".venv", "collections")):
    if path not in sys.path:
        sys.path.insert(0, path)

from ansible_collections.wfu.multisite.plugins.module_utils.db import Database  # noqa: E402
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint, SiteMigration  # noqa: E402
from tests.integration.helpers import (ANSIBLE_PLAYBOOK, PeakMemory, create_database, environment,  # noqa: E402
                                       playbook_env, query, write_inventory)
from tools.mariadb_servers import ServerSet  # noqa: E402
from tools.wpnetwork import NetworkSpec, load_network, site_table_names  # noqa: E402

DEV = "https://dev.example.edu"
UAT = "https://uat.example.edu"
LARGE_SITE, SMALL_SITE = 2, 3
PHASES = ("prepare", "clean", "copy", "replace", "stage", "verify", "backup", "swap", "cleanup")


def site_bytes(server, database, tables):
    query(server, database, "ANALYZE TABLE " + ", ".join("`%s`" % t for t in tables))
    rows = query(server, None, "SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE "
                               "TABLE_SCHEMA = %%s AND TABLE_NAME IN (%s)" % ", ".join(["%s"] * len(tables)),
                 [database] + list(tables))
    return int(rows[0][0])


def raw_copy(source, source_db, tables, target, scratch_db):
    """One hop, the plain way: dump piped into the client, both reading their password from an option file."""
    query(target, None, "DROP DATABASE IF EXISTS `%s`" % scratch_db)
    query(target, None, "CREATE DATABASE `%s` CHARACTER SET utf8mb4" % scratch_db)
    with Database.from_params(source.connection()).client_options() as (source_options, source_fd), \
            Database.from_params(target.connection()).client_options() as (target_options, target_fd):
        script = ('mariadb-dump "$1" --single-transaction --quick --skip-lock-tables '
                  '--no-tablespaces --hex-blob --default-character-set=utf8mb4 --max-allowed-packet=1G "$3" '
                  '"${@:5}" | mariadb "$2" --binary-mode --max-allowed-packet=1G '
                  '--default-character-set=utf8mb4 "$4"')
        started = time.monotonic()
        subprocess.run(["bash", "-o", "pipefail", "-c", script, "raw", source_options, target_options, source_db,
                        scratch_db] + list(tables), check=True, pass_fds=(source_fd, target_fd))
        seconds = time.monotonic() - started
    query(target, None, "DROP DATABASE `%s`" % scratch_db)
    return seconds


def module_result(output):
    """The registered result of the migrate task, from ansible-playbook -v output (default callback, JSON)."""
    marker = "changed: [localhost] => "
    start = output.index(marker) + len(marker)
    return json.JSONDecoder().raw_decode(output[start:])[0]


def playbook_run(inventory, site_id):
    argv = [ANSIBLE_PLAYBOOK, "wfu.multisite.migrate_site", "-i", inventory, "-v", "-e", "site_id=%d" % site_id,
            "-e", "source_env=dev", "-e", "target_env=uat"]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=os.path.dirname(inventory), env=playbook_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with PeakMemory(proc.pid) as memory:
        output = proc.communicate()[0]
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n" + output[-4000:])
    result = module_result(output)
    return {"seconds": seconds, "durations": result["durations"], "bytes": result["bytes"],
            "overlap": result.get("overlap") or {}, "peak_kb": memory.peak_kb}


def in_process_run(config_path):
    """Run SiteMigration as told by ``config_path`` and print seconds, durations and peak RSS as JSON."""
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    started = time.monotonic()
    result = SiteMigration(config["site_id"], Endpoint(config["source"]), Endpoint(config["target"]),
                           config["migration_db"]).run()
    print(json.dumps({"seconds": time.monotonic() - started, "durations": result["durations"],
                      "overlap": result.get("overlap") or {},
                      "self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))


def direct_run(work, source, target, migration_db, site_id):
    config_path = os.path.join(work, "direct-%d.json" % site_id)
    descriptor = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump({"site_id": site_id, "source": source, "target": target, "migration_db": migration_db}, handle)
    done = subprocess.run([sys.executable, "-m", "benchmarks.site_pipeline", "--in-process", config_path], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mb(value):
    return value / 1e6


def report(mb_source, raw_seconds, runs):
    print("\nsite %d: %.1f MB of tables (data + indexes); raw one-hop copy %s s (best %.2f s, %.1f MB/s)"
          % (LARGE_SITE, _mb(mb_source), ", ".join("%.2f" % s for s in raw_seconds), min(raw_seconds),
             _mb(mb_source) / min(raw_seconds)))
    print("%-28s %9s %9s %9s  %s" % ("run", "seconds", "MB/s", "x raw", "phases (s)"))
    for label, run in runs:
        size = run.get("size", mb_source)
        ratio = "%.2f" % (run["seconds"] / min(raw_seconds)) if run.get("large") else "-"
        phases = " ".join("%s=%.2f" % (name, run["durations"][name]) for name in PHASES if name in run["durations"])
        if run.get("overlap", {}).get("seconds") is not None:
            phases += " | copy+replace+stage wall=%.2f" % run["overlap"]["seconds"]
        print("%-28s %9.2f %9.1f %9s  %s" % (label, run["seconds"], _mb(size) / run["seconds"], ratio, phases))
    print("\nper table, large site (s; the steps of different tables overlap)")
    for label, run in runs:
        tables = run.get("overlap", {}).get("tables") or {}
        if not run.get("large") or not tables:
            continue
        print("  %s" % label)
        for table, steps in sorted(tables.items(), key=lambda item: -sum(item[1].values())):
            parts = ["%s=%.2f" % (step, steps[step]) for step in ("copy", "replace", "stage") if step in steps]
            print("    %-34s %s" % (table, " ".join(parts)))
    print("\npeak RSS (VmHWM, MB)")
    for label, run in runs:
        if "peak_kb" in run:
            parts = ", ".join("%s %.0f" % (name, kb / 1024) for name, kb in sorted(run["peak_kb"].items())
                              if name.startswith(("module", "mariadb", "python ansible-playbook")))
            print("  %-26s %s" % (label, parts))
        else:
            print("  %-26s SiteMigration process %.0f, largest child %.0f"
                  % (label, run["self_kb"] / 1024, run["children_kb"] / 1024))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=150, help="size of the large site in MB (default 150)")
    parser.add_argument("--in-process", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.in_process:
        in_process_run(args.in_process)
        return 0

    with ServerSet(buffer_pool="256M") as servers, tempfile.TemporaryDirectory(prefix="wfu-bench-") as work:
        src, tgt, mig = servers["source"], servers["target"], servers["migration"]
        spec = NetworkSpec(url=DEV, sites=3, posts_per_site=10, large_sites={LARGE_SITE: int(args.mb * 1e6)})
        started = time.monotonic()
        loaded = load_network(src.connection(), "wp_dev", spec)
        print("generated the network: %.0f MB of SQL in %.1f s" % (_mb(loaded["bytes"]), time.monotonic() - started))
        load_network(tgt.connection(), "wp_uat", NetworkSpec(url=UAT, sites=3, posts_per_site=2, seed=2))
        create_database(mig, "wp_migration")
        large_tables = site_table_names("wp_", LARGE_SITE)
        large_bytes = site_bytes(src, "wp_dev", large_tables)
        small_bytes = site_bytes(src, "wp_dev", site_table_names("wp_", SMALL_SITE))

        source = environment("dev", DEV, src, "wp_dev")
        target = environment("uat", UAT, tgt, "wp_uat")
        inventory = write_inventory(os.path.join(work, "inventory"),
                                    {"dev": {"url": DEV, "db": src.connection("wp_dev")},
                                     "uat": {"url": UAT, "db": tgt.connection("wp_uat")}},
                                    mig.connection("wp_migration"))
        raw_seconds = [raw_copy(src, "wp_dev", large_tables, tgt, "raw_copy")]
        print("raw one-hop copy: %.2f s" % raw_seconds[0], flush=True)
        runs = []
        for label, site_id in (("playbook, small site", SMALL_SITE), ("playbook, large site", LARGE_SITE)):
            run = playbook_run(inventory, site_id)
            runs.append((label, dict(run, size=small_bytes if site_id == SMALL_SITE else large_bytes,
                                     large=site_id == LARGE_SITE)))
            print("%s: %.2f s %s" % (label, run["seconds"], run["durations"]), flush=True)
        for label, site_id in (("SiteMigration, small site", SMALL_SITE), ("SiteMigration, large site", LARGE_SITE)):
            run = direct_run(work, source, target, mig.connection("wp_migration"), site_id)
            runs.append((label, dict(run, size=small_bytes if site_id == SMALL_SITE else large_bytes,
                                     large=site_id == LARGE_SITE)))
            print("%s: %.2f s %s" % (label, run["seconds"], run["durations"]), flush=True)
        create_database(tgt, "wp_migration")
        beside_target = write_inventory(os.path.join(work, "inventory-beside-target"),
                                        {"dev": {"url": DEV, "db": src.connection("wp_dev")},
                                         "uat": {"url": UAT, "db": tgt.connection("wp_uat")}},
                                        tgt.connection("wp_migration"))
        run = playbook_run(beside_target, LARGE_SITE)
        runs.append(("playbook, large, mig@target", dict(run, size=large_bytes, large=True)))
        print("playbook, large site, migration DB on the target server: %.2f s %s" % (run["seconds"], run["durations"]),
              flush=True)
        raw_seconds.append(raw_copy(src, "wp_dev", large_tables, tgt, "raw_copy"))
        report(large_bytes, raw_seconds, runs)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
