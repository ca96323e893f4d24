"""A site's parts after its tables, through the real role: media, the after_site/after_run hooks, and their resume.

Each site's tables, then its media (``wfu_media_sync``), then the ``after_site_tasks`` hook; the state records
each part as it is done (``phases_done``), so a run that failed in the media or the hook does only that part
again on resume.  That the tables were not copied again is read from the target: a marker row written into
the site's options table after the first run survives only when its tables are left alone.  Media live in
directories (rsync) or in buckets of moto's S3 server on loopback; the hooks write files the test reads.
"""

import json
import os
import shutil
import signal

import pytest
from helpers import connect, files_below, query, write_inventory
from moto_s3 import CREDENTIAL_ENV, MotoServer
from role_helpers import SOURCE_URL, MigrationSetup, module_processes, sites_with_status, wait_for

from tools.wpnetwork import NetworkSpec

AFTER_SITE = """
- name: Write what the role gives the hook
  ansible.builtin.copy:
    dest: "{{ hook_dir }}/site-{{ lookup('ansible.builtin.pipe', 'date +%s%N') }}-{{ wfu_site.id }}.json"
    content: "{{ wfu_site | to_json }}"
    mode: "0600"
  delegate_to: localhost

- name: Fail while the flag file exists, for the site it names
  ansible.builtin.fail:
    msg: "the hook of site {{ wfu_site.id }} failed on purpose"
  when: (hook_dir ~ '/fail-' ~ wfu_site.id) is exists
"""

AFTER_RUN = """
- name: Write what the role gives the run hook
  ansible.builtin.copy:
    dest: "{{ hook_dir }}/run-{{ lookup('ansible.builtin.pipe', 'date +%s%N') }}.json"
    content: "{{ wfu_run | to_json }}"
    mode: "0600"
  delegate_to: localhost
"""

SITES = 3


def uploads(root, site_ids, tag="v1"):
    """A WordPress uploads tree: the main site's files at the root, site N's under sites/N/; ``{relpath: bytes}``."""
    files = {}
    for site_id in site_ids:
        base = "" if site_id == 1 else "sites/%d/" % site_id
        for name in ("2026/01/photo-%d.jpg" % site_id, "2026/02/report.pdf", "2025/12/nested/deep/file.txt"):
            files[base + name] = ("%s site %d %s " % (tag, site_id, name)).encode() * (site_id * 50)
    for relpath, data in files.items():
        path = os.path.join(root, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    return files


tree = files_below


def hook_calls(hook_dir, kind="site"):
    calls = []
    for name in sorted(os.listdir(hook_dir)):
        if name.startswith(kind + "-") and name.endswith(".json"):
            with open(os.path.join(hook_dir, name), encoding="utf-8") as handle:
                calls.append(json.load(handle))
    return calls


def with_settings(setup, media=None, **extra_vars):
    """Rewrite the setup's inventory with ``media`` settings per environment and extra group vars."""
    environments = {
        "dev": {"url": SOURCE_URL, "db": setup.source.connection(setup.source_db)},
        "uat": {"url": "https://uat.example.edu", "db": setup.target.connection(setup.target_db)},
    }
    for name, settings in (media or {}).items():
        environments[name]["media"] = settings
    setup.inventory = write_inventory(setup.directory, environments, setup.migration.connection(setup.migration_db),
                                      **extra_vars)


def put_marker(setup, site_id, value):
    """A row in the target's options table of ``site_id``: it is gone if the site's tables are copied again."""
    table = "wp_options" if site_id == 1 else "wp_%d_options" % site_id
    with connect(setup.target, setup.target_db) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO `%s` (option_name, option_value, autoload) VALUES ('wfu_test_marker', %%s, 'no')"
                    % table, (value,))
        conn.commit()


def marker(setup, site_id):
    table = "wp_options" if site_id == 1 else "wp_%d_options" % site_id
    rows = query(setup.target, setup.target_db, "SELECT option_value FROM `%s` WHERE option_name = 'wfu_test_marker'"
                 % table)
    return rows[0][0] if rows else None


