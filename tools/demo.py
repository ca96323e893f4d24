"""`make demo`: build a demo multisite network on throwaway servers and migrate it dev -> uat.

It starts three MariaDB servers on free loopback ports (source = dev, target =
uat, and the migration database), loads a generated subdomain network of 12
sites (one of them large enough to be handled apart), writes an inventory under
``demo/`` (git-ignored), runs ``ansible-playbook wfu.multisite.env_migrate``,
shows a few values before and after, lists the migration, and stops the
servers.  Nothing outside the temp directories and ``demo/`` is touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".venv", "collections"))

import yaml  # noqa: E402  (installed with ansible-core)

from tools.mariadb_servers import ServerSet  # noqa: E402
from tools.wpnetwork import NetworkSpec, load_network  # noqa: E402

DEV_URL = "https://dev.example.edu"
UAT_URL = "https://uat.example.edu"


def write_inventory(demo_dir, servers):
    os.makedirs(os.path.join(demo_dir, "group_vars"), exist_ok=True)
    with open(os.path.join(demo_dir, "hosts.yml"), "w", encoding="utf-8") as handle:
        handle.write("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n"
                     "      ansible_python_interpreter: %s\n" % os.path.join(ROOT, ".venv", "bin", "python"))
    group_vars = {
        "wfu_environments": {
            "dev": {"url": DEV_URL, "db": servers["source"].connection("wp_dev"),
                    "aliases": {"media_bucket": "wordpress-dev-us"}},
            "uat": {"url": UAT_URL, "db": servers["target"].connection("wp_uat"),
                    "aliases": {"media_bucket": "wordpress-uat-us"}},
        },
        "wfu_migration_db": servers["migration"].connection("wp_migration"),
        "wfu_state_dir": os.path.join(demo_dir, "state"),
    }
    path = os.path.join(demo_dir, "group_vars", "all.yml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# Written by `make demo` for throwaway servers; deleted when the demo ends.\n")
        yaml.safe_dump(group_vars, handle, sort_keys=False)
    return os.path.join(demo_dir, "hosts.yml")


def sample(server, database, site_prefix):
    with server.connect(database) as conn, conn.cursor() as cur:
        # For the widget, the part of the serialized value around its first link.
        cur.execute("SELECT option_name, IF(option_name = 'widget_text', SUBSTRING(option_value, "
                    "GREATEST(LOCATE('://', option_value) - 40, 1), 110), option_value) FROM `%soptions` "
                    "WHERE option_name IN ('siteurl', 'home', 'widget_text') ORDER BY option_name" % site_prefix)
        return cur.fetchall()


def show(title, rows):
    print("  %s" % title)
    for name, value in rows:
        print("    %-12s %s" % (name, value))


def playbook(inventory, *args):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".venv", "collections"),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_FORCE_COLOR="0")
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", inventory] + list(args)
    print("\n$ ansible-playbook " + " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, env=env, check=False).returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=12)
    parser.add_argument("--large-mb", type=int, default=30, help="size of the large site (site 3)")
    args = parser.parse_args(argv)
    demo_dir = os.path.join(ROOT, "demo")
    shutil.rmtree(demo_dir, ignore_errors=True)
    print("Starting three throwaway MariaDB servers (dev, uat, migration) on loopback...", flush=True)
    with ServerSet(("source", "target", "migration")) as servers:
        for name, server in servers.servers.items():
            print("  %-9s 127.0.0.1:%d (pid %d)" % (name, server.port, server.pid))
        spec = NetworkSpec(url=DEV_URL, subdomain=True, sites=args.sites, seed=7, posts_per_site=15,
                           large_sites={3: args.large_mb * 1000 * 1000})
        started = time.monotonic()
        summary = load_network(servers["source"].connection(), "wp_dev", spec)
        print("Built a %d-site subdomain network in dev (%.1f MB) in %.1f s" % (
            len(summary["sites"]), summary.get("bytes", 0) / 1e6, time.monotonic() - started))
        for server, database in ((servers["target"], "wp_uat"), (servers["migration"], "wp_migration")):
            with server.connect() as conn, conn.cursor() as cur:
                cur.execute("CREATE DATABASE `%s` CHARACTER SET utf8mb4" % database)
        inventory = write_inventory(demo_dir, servers)
        show("dev, site 2 before:", sample(servers["source"], "wp_dev", "wp_2_"))
        rc = playbook(inventory, "wfu.multisite.env_migrate", "-e", "source_env=dev", "-e", "target_env=uat",
                      "-e", "large_site_bytes=%d" % (10 * 1000 * 1000))
        if rc == 0:
            show("uat, site 2 after:", sample(servers["target"], "wp_uat", "wp_2_"))
        playbook(inventory, "wfu.multisite.migration_list")
        os.unlink(os.path.join(demo_dir, "group_vars", "all.yml"))
    print("\nServers stopped. The migration's state and logs stay in %s/state." % demo_dir)
    return rc


if __name__ == "__main__":
    sys.exit(main())
