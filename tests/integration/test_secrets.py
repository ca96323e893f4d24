"""Database passwords never show: not in ansible-playbook's output at -vvv, not in any file a run writes.

Each of the three servers gets a user of this module's own with a distinctive random password
(``wfu-secret-src-<hex>``, ``wfu-secret-tgt-<hex>``, ``wfu-secret-mig-<hex>``), and the inventory
reaches the databases as those users.  A run's merged stdout/stderr is searched for the raw bytes of
every password, and so is every file below the test's directory (state, logs, the module and local
temp dirs the setup gives Ansible) and every file created or modified under /tmp and ~/.ansible/tmp
while the run went on.  The inventory's group_vars file is the one file allowed to hold the passwords:
the test wrote it, and it must come out of the run unchanged.

The scanner is proved on planted files and planted output, so a broken search cannot pass.
"""

import contextlib
import os
import stat
import tempfile

import pytest
from helpers import query, write_inventory
from role_helpers import SOURCE_URL, TARGET_URL, MigrationSetup

from tools.wpnetwork import NetworkSpec

ROLES = ("source", "target", "migration")
TAGS = {"source": "src", "target": "tgt", "migration": "mig"}
# Where the users may connect from, as the shared test user can (tools/mariadb_servers.py).
USER_HOSTS = ("127.0.0.1", "localhost", "%")
# Directories below /tmp that hold the throwaway MariaDB servers (ServerSet's prefix): their datadirs,
# redo logs and temp files are written by mariadbd, not by the run, and are hundreds of MB.
SERVER_DIR_PREFIX = "wfu-mariadb-"


def network():
    return NetworkSpec(url=SOURCE_URL, subdomain=True, sites=3, seed=7, posts_per_site=1)