@pytest.fixture
def make_setup(servers, tmp_path):
    made = []

    def make(subdomain=False, name="run"):
        spec = NetworkSpec(url=SOURCE_URL, subdomain=subdomain, sites=SITES, seed=7, posts_per_site=2)
        setup = MigrationSetup(servers, tmp_path / name, spec)
        made.append(setup)
        hooks = tmp_path / name / "hooks"
        hooks.mkdir()
        (hooks / "after_site.yml").write_text(AFTER_SITE)
        (hooks / "after_run.yml").write_text(AFTER_RUN)
        setup.hook_dir = str(hooks)
        return setup

    yield make
    for setup in made:
        setup.drop()


@pytest.mark.parametrize("subdomain", [False, True], ids=["subdirectory", "subdomain"])
def test_each_site_gets_its_media_and_its_hook_and_a_second_run_copies_nothing(make_setup, tmp_path, subdomain):
    setup = make_setup(subdomain)
    dev, uat = tmp_path / "dev-uploads", tmp_path / "uat-uploads"
    files = uploads(dev, range(1, SITES + 1))
    # What the target has outside the migrated sites stays: a site the network does not have, and an old file of
    # site 2 (deleted only with media_delete).
    (uat / "sites" / "9").mkdir(parents=True)
    (uat / "sites" / "9" / "keep.txt").write_bytes(b"not part of this network's sites")
    (uat / "sites" / "2").mkdir(parents=True)
    (uat / "sites" / "2" / "old.txt").write_bytes(b"an old upload of uat")
    with_settings(setup, media={"dev": {"path": str(dev)}, "uat": {"path": str(uat)}}, hook_dir=setup.hook_dir)
    hooks = {"after_site_tasks": os.path.join(setup.hook_dir, "after_site.yml"),
             "after_run_tasks": os.path.join(setup.hook_dir, "after_run.yml")}

    done = setup.run(source_env="dev", target_env="uat", **hooks)
    assert done.returncode == 0, done.stdout[-6000:]
    state = setup.state()
    assert sites_with_status(state, "completed") == list(range(1, SITES + 1))
    target = tree(uat)
    for relpath, data in files.items():
        assert target.get(relpath) == data, relpath
    assert target["sites/9/keep.txt"] == b"not part of this network's sites"
    assert target["sites/2/old.txt"] == b"an old upload of uat"
    assert len(target) == len(files) + 2
    for site_id in range(1, SITES + 1):
        result = state["sites"][str(site_id)]["result"]
        assert result["media_copied"] == 3 and result["media_bytes"] == sum(
            len(data) for relpath, data in files.items()
            if (relpath.startswith("sites/%d/" % site_id) if site_id > 1 else not relpath.startswith("sites/")))
        # The tables' numbers are kept beside the media's.
        assert result["rows"] > 0 and result["url"] == setup.expected_urls[site_id]
    calls = hook_calls(setup.hook_dir)
    assert [call["id"] for call in calls] == list(range(1, SITES + 1))
    for call in calls:
        url = setup.expected_urls[call["id"]]
        assert call["url"] == url and url.startswith("https://" + call["domain"])
        assert call["path"].endswith("/") and (url + "/").endswith(call["path"])
        assert (call["source_env"], call["target_env"], call["migration_id"]) == ("dev", "uat", state["id"])
    [run_call] = hook_calls(setup.hook_dir, "run")
    assert run_call["status"] == "completed" and run_call["counters"]["completed"] == SITES
    assert run_call["migration_id"] == state["id"]
    assert "Media: 9 objects" in done.stdout

    again = setup.run(source_env="dev", target_env="uat", **hooks)
    assert again.returncode == 0, again.stdout[-6000:]
    [newer] = [migration_id for migration_id in setup.migration_ids() if migration_id != state["id"]]
    second = setup.state(newer)
    for site_id in range(1, SITES + 1):
        assert second["sites"][str(site_id)]["result"]["media_copied"] == 0
        assert second["sites"][str(site_id)]["result"]["media_unchanged"] == 3
    assert tree(uat) == target


