"""Throughput of the copy engine's methods against a plain ``mariadb-dump | mariadb`` shell pipeline.

Starts two throwaway servers, fills a WordPress-like database (posts with long
text, many small postmeta rows; about 100 MB of data and indexes), then copies
it several ways and prints MB/s of source size (information_schema data +
index length).  Run: ``.venv/bin/python -m benchmarks.copy_engine [--rows-scale N] [--repeat N]``.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, ".venv", "collections")):
    if path not in sys.path:
        sys.path.insert(0, path)

from ansible_collections.wfu.multisite.plugins.module_utils import copy_engine  # noqa: E402
from ansible_collections.wfu.multisite.plugins.module_utils.db import Database  # noqa: E402
from tools.mariadb_servers import ServerSet  # noqa: E402

TABLES = ["wp_posts", "wp_postmeta"]


def fill(server, scale):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE bench")
        cur.execute("USE bench")
        cur.execute(
            "CREATE TABLE wp_posts (ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, post_author bigint "
            "unsigned NOT NULL DEFAULT 0, post_date datetime NOT NULL DEFAULT '0000-00-00 00:00:00', post_content "
            "longtext NOT NULL, post_title text NOT NULL, post_status varchar(20) NOT NULL DEFAULT 'publish', guid "
            "varchar(255) NOT NULL DEFAULT '', KEY type_status_date (post_status, post_date)) "
            "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci")
        cur.execute(
            "INSERT INTO wp_posts (post_author, post_date, post_content, post_title, guid) SELECT seq MOD 7, "
            "NOW() - INTERVAL seq MINUTE, REPEAT(CONCAT('Lorem ipsum dolor sit amet, ', MD5(seq), ' héllo wörld ✓ 😀 "
            "https://dev.example.edu/x/', seq, ' '), 30), CONCAT('Title ', seq), "
            "CONCAT('https://dev.example.edu/?p=', seq) FROM seq_1_to_%d" % (20000 * scale))
        cur.execute(
            "CREATE TABLE wp_postmeta (meta_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, post_id bigint "
            "unsigned NOT NULL DEFAULT 0, meta_key varchar(255) DEFAULT NULL, meta_value longtext, KEY post_id "
            "(post_id), KEY meta_key (meta_key(191))) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci")
        cur.execute(
            "INSERT INTO wp_postmeta (post_id, meta_key, meta_value) SELECT seq DIV 15, CONCAT('_meta_', seq MOD 20), "
            "CONCAT('a:2:{s:3:\"url\";s:30:\"https://dev.example.edu/', LPAD(seq, 6, '0'), '\";s:1:\"n\";i:', seq, "
            "';}') FROM seq_1_to_%d" % (300000 * scale))
        cur.execute("ANALYZE TABLE wp_posts, wp_postmeta")
        cur.fetchall()
        cur.execute("SELECT SUM(DATA_LENGTH + INDEX_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'bench'")
        return int(cur.fetchone()[0])


def recreate(server, database):
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS `%s`" % database)
        cur.execute("CREATE DATABASE `%s`" % database)


def shell_pipeline(servers):
    """The baseline: the same flags, joined by bash with pipefail, no Python in the stream."""
    dump_path, client_path = copy_engine.client_tools()
    with Database.from_params(servers["source"].connection()).client_options() as source_options, \
            Database.from_params(servers["target"].connection()).client_options() as dest_options:
        dump = copy_engine.dump_command(dump_path, source_options, "bench", TABLES)
        load = copy_engine.load_command(client_path, dest_options, "copy")
        subprocess.run(["bash", "-c", "set -o pipefail; %s | %s" % (" ".join(dump.argv), " ".join(load.argv))],
                       check=True, pass_fds=dump.fds + load.fds)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-scale", type=int, default=1, help="multiply the row counts (1 = ~100 MB)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with ServerSet(("source", "target")) as servers:
        size = fill(servers["source"], args.rows_scale)
        source = Database.from_params(servers["source"].connection("bench"))
        target = Database.from_params(servers["target"].connection("copy"))
        into_source = source.on("copy")
        runs = {
            "mariadb-dump | mariadb (bash)": (servers["target"], lambda: shell_pipeline(servers)),
            "copy_tables dump": (servers["target"], lambda: copy_engine.copy_tables(
                source, TABLES, target, method="dump")),
            "copy_tables dump + rename": (servers["target"], lambda: copy_engine.copy_tables(
                source, TABLES, target, rename={t: "stage_" + t for t in TABLES}, method="dump")),
            "copy_tables insert_select": (servers["source"], lambda: copy_engine.copy_tables(
                source, TABLES, into_source, method="insert_select")),
            "copy_tables pymysql": (servers["target"], lambda: copy_engine.copy_tables(
                source, TABLES, target, method="pymysql")),
        }
        print("source size: %.1f MB (data + indexes), %d run(s) each" % (size / 1e6, args.repeat))
        timings = {name: [] for name in runs}
        cpu = {name: [] for name in runs}
        for _round in range(args.repeat):
            for name, (dest_server, run) in runs.items():
                recreate(dest_server, "copy")
                before = resource.getrusage(resource.RUSAGE_SELF)
                started = time.monotonic()
                run()
                timings[name].append(time.monotonic() - started)
                after = resource.getrusage(resource.RUSAGE_SELF)
                cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        for name in runs:
            best, median = min(timings[name]), statistics.median(timings[name])
            print("%-32s best %6.1f MB/s  median %6.1f MB/s  (%.2f s; Python CPU %.2f s)"
                  % (name, size / 1e6 / best, size / 1e6 / median, median, statistics.median(cpu[name])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