# -- the users ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def secret_users(servers):
    """``{role: (user, password)}``: a user of its own on each server, with a distinctive password; dropped after."""
    made = {}
    for role in ROLES:
        user = "wfu_%s_%s" % (TAGS[role], os.urandom(4).hex())
        password = "wfu-secret-%s-%s" % (TAGS[role], os.urandom(12).hex())
        made[role] = (user, password)
        for host in USER_HOSTS:
            query(servers[role], None, "CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password))
            query(servers[role], None, "GRANT ALL PRIVILEGES ON *.* TO %s@%s", (user, host))
    assert len({password for _user, password in made.values()}) == len(ROLES)
    yield made
    for role, (user, _password) in made.items():
        server = servers.servers.get(role)
        if server is not None and server.is_running():
            for host in USER_HOSTS:
                with contextlib.suppress(Exception):
                    query(server, None, "DROP USER IF EXISTS %s@%s", (user, host))


class SecretSetup(MigrationSetup):
    """A MigrationSetup whose inventory signs in as the dedicated users, not as the servers' shared user.

    ``passwords`` overrides the password the inventory gives a role (a wrong one, say).
    """

    def __init__(self, servers, directory, spec, users, passwords=None):
        super().__init__(servers, directory, spec)
        self.users = users
        given = {role: (passwords or {}).get(role, password) for role, (_user, password) in users.items()}
        self.given_passwords = given

        def db(role, server, database):
            return dict(server.connection(database), user=users[role][0], password=given[role])

        environments = {
            "dev": {"url": SOURCE_URL, "db": db("source", self.source, self.source_db)},
            "uat": {"url": TARGET_URL, "db": db("target", self.target, self.target_db)},
        }
        self.inventory = write_inventory(self.directory, environments, db("migration", self.migration,
                                                                          self.migration_db))
        self.group_vars = os.path.join(self.directory, "group_vars", "all.yml")
        with open(self.group_vars, "rb") as handle:
            self.group_vars_bytes = handle.read()
        # The inventory holds the distinctive passwords only: the shared one plays no part in the run.
        for role in ROLES:
            assert given[role].encode() in self.group_vars_bytes
            assert servers[role].password.encode() not in self.group_vars_bytes

    def target_label(self):
        return "the target database of uat (%s:%d/%s)" % (self.target.host, self.target.port, self.target_db)


@pytest.fixture
def make_setup(servers, tmp_path, secret_users):
    made = []

    def make(passwords=None):
        setup = SecretSetup(servers, tmp_path / "run", network(), secret_users, passwords)
        made.append(setup)
        return setup

    yield make
    for setup in made:
        setup.drop()


# -- the search --------------------------------------------------------------------------------------------------------

def watched_roots():
    return ["/tmp", os.path.join(os.path.expanduser("~"), ".ansible", "tmp")]


def regular_files(root):
    """``{path: (inode, size, mtime_ns, ctime_ns)}`` of the regular files below ``root`` (not the servers' dirs)."""
    found = {}
    for directory, dirs, names in os.walk(root, onerror=lambda _error: None):
        dirs[:] = [name for name in dirs if not name.startswith(SERVER_DIR_PREFIX)]
        for name in names:
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found[path] = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    return found


def snapshot():
    """The regular files under the watched roots now, to tell later which ones a run created or changed."""
    files = {}
    for root in watched_roots():
        files.update(regular_files(root))
    return files


def files_to_search(before, test_dir, allowed):
    """Every file below the test's directory plus every file new or changed under the watched roots since ``before``.

    ``allowed`` are paths the test wrote itself (the inventory); they are left out here and checked apart.
    """
    candidates = set(regular_files(test_dir))
    for path, key in snapshot().items():
        if before.get(path) != key:
            candidates.add(path)
    return sorted(path for path in candidates if path not in allowed)


def redacted(data, secrets):
    for role, secret in secrets.items():
        data = data.replace(secret.encode(), ("<password of %s>" % role).encode())
    return data


def excerpts(data, secrets, width=120):
    """Where the secrets are in ``data``, with the secrets themselves blanked (the report must not leak them)."""
    found = []
    for role, secret in secrets.items():
        needle = secret.encode()
        start = data.find(needle)
        while start != -1:
            piece = data[max(0, start - width):start + len(needle) + width]
            found.append((role, redacted(piece, secrets).decode("utf-8", "replace")))
            start = data.find(needle, start + 1)
    return found


def leaks_in_files(paths, secrets):
    """``[(path, role, excerpt)]`` for every secret found in the bytes of the files; unreadable files are skipped."""
    leaks = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            continue
        leaks += [(path, role, excerpt) for role, excerpt in excerpts(data, secrets)]
    return leaks


def leaks_in_output(output, secrets):
    return excerpts(output.encode("utf-8", "surrogateescape"), secrets)


def search(setup, before, output, secrets):
    """(what the output leaks, what the files leak, the files searched)."""
    with open(setup.group_vars, "rb") as handle:
        assert handle.read() == setup.group_vars_bytes, "the run rewrote the inventory's group_vars"
    paths = files_to_search(before, setup.directory, {setup.group_vars})
    return leaks_in_output(output, secrets), leaks_in_files(paths, secrets), paths


def assert_nothing_leaks(setup, before, run, secrets):
    output_leaks, file_leaks, paths = search(setup, before, run.stdout, secrets)
    assert output_leaks == [], "the ansible-playbook output holds passwords:\n%s" % "\n".join(
        "%s: ...%s..." % leak for leak in output_leaks)
    assert file_leaks == [], "files hold passwords:\n%s" % "\n".join("%s (%s): ...%s..." % leak
                                                                     for leak in file_leaks)
    return paths


def real_secrets(users):
    return {role: password for role, (_user, password) in users.items()}


# -- the tests ---------------------------------------------------------------------------------------------------------

def test_a_full_run_at_vvv_shows_and_writes_no_password(make_setup, secret_users):
    setup = make_setup()
    secrets = real_secrets(secret_users)
    before = snapshot()

    run = setup.run("-vvv", source_env="dev", target_env="uat")

    assert run.returncode == 0, redacted(run.stdout[-6000:].encode(), secrets).decode()
    state = setup.state()
    assert state["status"] == "completed"
    assert sorted(state["sites"]) == ["1", "2", "3"]
    assert [setup.site_problems(site_id) for site_id in (1, 2, 3)] == [[], [], []]
    # -vvv really was on: module invocations are shown.
    assert "module_args" in run.stdout or "invocation" in run.stdout
    paths = assert_nothing_leaks(setup, before, run, secrets)
    # The state files were among the files searched, and on their own hold no password either.
    migration_dir = os.path.join(setup.state_dir, state["id"])
    state_files = [path for path in paths if path.startswith(migration_dir + os.sep)]
    assert os.path.join(migration_dir, "state.json") in state_files
    assert leaks_in_files(state_files, secrets) == []
    assert {os.path.join(migration_dir, "logs", "site-%d.log" % site_id) for site_id in (1, 2, 3)} <= set(state_files)

    # The search is real: a password planted in the test's directory, in /tmp and in ~/.ansible/tmp, and in the
    # output, is found where it was planted.
    planted_dir = os.path.join(setup.directory, "planted", "deeper")
    os.makedirs(planted_dir)
    in_test_dir = os.path.join(planted_dir, "blob.bin")
    with open(in_test_dir, "wb") as handle:
        handle.write(b"\x00\xffbefore " + secrets["target"].encode() + b" after\x00")
    planted = [in_test_dir]
    try:
        for root in watched_roots():
            if os.path.isdir(root):
                fd, path = tempfile.mkstemp(prefix="wfu-planted-", dir=root)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(b"x" * 5000 + secrets["migration"].encode() + b"y")
                planted.append(path)
        output_leaks, file_leaks, _paths = search(setup, before, run.stdout + "\n" + secrets["source"] + "\n",
                                                  secrets)
        assert [role for role, _excerpt in output_leaks] == ["source"]
        assert all("<password of source>" in excerpt for _role, excerpt in output_leaks)
        assert sorted((path, role) for path, role, _excerpt in file_leaks) == sorted(
            [(in_test_dir, "target")] + [(path, "migration") for path in planted[1:]])
    finally:
        for path in planted[1:]:
            with contextlib.suppress(OSError):
                os.unlink(path)


def test_check_mode_at_vvv_shows_and_writes_no_password(make_setup, secret_users):
    setup = make_setup()
    secrets = real_secrets(secret_users)
    before = snapshot()

    run = setup.run("--check", "-vvv", source_env="dev", target_env="uat")

    assert run.returncode == 0, redacted(run.stdout[-6000:].encode(), secrets).decode()
    assert "Check mode: nothing was changed" in run.stdout
    assert "3 of 3 sites to migrate" in run.stdout
    assert setup.migration_ids() == []
    assert setup.target_tables() == []
    assert_nothing_leaks(setup, before, run, secrets)


def test_a_wrong_target_password_is_named_but_never_shown(make_setup, secret_users):
    wrong = "wfu-wrong-%s" % os.urandom(12).hex()
    setup = make_setup(passwords={"target": wrong})
    secrets = dict(real_secrets(secret_users), wrong=wrong)
    before = snapshot()

    run = setup.run("-vvv", source_env="dev", target_env="uat")

    assert run.returncode != 0
    shown = redacted(run.stdout.encode(), secrets).decode()
    assert setup.target_label() in run.stdout, shown[-6000:]
    assert "refused the login of user %r" % secret_users["target"][0] in run.stdout, shown[-6000:]
    assert "Traceback" not in run.stdout
    # Stopped at the preflight: no migration was started, the target was not touched.
    assert setup.migration_ids() == [] and setup.target_tables() == []
    assert_nothing_leaks(setup, before, run, secrets)


AFTER_SITE_HOOK = """
- name: Note the site
  ansible.builtin.copy:
    dest: "{{ hook_dir }}/site-{{ wfu_site.id }}.json"
    content: "{{ wfu_site | to_json }}"
    mode: "0600"
  delegate_to: localhost
"""


def test_media_hooks_backups_and_rollback_at_vvv_show_no_secret(make_setup, secret_users, tmp_path, monkeypatch):
    """The parts added around the pipeline, at -vvv: media (between directories), a site hook, backups in
    backup_dir and a bucket, then migration_rollback and migration_cleanup's retention.  No database password and no
    AWS secret key in any output or file."""
    import json

    from helpers import run_playbook
    from moto_s3 import CREDENTIAL_ENV, MotoServer

    boto3 = pytest.importorskip("boto3")
    server = MotoServer().start()
    try:
        for key, value in CREDENTIAL_ENV.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3", endpoint_url=server.url, region_name="us-east-1").create_bucket(Bucket="wfu-backups")
        setup = make_setup()
        secrets = dict(real_secrets(secret_users), aws=CREDENTIAL_ENV["AWS_SECRET_ACCESS_KEY"])
        dev, uat, backups, hooks = (tmp_path / name for name in ("dev-uploads", "uat-uploads", "backups", "hooks"))
        for site_id, base in ((1, dev), (2, dev / "sites" / "2"), (3, dev / "sites" / "3")):
            (base / "2026" / "01").mkdir(parents=True, exist_ok=True)
            (base / "2026" / "01" / ("photo-%d.jpg" % site_id)).write_bytes(os.urandom(2048))
        for directory in (uat, backups, hooks):
            directory.mkdir()
        (hooks / "after_site.yml").write_text(AFTER_SITE_HOOK)
        # The same inventory with media settings and the hook's directory added.
        with open(setup.group_vars, encoding="utf-8") as handle:
            settings = json.load(handle)
        settings["wfu_environments"]["dev"]["media"] = {"path": str(dev)}
        settings["wfu_environments"]["uat"]["media"] = {"path": str(uat)}
        settings["hook_dir"] = str(hooks)
        with open(setup.group_vars, "w", encoding="utf-8") as handle:
            json.dump(settings, handle, indent=2)
        with open(setup.group_vars, "rb") as handle:
            setup.group_vars_bytes = handle.read()
        bucket = {"bucket": "wfu-backups", "prefix": "uat", "endpoint_url": server.url}
        before = snapshot()

        run = setup.run("-vvv", source_env="dev", target_env="uat", backup_dir=str(backups), backup_s3=bucket,
                        after_site_tasks=str(hooks / "after_site.yml"))
        assert run.returncode == 0, redacted(run.stdout[-6000:].encode(), secrets).decode()
        state = setup.state()
        assert state["status"] == "completed"
        assert all(state["sites"][key]["result"]["media_copied"] == 1 for key in ("1", "2", "3"))
        assert sorted(os.listdir(hooks)) == ["after_site.yml", "site-1.json", "site-2.json", "site-3.json"]
        outputs = [run.stdout]
        for playbook, extra in (("wfu.multisite.migration_rollback", {"migration_id": state["id"]}),
                                ("wfu.multisite.migration_cleanup", None)):
            args = ["-vvv"] + (["-e", json.dumps({"target_env": "uat", "keep_backups": 1, "backup_dir": str(backups),
                                                  "backup_s3": bucket})] if extra is None else [])
            done = run_playbook(playbook, setup.inventory, *args, extra_vars=extra, check=False)
            assert done.returncode == 0, redacted(done.stdout[-6000:].encode(), secrets).decode()
            outputs.append(done.stdout)
        assert "Rolled back migration %s" % state["id"] in " ".join(outputs[1].split())
        assert "Backups of uat: kept 1" in " ".join(outputs[2].split())
        assert "invocation" in outputs[1] and "invocation" in outputs[2]
        for output in outputs:
            assert leaks_in_output(output, secrets) == []
        assert_nothing_leaks(setup, before, run, secrets)
    finally:
        server.stop()
