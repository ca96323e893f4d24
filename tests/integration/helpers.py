"""Shared helpers for the pipeline's integration tests: databases, fingerprints, content checks, PHP, ansible-playbook.

Import them as ``from helpers import ...`` (pytest puts this directory on sys.path).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time

from ansible_collections.wfu.multisite.plugins.module_utils import tables as tbl
from ansible_collections.wfu.multisite.plugins.module_utils.db import quote_identifier
from tools.wpnetwork import NetworkSpec, load_network, network_sites

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
ANSIBLE_PLAYBOOK = os.path.join(VENV_BIN, "ansible-playbook")
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")

# Hosts outside every generated network; a migration must leave them exactly as they were.
OUTSIDE_HOSTS = ("webdev.example.edu", "library.example.edu")
TEXT_TYPES = ("char", "varchar", "tinytext", "text", "mediumtext", "longtext")
SERIALIZED_LOOK = re.compile(r"^(?:[aOsidbC]:|N;)")
# The columns of WordPress tables that hold PHP-serialized values, by table name without the prefix.
SERIALIZED_COLUMNS = {
    "options": "option_value", "postmeta": "meta_value", "commentmeta": "meta_value", "termmeta": "meta_value",
    "sitemeta": "meta_value", "usermeta": "meta_value", "blogmeta": "meta_value",
}

_names = itertools.count(1)


# -- databases -------------------------------------------------------------------------------------------------------

def unique_name(prefix):
    return "%s_%d_%d" % (prefix, os.getpid(), next(_names))


def connect(server, database=None):
    """A connection to a test server.  The servers have no TLS; not building an SSL context saves ~0.1 s a connection."""
    return server.connect(database, ssl_disabled=True)


def query(server, database, sql, args=None):
    with contextlib.closing(connect(server, database)) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def create_database(server, name=None, prefix="t"):
    name = name or unique_name(prefix)
    query(server, None, "CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % quote_identifier(name))
    return name


@contextlib.contextmanager
def frozen(server):
    """The server's mariadbd is stopped (SIGSTOP) inside the block: it accepts connections and never answers.

    The block starts once every thread of the server is stopped: the signal takes effect a moment after kill()
    returns, and a server that still runs in that moment answers the next statement.
    """
    os.kill(server.pid, signal.SIGSTOP)
    try:
        _wait_until_stopped(server.pid)
        yield server
    finally:
        os.kill(server.pid, signal.SIGCONT)


def _wait_until_stopped(pid, wait=10):
    deadline = time.monotonic() + wait
    while True:
        states = []
        for task in os.listdir("/proc/%d/task" % pid):
            with contextlib.suppress(OSError), open("/proc/%d/task/%s/stat" % (pid, task)) as stat:
                # The state follows the command name, which is in parentheses and may hold spaces.
                states.append(stat.read().rpartition(")")[2].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        if time.monotonic() >= deadline:
            raise AssertionError("mariadbd %d is not stopped %d s after SIGSTOP: %s" % (pid, wait, states))
        time.sleep(0.005)


def drop_database(server, name):
    if server.is_running():
        query(server, None, "DROP DATABASE IF EXISTS %s" % quote_identifier(name))


def table_names(server, database):
    return [row[0] for row in query(server, None, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE "
                                                  "TABLE_SCHEMA = %s ORDER BY TABLE_NAME", (database,))]


def row_counts(server, database, tables):
    with contextlib.closing(connect(server, database)) as conn:
        return tbl.exact_row_counts(conn, database, tables)


def fingerprint(server, database, tables=None):
    """``{table: (CHECKSUM TABLE, sha1 of SHOW CREATE TABLE)}`` for every table (or the given ones).

    Two equal fingerprints mean the same tables with the same definitions and the same rows.
    """
    names = table_names(server, database) if tables is None else list(tables)
    result = {}
    with contextlib.closing(connect(server, database)) as conn, conn.cursor() as cur:
        for name in names:
            cur.execute("CHECKSUM TABLE %s" % quote_identifier(name))
            checksum = cur.fetchone()[1]
            cur.execute("SHOW CREATE TABLE %s" % quote_identifier(name))
            create = re.sub(r" AUTO_INCREMENT=\d+", "", cur.fetchone()[1])
            result[name] = (checksum, hashlib.sha1(create.encode("utf-8")).hexdigest())
    return result


def without(fingerprints, tables):
    """A fingerprint minus some tables."""
    return {name: value for name, value in fingerprints.items() if name not in set(tables)}


class LoadedNetwork:
    """A generated network loaded into a database of one server."""

    def __init__(self, server, spec, database=None):
        self.server = server
        self.spec = spec
        self.database = database or create_database(server, prefix="net")
        self.summary = load_network(server.connection(), self.database, spec)

    @property
    def prefix(self):
        return self.spec.prefix

    def site_tables(self, site_id):
        return tbl.site_tables(table_names(self.server, self.database), self.prefix, site_id)

    def drop(self):
        drop_database(self.server, self.database)


def environment(name, url, server, database, prefix="wp_", **settings):
    """One entry of ``wfu_environments`` plus its name, as the pipeline's Endpoint takes it."""
    return dict(settings, name=name, url=url, db=server.connection(database), table_prefix=prefix)


