"""AWX-like jobs for the integration tests, run by ansible-runner (the engine AWX runs every job with).

A job is a private data directory laid out as AWX lays it out, one per job, under a test's directory::

    <root>/<name>/
        project/main.yml     the playbook: ``import_playbook`` of a collection playbook by FQCN, or plays given as text
        inventory/hosts      INI/YAML text, or, for an exported inventory (``ansible-inventory --list --export``, what
                             AWX's inventory sync stores), an executable script printing its JSON, as AWX writes it
        env/extravars        extra vars: the caller's, the AWX job variables (awx_job_id, tower_job_id and, in a
                             workflow, awx_workflow_job_id), and the extra vars of the job's credentials
        env/envvars          a fresh, empty HOME for this job alone (nothing under ~ survives it, as in AWX's
                             throwaway execution environments), ANSIBLE_COLLECTIONS_PATH=.venv/collections, PATH,
                             and the environment variables of the job's credentials
        env/settings         job_timeout, pexpect_timeout (how often cancel is looked at), suppress_ansible_output
        env/tmpXXXXXXXX      the files the job's credentials inject (0600), as AWX renders them
        artifacts/<ident>/   written by ansible-runner: job_events/*.json, stdout, status, rc

``run_job`` runs a job with ``ansible_runner.run()`` in this process, or, for a job made with ``streamed=True``,
as AWX does through receptor: ``ansible-runner transmit <dir> | ansible-runner worker --private-data-dir=<worker>
--delete | ansible-runner process <dir>``, three processes joined by pipes; the worker unpacks the job into its own
directory, runs it there and deletes that directory when the job ends, so nothing it wrote outside the state
backend survives (its HOME included). Either way the job's status, rc, events and stdout come from its artifacts.

``cancel(job)`` is AWX's cancel: in-process, ansible-runner's ``cancel_callback`` sees the job's event set and
SIGKILLs the playbook's process group (no rescue, no always runs); a streamed job's worker gets SIGTERM, on which
ansible-runner does the same. ``start_job`` runs a job in a thread so that a test can watch the state and cancel.

That SIGKILL does not reach the tasks: ansible-core's task workers call setsid(), so a running module outlives
the killed ansible-playbook. In AWX the job's execution environment (container or pod) is then removed, and every
process in it dies. The harness does the same when a job ends, however it ends: each process of the job carries
``WFU_AWX_JOB=<marker>`` in its environment, and every process still holding it is SIGKILLed;
``job.leftover_processes`` lists them (for a canceled job, the modules that were running).

``secrets_in(job, secret)`` lists every job event, stdout line and artifact file that holds a secret. The job's
own inputs (env/extravars, the credential files) hold it by design and are not searched.

How the later tests use this (issue 9):

* Resume after an abort: one ``root`` per test with ``wfu_state_dir`` (or the database state backend) shared by
  its jobs; job A with the target stopped mid-run ends ``failed``; job B, a new private data dir and a new HOME,
  with ``resume=latest`` completes; a third job runs ``wfu.multisite.migration_list`` and shows both.
* Cancel, then a new job: ``start_job(job_a)``; when the state shows a site ``in_progress``, ``cancel(job_a)``;
  ``thread.join()``; ``job_a.status == "canceled"``; job B then completes without any manual unlock.
* Slices: ``exported_inventory(<file>.wfu_sites.yml)`` (the AWX inventory sync), ``slice_inventory(data, n, 3)``
  for n = 1..3 as the three slices' inventories, all with one ``workflow_job_id``, started together after an
  ``env_migrate_prepare`` job, then ``env_migrate_finish``; one slice ``streamed=True``.
* Secrets: ``verbosity=3`` and ``secrets_in(job, password) == []`` for every job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")
ANSIBLE_RUNNER = os.path.join(VENV_BIN, "ansible-runner")
ANSIBLE_INVENTORY = os.path.join(VENV_BIN, "ansible-inventory")
CREDENTIAL_TYPES = os.path.join(ROOT, "extensions", "awx", "credential_types")
PLAYBOOK = "main.yml"
# How often (seconds) ansible-runner looks at the cancel callback; AWX leaves ansible-runner's 5.
PEXPECT_TIMEOUT = 0.5
# The environment variable that marks every process of a job (see the module docstring).
JOB_MARKER = "WFU_AWX_JOB"

_job_numbers = itertools.count(1)


@dataclasses.dataclass
class Job:
    """One job: where it lives, where it runs, and, once run, what came of it."""

    name: str
    private_data_dir: str
    run_dir: str
    ident: str
    job_id: int
    streamed: bool = False
    verbosity: int = 0
    forks: int | None = None
    limit: str | None = None
    check: bool = False
    cancel_requested: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    status: str | None = None
    rc: int | None = None
    events: list = dataclasses.field(default_factory=list, repr=False)
    stdout: str = dataclasses.field(default="", repr=False)
    leftover_processes: list = dataclasses.field(default_factory=list)

    @property
    def marker(self):
        return "%s-%d" % (self.ident, self.job_id)

    @property
    def home(self):
        return os.path.join(self.run_dir, "home")

    @property
    def artifact_dir(self):
        return os.path.join(self.private_data_dir, "artifacts", self.ident)

    def event_names(self):
        return [event.get("event") for event in self.events]


@dataclasses.dataclass
class Injection:
    """What one credential gives a job, as AWX renders it: files (label -> path), env vars and extra vars."""

    files: dict
    env: dict
    extra_vars: dict


# -- credentials -----------------------------------------------------------------------------------------------------

def load_credential_type(name_or_path):
    """The one credential type of an ``awx import`` file under extensions/awx/credential_types (name or path)."""
    path = name_or_path if os.path.sep in name_or_path else os.path.join(CREDENTIAL_TYPES, name_or_path + ".yml")
    with open(path, encoding="utf-8") as handle:
        (credential_type,) = yaml.safe_load(handle)["credential_types"]
    return credential_type


def inject_credential(credential_type, inputs, env_dir, visible_dir=None):
    """Render a credential type's injectors for ``inputs`` the way AWX does for a job.

    Each file template is rendered in a sandbox and written to a new 0600 file in ``env_dir``; its path, as the
    job will see it (under ``visible_dir`` instead when the job runs elsewhere, as a streamed job does), is
    ``tower.filename`` (one file) or ``tower.filename.<label>``. Env vars and extra vars (keys included) are then
    rendered with those names. Inputs left empty are not defined, as in AWX.
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    sandbox = ImmutableSandboxedEnvironment()
    namespace = {key: value for key, value in inputs.items() if value not in (None, "")}
    injectors = credential_type.get("injectors", {})
    files, filenames = {}, {}
    for label, template in injectors.get("file", {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        visible = os.path.join(visible_dir or env_dir, os.path.basename(path))
        files[label] = visible
        filenames[label.split(".", 1)[1] if "." in label else None] = visible
    tower = {"filename": filenames[None] if None in filenames else filenames}

    def render(node):
        if isinstance(node, dict):
            return {render(key): render(value) for key, value in node.items()}
        if isinstance(node, list):
            return [render(item) for item in node]
        return sandbox.from_string(node).render(tower=tower, **namespace)

    return Injection(files=files, env=render(injectors.get("env", {})), extra_vars=render(injectors.get("extra_vars", {})))


# -- inventories -----------------------------------------------------------------------------------------------------

def ansible_env(home=None):
    """The environment of the ansible commands this module starts."""
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               PATH=VENV_BIN + os.pathsep + env.get("PATH", ""))
    if home:
        env["HOME"] = home
    return env


def exported_inventory(source, env=None):
    """``ansible-inventory -i <source> --list --export`` as AWX's inventory sync runs it (a source that does not
    parse is an error, as AWX makes it), parsed; raises with the command's output when it fails."""
    done = subprocess.run([ANSIBLE_INVENTORY, "-i", source, "--list", "--export"], capture_output=True, text=True,
                          env=dict(ansible_env(), ANSIBLE_INVENTORY_UNPARSED_FAILED="1", **(env or {})),
                          check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError("ansible-inventory failed (rc %d):\n%s%s" % (done.returncode, done.stdout, done.stderr))
    return json.loads(done.stdout)


def slice_inventory(inventory, slice_number, slice_count):
    """Slice ``slice_number`` (1-based) of ``slice_count`` of an exported inventory: every slice_count-th host in
    name order, starting at the slice's own, with the groups and variables of those hosts (AWX job slicing)."""
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    chosen = set(sorted(hostvars)[slice_number - 1::slice_count])
    sliced = {"_meta": {"hostvars": {name: hostvars[name] for name in sorted(chosen)}}}
    for group, data in inventory.items():
        if group == "_meta":
            continue
        data = dict(data)
        if "hosts" in data:
            data["hosts"] = [host for host in data["hosts"] if host in chosen]
        sliced[group] = data
    return sliced


INVENTORY_SCRIPT = """#!%s
# The inventory of an AWX job: the hosts AWX stores for it, printed as the script inventory format asks.
import json
import sys

DATA = json.loads(%r)
print(json.dumps(DATA if "--list" in sys.argv else {}))
"""


def _write_inventory(directory, inventory):
    path = os.path.join(directory, "hosts")
    if isinstance(inventory, dict):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(INVENTORY_SCRIPT % (os.path.join(VENV_BIN, "python"), json.dumps(inventory)))
        os.chmod(path, 0o700)
    else:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(inventory or "")


# -- jobs ------------------------------------------------------------------------------------------------------------

def new_job(root, name, playbook, *, extravars=None, inventory=None, credentials=(), envvars=None,
            workflow_job_id=None, streamed=False, verbosity=0, forks=None, limit=None, job_timeout=600, check=False):
    """Lay out a job's private data directory ``<root>/<name>`` and return its Job (not run yet).

    ``playbook`` is a collection playbook's FQCN (``wfu.multisite.migration_list``, imported by the job's
    playbook) or the YAML text of plays. ``credentials`` is a list of ``(credential type name or path, inputs)``.
    """
    private_data_dir = os.path.join(str(root), name)
    if os.path.exists(private_data_dir):
        raise FileExistsError("job %s exists already: every job gets a new private data dir" % private_data_dir)
    run_dir = private_data_dir + "-worker" if streamed else private_data_dir
    job = Job(name=name, private_data_dir=private_data_dir, run_dir=run_dir, ident=name,
              job_id=os.getpid() * 1000 + next(_job_numbers), streamed=streamed, verbosity=verbosity, forks=forks,
              limit=limit, check=check)
    for part in ("project", "inventory", "env", "home"):
        os.makedirs(os.path.join(private_data_dir, part))
    if "\n" not in playbook and playbook.count(".") >= 2:
        playbook = "---\n- name: %s, as an AWX job template runs it\n  ansible.builtin.import_playbook: %s\n" % (
            playbook, playbook)
    with open(os.path.join(private_data_dir, "project", PLAYBOOK), "w", encoding="utf-8") as handle:
        handle.write(playbook)
    _write_inventory(os.path.join(private_data_dir, "inventory"), inventory)

    job_vars = {"awx_job_id": job.job_id, "tower_job_id": job.job_id, "awx_job_template_name": name}
    if workflow_job_id is not None:
        job_vars.update(awx_workflow_job_id=workflow_job_id, tower_workflow_job_id=workflow_job_id)
    env = {"HOME": job.home, JOB_MARKER: job.marker, "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
           "ANSIBLE_NOCOLOR": "1", "PATH": VENV_BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")}
    env.update(envvars or {})
    all_vars = dict(extravars or {})
    env_dir = os.path.join(private_data_dir, "env")
    for credential_type, inputs in credentials:
        injection = inject_credential(load_credential_type(credential_type), inputs, env_dir,
                                      visible_dir=os.path.join(run_dir, "env"))
        env.update(injection.env)
        all_vars.update(injection.extra_vars)
    all_vars.update(job_vars)
    _write_json(os.path.join(env_dir, "extravars"), all_vars)
    _write_json(os.path.join(env_dir, "envvars"), env)
    _write_json(os.path.join(env_dir, "settings"), {"job_timeout": job_timeout, "pexpect_timeout": PEXPECT_TIMEOUT,
                                                    "suppress_ansible_output": True})
    return job


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    os.chmod(path, 0o600)


def run_job(job):
    """Run a job to its end (successful, failed, canceled or timeout), then end its execution environment; return
    it with status, rc, events, stdout and leftover_processes."""
    try:
        if job.streamed:
            _run_streamed(job)
        else:
            import ansible_runner

            ansible_runner.run(private_data_dir=job.private_data_dir, playbook=PLAYBOOK, ident=job.ident,
                               verbosity=job.verbosity or None, forks=job.forks, limit=job.limit, quiet=True,
                               # a job template of job type "check"
                               cmdline="--check" if job.check else None,
                               cancel_callback=job.cancel_requested.is_set)
    finally:
        job.leftover_processes = tear_down(job)
    _read_artifacts(job)
    return job


def start_job(job):
    """Run a job in a thread (started, returned): ``thread.join()`` waits for it."""
    thread = threading.Thread(target=run_job, args=(job,), name="job-" + job.name, daemon=True)
    thread.start()
    return thread


def cancel(job):
    """Cancel a job as AWX does; a job not started yet is canceled when it starts."""
    job.cancel_requested.set()


def _runner_options(job):
    options = ["--ident", job.ident]
    if job.verbosity:
        options.append("-" + "v" * job.verbosity)
    if job.forks:
        options += ["--forks", str(job.forks)]
    if job.limit:
        options += ["--limit", job.limit]
    return options


def _run_streamed(job):
    env = ansible_env()
    transmit = subprocess.Popen([ANSIBLE_RUNNER, "transmit", job.private_data_dir, "-p", PLAYBOOK]
                                + _runner_options(job), stdout=subprocess.PIPE, env=env)
    worker = subprocess.Popen([ANSIBLE_RUNNER, "worker", "--private-data-dir", job.run_dir, "--delete"],
                              stdin=transmit.stdout, stdout=subprocess.PIPE, env=env, start_new_session=True)
    transmit.stdout.close()
    process = subprocess.Popen([ANSIBLE_RUNNER, "process", job.private_data_dir, "--ident", job.ident],
                               stdin=worker.stdout, stdout=subprocess.DEVNULL, env=env)
    worker.stdout.close()
    finished = threading.Event()

    def forward_cancel():
        while not finished.wait(PEXPECT_TIMEOUT):
            if job.cancel_requested.is_set():
                # The worker's cancel: ansible-runner then SIGKILLs the playbook's process group.
                worker.send_signal(signal.SIGTERM)
                return

    watcher = threading.Thread(target=forward_cancel, name="cancel-" + job.name, daemon=True)
    watcher.start()
    try:
        for proc in (transmit, worker, process):
            proc.wait()
    finally:
        finished.set()
        watcher.join()


def _job_processes(job):
    marker = ("%s=%s" % (JOB_MARKER, job.marker)).encode("utf-8")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if marker in environ:
            yield int(entry)


def tear_down(job):
    """SIGKILL every process of the job that is still there, as the removal of AWX's container does; return them.

    ``run_job`` does this when the job ends; a test calls it too when it gives up waiting for a job."""
    killed = set()
    for _round in range(10):
        pids = set(_job_processes(job)) - {os.getpid()}
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.05)
    return sorted(killed)


def _read_artifacts(job):
    artifacts = job.artifact_dir
    for name in ("status", "rc"):
        path = os.path.join(artifacts, name)
        value = open(path, encoding="utf-8").read().strip() if os.path.exists(path) else None
        setattr(job, name, int(value) if name == "rc" and value not in (None, "") else value)
    events_dir = os.path.join(artifacts, "job_events")
    events = []
    for entry in os.listdir(events_dir) if os.path.isdir(events_dir) else ():
        if entry.endswith(".json"):
            with open(os.path.join(events_dir, entry), encoding="utf-8") as handle:
                events.append(json.load(handle))
    job.events = sorted(events, key=lambda event: event.get("counter", 0))
    stdout = os.path.join(artifacts, "stdout")
    job.stdout = open(stdout, encoding="utf-8", errors="replace").read() if os.path.exists(stdout) else ""


# -- secrets ---------------------------------------------------------------------------------------------------------

def secrets_in(job, *secrets):
    """Where any of ``secrets`` shows up in what a job left: ``["event 14 (runner_on_ok)", "stdout line 9",
    "artifacts/<ident>/job_events/14-....json", ...]``; empty when nowhere."""
    secrets = [str(secret) for secret in secrets if secret]
    found = []
    for event in job.events:
        text = json.dumps(event, ensure_ascii=False)
        if any(secret in text for secret in secrets):
            found.append("event %s (%s)" % (event.get("counter"), event.get("event")))
    for number, line in enumerate(job.stdout.splitlines(), 1):
        if any(secret in line for secret in secrets):
            found.append("stdout line %d" % number)
    artifacts_root = os.path.join(job.private_data_dir, "artifacts")
    for folder, _dirs, files in os.walk(artifacts_root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                data = handle.read()
            if any(secret.encode("utf-8") in data for secret in secrets):
                found.append(os.path.relpath(path, job.private_data_dir))
    return found