def test_a_site_whose_media_failed_gets_only_its_media_again_on_resume(make_setup, tmp_path):
    setup = make_setup()
    dev, uat = tmp_path / "dev-uploads", tmp_path / "uat-uploads"
    files = uploads(dev, range(1, SITES + 1))
    # A file where site 3's directory must go: rsync cannot create sites/3/.
    (uat / "sites").mkdir(parents=True)
    (uat / "sites" / "3").write_bytes(b"in the way")
    with_settings(setup, media={"dev": {"path": str(dev)}, "uat": {"path": str(uat)}}, hook_dir=setup.hook_dir)

    first = setup.run(source_env="dev", target_env="uat")
    assert first.returncode != 0
    state = setup.state()
    record = state["sites"]["3"]
    assert (record["status"], record["phase"], record["phases_done"]) == ("failed", "media", ["tables"]), record
    assert sites_with_status(state, "completed") == [1, 2]
    # The tables are in and stay in: the rescue drops nothing of a site whose tables were swapped in.
    assert query(setup.target, setup.target_db, "SELECT option_value FROM wp_3_options WHERE option_name = 'home'")[0][0] \
        == setup.expected_urls[3]
    put_marker(setup, 3, "tables of the first attempt")

    os.remove(uat / "sites" / "3")
    resumed = setup.run(resume="latest")
    assert resumed.returncode == 0, resumed.stdout[-6000:]
    state = setup.state()
    record = state["sites"]["3"]
    assert (record["status"], record["attempts"], record.get("phases_done")) == ("completed", 2, None)
    assert marker(setup, 3) == "tables of the first attempt", "the resume copied site 3's tables again"
    assert record["result"]["media_copied"] == 3 and record["result"]["rows"] > 0
    target = tree(uat)
    assert all(target.get(relpath) == data for relpath, data in files.items())
    # Sites 1 and 2 were completed: the resume left them alone.
    assert [state["sites"][key]["attempts"] for key in ("1", "2")] == [1, 1]


def test_a_failing_site_hook_fails_its_site_in_phase_hook_and_resume_runs_only_the_hook(make_setup):
    setup = make_setup()
    with_settings(setup, hook_dir=setup.hook_dir)
    open(os.path.join(setup.hook_dir, "fail-2"), "w").close()
    hook = os.path.join(setup.hook_dir, "after_site.yml")

    first = setup.run(source_env="dev", target_env="uat", after_site_tasks=hook)
    assert first.returncode != 0
    assert "the hook of site 2 failed on purpose" in first.stdout
    state = setup.state()
    record = state["sites"]["2"]
    assert (record["status"], record["phase"], record["phases_done"]) == ("failed", "hook", ["tables"]), record
    assert "the hook of site 2 failed on purpose" in record["error"]
    assert sites_with_status(state, "completed") == [1, 3]
    put_marker(setup, 2, "tables of the first attempt")

    os.remove(os.path.join(setup.hook_dir, "fail-2"))
    resumed = setup.run(resume="latest")
    assert resumed.returncode == 0, resumed.stdout[-6000:]
    record = setup.state()["sites"]["2"]
    assert (record["status"], record["attempts"]) == ("completed", 2)
    assert marker(setup, 2) == "tables of the first attempt", "the resume copied site 2's tables again"
    # The hook ran for sites 1, 2 (failing), 3, then for site 2 alone; its URL came from the recorded tables.
    calls = hook_calls(setup.hook_dir)
    assert [call["id"] for call in calls] == [1, 2, 3, 2]
    assert calls[-1]["url"] == setup.expected_urls[2]