def addresses(url, spec):
    """``{blog_id: (domain, path, url)}`` the sites of ``spec`` get when the network lives at ``url``.

    The generator lays out a network at any url the same way, so this is the address a migration
    to that url must produce, computed without the pipeline's own mapping code.
    """
    moved = NetworkSpec(url=url, subdomain=spec.subdomain, site_ids=spec.blog_ids(), prefix=spec.prefix)
    return {site.blog_id: (site.domain, site.path, site.url) for site in network_sites(moved)}


# -- content checks --------------------------------------------------------------------------------------------------

def text_columns(cur, database, table):
    cur.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %%s AND TABLE_NAME = %%s "
                "AND DATA_TYPE IN (%s) ORDER BY ORDINAL_POSITION" % ", ".join(["%s"] * len(TEXT_TYPES)),
                (database, table) + TEXT_TYPES)
    return [row[0] for row in cur.fetchall()]


def values_containing(server, database, tables, needle):
    """Yield ``(table, column, value)`` for every text value of the tables that contains ``needle`` (case-sensitive)."""
    like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with contextlib.closing(connect(server, database)) as conn, conn.cursor() as cur:
        for table in tables:
            for column in text_columns(cur, database, table):
                cur.execute("SELECT %s FROM %s WHERE %s LIKE BINARY %%s" % (
                    quote_identifier(column), quote_identifier(table), quote_identifier(column)), (like,))
                for (value,) in cur.fetchall():
                    yield table, column, value


def count_occurrences(server, database, tables, needle):
    return sum(value.count(needle) for _table, _column, value in values_containing(server, database, tables, needle))


def host_leftovers(server, database, tables, host):
    """Occurrences of ``host`` or of a subdomain of it that are not just part of a longer host name.

    ``webdev.example.edu`` does not count as ``dev.example.edu``; ``news.dev.example.edu``,
    ``//dev.example.edu``, ``https%3A%2F%2Fdev.example.edu`` and ``@dev.example.edu`` do.
    Returns ``[(table, column, excerpt)]``.
    """
    found = []
    for table, column, value in values_containing(server, database, tables, host):
        for match in re.finditer(re.escape(host), value):
            start = match.start()
            before = value[start - 1] if start else ""
            part_of_longer_name = (before.isalnum() or before == "-") and value[max(0, start - 3):start].upper() != "%2F"
            if not part_of_longer_name:
                found.append((table, column, value[max(0, start - 40):match.end() + 40]))
    return found


def serialized_values(server, database, tables, prefix):
    """``{(table without prefix, primary key): value}`` of the values that look PHP-serialized."""
    values = {}
    with contextlib.closing(connect(server, database)) as conn, conn.cursor() as cur:
        for table in tables:
            kind = re.sub(r"^\d+_", "", table[len(prefix):])
            column = SERIALIZED_COLUMNS.get(kind)
            if not column:
                continue
            cur.execute("SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s AND "
                        "TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'", (database, table))
            key = cur.fetchone()[0]
            cur.execute("SELECT %s, %s FROM %s" % (quote_identifier(key), quote_identifier(column),
                                                   quote_identifier(table)))
            for key_value, value in cur.fetchall():
                if value and SERIALIZED_LOOK.match(value):
                    values[(table[len(prefix):], key_value)] = value
    return values


PHP_UNSERIALIZE = r'''
$out = [];
foreach (json_decode(file_get_contents("php://stdin"), true) as $value) {
    $out[] = @unserialize($value) !== false || $value === "b:0;";
}
echo json_encode($out);
'''


def php_unserializes(values):
    """For each string, whether PHP's unserialize() accepts it; one php process for the whole batch."""
    if shutil.which("php") is None:
        raise RuntimeError("php-cli is required for this test (make setup installs it)")
    done = subprocess.run(["php", "-d", "memory_limit=1G", "-r", PHP_UNSERIALIZE], input=json.dumps(list(values)),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


# -- processes -------------------------------------------------------------------------------------------------------

def _read_proc(pid, name):
    try:
        with open("/proc/%s/%s" % (pid, name), "rb") as handle:
            return handle.read()
    except OSError:
        return None


def processes():
    """``[(pid, ppid, comm, state)]`` of every process now running."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read_proc(entry, "stat")
        if not stat:
            continue
        text = stat.decode("utf-8", "replace")
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        found.append((int(entry), int(fields[1]), comm, fields[0]))
    return found


def descendants(pid):
    """``[(pid, comm, state)]`` of every process below ``pid``."""
    table = processes()
    children = {}
    for child, parent, comm, state in table:
        children.setdefault(parent, []).append((child, comm, state))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def client_children(pid=None):
    """mariadb / mariadb-dump / mysql / mysqldump processes (zombies included) below ``pid`` (default: us)."""
    return [p for p in descendants(pid or os.getpid()) if p[1] in ("mariadb", "mariadb-dump", "mysql", "mysqldump")]


class CmdlineWatcher:
    """Polls /proc/*/cmdline of every process in a thread and remembers where ``secret`` shows up.

    ``leaks`` lists ``(pid, comm, cmdline)`` of processes whose argv held the secret; ``seen`` counts
    how often each program name was seen, so a test can prove the watcher saw the processes it cares about.
    """

    def __init__(self, secret, interval=0.002):
        self.secret = secret.encode("utf-8")
        self.interval = interval
        self.leaks = []
        self.seen = {}
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cmdline-watcher", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        me = str(os.getpid())
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or entry == me:
                    continue
                cmdline = _read_proc(entry, "cmdline")
                if not cmdline:
                    continue
                argv = cmdline.split(b"\0")
                name = os.path.basename(argv[0]).decode("utf-8", "replace")
                self.seen[name] = self.seen.get(name, 0) + 1
                if self.secret in cmdline:
                    self.leaks.append((int(entry), name, cmdline.replace(b"\0", b" ").decode("utf-8", "replace")))
            self.scans += 1
            time.sleep(self.interval)


class PeakMemory:
    """Polls /proc for the processes below ``pid`` and keeps the largest VmHWM (peak RSS, kB) of each program."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.peak_kb = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="peak-memory", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while not self._stop.is_set():
            for pid, comm, _state in [(self.pid, "", "")] + descendants(self.pid):
                status = _read_proc(pid, "status")
                cmdline = _read_proc(pid, "cmdline")
                if not status or not cmdline:
                    continue
                match = re.search(rb"VmHWM:\s+(\d+) kB", status)
                if match:
                    # The pipeline child the wfu_site_migrate action plugin forks keeps its worker's command line
                    # and names itself (comm) after the module.
                    label = "pipeline wfu_site_migrate" if comm == "wfu_site_migrat" else program_label(cmdline)
                    self.peak_kb[label] = max(self.peak_kb.get(label, 0), int(match.group(1)))
            time.sleep(self.interval)


def program_label(cmdline):
    """A short name for a process: the program, or the Ansible module a Python process runs."""
    argv = [part.decode("utf-8", "replace") for part in cmdline.split(b"\0") if part]
    if not argv:
        return "?"
    for part in argv[1:]:
        match = re.search(r"AnsiballZ_(\w+)\.py", part)
        if match:
            return "module " + match.group(1)
    name = os.path.basename(argv[0])
    if name.startswith("python") and len(argv) > 1:
        return "python " + os.path.basename(argv[1])
    return name


# -- ansible-playbook ------------------------------------------------------------------------------------------------

def playbook_env():
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="false", ANSIBLE_HOST_KEY_CHECKING="false",
               PATH=VENV_BIN + os.pathsep + env.get("PATH", ""))
    return env


def write_inventory(directory, environments, migration_db, **extra_vars):
    """An inventory (localhost, the venv's Python) with group_vars/all.yml holding the migration settings.

    ``environments`` maps environment names to ``wfu_environments`` entries (``url``, ``db``, ...).
    Returns the path of the inventory file.  The passwords are in group_vars, as a real inventory has them.
    """
    directory = str(directory)
    os.makedirs(os.path.join(directory, "group_vars"), exist_ok=True)
    inventory = os.path.join(directory, "hosts.ini")
    with open(inventory, "w", encoding="utf-8") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                     % os.path.join(VENV_BIN, "python"))
    settings = dict(extra_vars, wfu_environments=environments, wfu_migration_db=migration_db,
                    wfu_state_dir=os.path.join(directory, "state"))
    # JSON is YAML; it keeps the passwords' quoting exact.
    with open(os.path.join(directory, "group_vars", "all.yml"), "w", encoding="utf-8") as handle:
        json.dump(settings, handle, indent=2)
    return inventory


def run_playbook(playbook, inventory, *args, extra_vars=None, timeout=300, check=True):
    """Run ansible-playbook; return the CompletedProcess (stdout and stderr merged, text)."""
    argv = [ANSIBLE_PLAYBOOK, playbook, "-i", inventory]
    for key, value in (extra_vars or {}).items():
        argv += ["-e", "%s=%s" % (key, value)]
    argv += list(args)
    done = subprocess.run(argv, cwd=os.path.dirname(inventory), env=playbook_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    if check:
        assert done.returncode == 0, done.stdout[-6000:]
    return done


# -- a source network, a target network and a migration database -----------------------------------------------------

class MigrationSetup:
    """A generated network in the source (environment ``dev``), one in the target (``uat``) and a migration database.

    ``target_spec`` may be None for a target database without any table; ``target_network`` reuses a
    network loaded for another setup (it is then not dropped with this one).
    """

    def __init__(self, servers, source_spec, target_spec, target_network=None):
        self.servers = servers
        self.source = LoadedNetwork(servers["source"], source_spec)
        self.target = target_network or (LoadedNetwork(servers["target"], target_spec) if target_spec else None)
        self.owns_target = target_network is None
        if self.target is not None:
            self.target_url, self.target_prefix = self.target.spec.url, self.target.spec.prefix
            self.target_database = self.target.database
        else:
            self.target_url, self.target_prefix = "https://uat.example.edu", "wp_"
            self.target_database = create_database(servers["target"], prefix="tgt")
        self.migration_server = servers["migration"]
        self.migration_database = create_database(self.migration_server, prefix="mig")

    @property
    def target_server(self):
        return self.servers["target"]

    def source_env(self):
        return environment("dev", self.source.spec.url, self.source.server, self.source.database, self.source.prefix)

    def target_env(self):
        return environment("uat", self.target_url, self.target_server, self.target_database, self.target_prefix)

    def migration_db(self):
        return self.migration_server.connection(self.migration_database)

    def site(self, site_id, options=None, check_mode=False):
        from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint, SiteMigration

        return SiteMigration(site_id, Endpoint(self.source_env()), Endpoint(self.target_env()), self.migration_db(),
                             options=options, check_mode=check_mode)

    def network(self, options=None, check_mode=False):
        from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint, NetworkMigration

        return NetworkMigration(Endpoint(self.source_env()), Endpoint(self.target_env()), self.migration_db(),
                                options or {}, check_mode=check_mode)

    def target_tables(self):
        return table_names(self.target_server, self.target_database)

    def target_fingerprint(self, tables=None):
        return fingerprint(self.target_server, self.target_database, tables)

    def migration_tables(self):
        return table_names(self.migration_server, self.migration_database)

    def target_site_tables(self, site_id):
        return tbl.site_tables(self.target_tables(), self.target_prefix, site_id)

    def expected_target_tables(self, site_id):
        """The target's names of the source site's tables."""
        return sorted(tbl.retarget_table(t, self.source.prefix, self.target_prefix)
                      for t in self.source.site_tables(site_id))

    def drop(self):
        self.source.drop()
        if self.owns_target:
            drop_database(self.target_server, self.target_database)
        drop_database(self.migration_server, self.migration_database)


def files_below(root):
    """``{relative path: bytes}`` of every file below ``root`` (a media tree, a backup directory)."""
    found = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found