def test_media_between_buckets_through_the_role(make_setup, tmp_path, monkeypatch):
    boto3 = pytest.importorskip("boto3")
    server = MotoServer().start()
    try:
        for key, value in CREDENTIAL_ENV.items():
            monkeypatch.setenv(key, value)
        s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1")
        for bucket in ("wfu-dev", "wfu-uat"):
            s3.create_bucket(Bucket=bucket)
        local = tmp_path / "dev-files"
        files = uploads(local, range(1, SITES + 1))
        for relpath, data in files.items():
            s3.put_object(Bucket="wfu-dev", Key="wp-content/uploads/" + relpath, Body=data)
        s3.put_object(Bucket="wfu-uat", Key="wp-content/uploads/sites/9/keep.txt", Body=b"not ours")
        s3.put_object(Bucket="wfu-dev", Key="other/outside-uploads.txt", Body=b"not media")
        setup = make_setup()
        with_settings(setup, media={
            "dev": {"s3": {"bucket": "wfu-dev", "prefix": "wp-content/uploads", "endpoint_url": server.url}},
            "uat": {"s3": {"bucket": "wfu-uat", "prefix": "wp-content/uploads", "endpoint_url": server.url}}})

        checked = setup.run("--check", "-v", source_env="dev", target_env="uat")
        assert checked.returncode == 0, checked.stdout[-6000:]
        assert "would_copy" in checked.stdout
        # Per site, in words: site 2 has three objects of its own in the source.
        assert "Check mode: site 2 would copy 3 media objects" in " ".join(checked.stdout.split())
        assert s3.list_objects_v2(Bucket="wfu-uat")["KeyCount"] == 1

        done = setup.run(source_env="dev", target_env="uat")
        assert done.returncode == 0, done.stdout[-6000:]
        assert CREDENTIAL_ENV["AWS_SECRET_ACCESS_KEY"] not in done.stdout
        keys = {item["Key"]: item["Size"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="wfu-uat")
                for item in page.get("Contents", [])}
        expected = {"wp-content/uploads/" + relpath: len(data) for relpath, data in files.items()}
        expected["wp-content/uploads/sites/9/keep.txt"] = len(b"not ours")
        assert keys == expected
        for relpath, data in files.items():
            assert s3.get_object(Bucket="wfu-uat", Key="wp-content/uploads/" + relpath)["Body"].read() == data
        state_text = json.dumps(setup.state())
        assert CREDENTIAL_ENV["AWS_SECRET_ACCESS_KEY"] not in state_text
        shutil.rmtree(local)
    finally:
        server.stop()


def test_a_run_killed_during_a_sites_media_resumes_with_that_media_only(make_setup, tmp_path):
    """kill -9 of the run's process group while rsync copies site 2's media (a slow rsync first on PATH): the media
    module and its rsync stop with it, and the resume does site 2's media without copying its tables again."""
    setup = make_setup()
    dev, uat = tmp_path / "dev-uploads", tmp_path / "uat-uploads"
    files = uploads(dev, range(1, SITES + 1))
    with open(dev / "sites" / "2" / "2026" / "01" / "video.bin", "wb") as handle:
        handle.write(os.urandom(64 * 1024 * 1024))
    uat.mkdir()
    with_settings(setup, media={"dev": {"path": str(dev)}, "uat": {"path": str(uat)}})
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "rsync").write_text("#!/bin/sh\nexec %s --bwlimit=2000 \"$@\"\n" % shutil.which("rsync"))
    (slow / "rsync").chmod(0o755)
    environment = setup.env()
    setup.env = lambda: dict(environment, PATH="%s:%s" % (slow, environment["PATH"]))

    run = setup.start(source_env="dev", target_env="uat")
    try:
        wait_for(lambda: rsync_of_site(2), 120, "rsync of site 2's media", proc=run)
        record = setup.state()["sites"]["2"]
        assert (record["status"], record["phases_done"]) == ("in_progress", ["tables"]), record
        copying = rsync_of_site(2)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    wait_for(lambda: not [pid for pid in copying if alive(pid)], 30, "the killed run's rsync to stop")
    wait_for(lambda: not module_processes("wfu_media_sync", setup.module_tmp), 30, "the media module to stop")
    put_marker(setup, 2, "tables of the killed run")

    setup.env = lambda: environment
    resumed = setup.run(resume="latest")
    assert resumed.returncode == 0, resumed.stdout[-6000:]
    state = setup.state()
    assert sites_with_status(state, "completed") == list(range(1, SITES + 1))
    assert marker(setup, 2) == "tables of the killed run", "the resume copied site 2's tables again"
    assert state["sites"]["2"]["attempts"] == 2 and state["sites"]["1"]["attempts"] == 1
    target = tree(uat)
    assert all(target.get(relpath) == data for relpath, data in files.items())
    assert len(target["sites/2/2026/01/video.bin"]) == 64 * 1024 * 1024


def rsync_of_site(site_id):
    """pids of the rsync processes copying ``sites/<site_id>/``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    argv = handle.read().split(b"\0")
            except OSError:
                continue
            if argv and os.path.basename(argv[0]) == b"rsync" and any(
                    arg.rstrip(b"/").endswith(b"sites/%d" % site_id) for arg in argv):
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
