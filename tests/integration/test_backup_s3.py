"""Backups in a bucket too (``backup_s3``), through the real role and the real rollback playbook.

A run with ``backup_dir`` and ``backup_s3`` uploads each backup (dump, then manifest) to moto's S3 server on
loopback before its swap; with ``backup_dir`` emptied (another controller, a throwaway AWX container),
``migration_rollback`` brings the backups down from the bucket and puts the target back byte for byte.  A bucket
that cannot take the upload fails the site before its swap: the target keeps its tables.
"""

import json
import os
import shutil

import pytest
from helpers import fingerprint, query, row_counts, run_playbook
from moto_s3 import CREDENTIAL_ENV, MotoServer
from role_helpers import SOURCE_URL, TARGET_URL, MigrationSetup, sites_with_status

from tools.wpnetwork import NetworkSpec, load_network

boto3 = pytest.importorskip("boto3")

SITES = 3


@pytest.fixture
def moto(monkeypatch):
    server = MotoServer().start()
    for key, value in CREDENTIAL_ENV.items():
        monkeypatch.setenv(key, value)
    yield server
    server.stop()


@pytest.fixture
def setup(servers, tmp_path):
    spec = NetworkSpec(url=SOURCE_URL, sites=SITES, seed=11, posts_per_site=2)
    made = MigrationSetup(servers, tmp_path / "run", spec)
    load_network(made.target.connection(), made.target_db, NetworkSpec(url=TARGET_URL, sites=SITES, seed=12,
                                                                       posts_per_site=1))
    made.backup_dir = tmp_path / "backups"
    made.backup_dir.mkdir()
    yield made
    made.drop()


def target_state(setup):
    tables = fingerprint(setup.target, setup.target_db)
    return {"tables": tables, "rows": row_counts(setup.target, setup.target_db, sorted(tables)),
            "blogs": query(setup.target, setup.target_db, "SELECT * FROM wp_blogs ORDER BY blog_id")}


def bucket_keys(client, bucket):
    return sorted(item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for item in page.get("Contents", []))


def test_backups_go_to_the_bucket_and_a_rollback_brings_them_back(setup, moto):
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    client.create_bucket(Bucket="wfu-backups")
    before = target_state(setup)
    bucket = {"bucket": "wfu-backups", "prefix": "uat/db", "endpoint_url": moto.url}

    done = setup.run(source_env="dev", target_env="uat", backup_dir=str(setup.backup_dir), backup_s3=bucket)
    assert done.returncode == 0, done.stdout[-6000:]
    state = setup.state()
    assert sites_with_status(state, "completed") == list(range(1, SITES + 1))
    migration_id = state["id"]
    local = sorted(os.listdir(setup.backup_dir / migration_id))
    assert bucket_keys(client, "wfu-backups") == ["uat/db/%s/%s" % (migration_id, name) for name in local]
    assert "network.sql.gz" in local and "site-2.sql.gz" in local
    for name in local:
        body = client.get_object(Bucket="wfu-backups", Key="uat/db/%s/%s" % (migration_id, name))["Body"].read()
        assert body == (setup.backup_dir / migration_id / name).read_bytes()
    assert CREDENTIAL_ENV["AWS_SECRET_ACCESS_KEY"] not in done.stdout + json.dumps(state)
    assert target_state(setup) != before

    # The controller that ran it is gone: the rollback finds nothing in backup_dir and takes the bucket's copies
    # (backup_s3 comes from the migration's saved options).
    shutil.rmtree(setup.backup_dir / migration_id)
    rolled = run_playbook("wfu.multisite.migration_rollback", setup.inventory,
                          extra_vars={"migration_id": migration_id, "network_tables": "true"})
    assert "Rolled back migration %s" % migration_id in " ".join(rolled.stdout.split())
    assert target_state(setup) == before
    assert sorted(os.listdir(setup.backup_dir / migration_id)) == local


def test_a_bucket_that_refuses_the_backup_fails_the_site_before_its_swap(setup, moto):
    before = target_state(setup)
    # The bucket does not exist: every upload fails.
    done = setup.run(source_env="dev", target_env="uat", backup_dir=str(setup.backup_dir), network_tables="false",
                     include_sites="2", backup_s3={"bucket": "wfu-missing-bucket", "endpoint_url": moto.url})
    assert done.returncode != 0
    record = setup.state()["sites"]["2"]
    assert (record["status"], record["phase"]) == ("failed", "backup"), record
    assert "wfu-missing-bucket" in record["error"]
    assert target_state(setup) == before


def test_keep_backups_prunes_the_bucket_like_the_directory(setup, moto):
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    client.create_bucket(Bucket="wfu-backups")
    bucket = {"bucket": "wfu-backups", "prefix": "uat", "endpoint_url": moto.url}
    for _run in range(3):
        done = setup.run(source_env="dev", target_env="uat", backup_dir=str(setup.backup_dir), backup_s3=bucket,
                         include_sites="2", network_tables="false")
        assert done.returncode == 0, done.stdout[-6000:]
    ids = sorted(setup.migration_ids())
    assert len(ids) == 3
    # Someone else's object beside the sets, and a set of another target: both stay.
    client.put_object(Bucket="wfu-backups", Key="uat/README.txt", Body=b"ours")
    manifest = json.loads(client.get_object(Bucket="wfu-backups", Key="uat/%s/site-2.json" % ids[0])["Body"].read())
    client.put_object(Bucket="wfu-backups", Key="uat/dev-to-prod-2026-01-01T00-00-00/site-2.json",
                      Body=json.dumps(dict(manifest, target_env="prod", created="2026-01-01T00:00:00.000Z")).encode())
    before = bucket_keys(client, "wfu-backups")
    args = ["-e", json.dumps({"target_env": "uat", "keep_backups": 1, "backup_s3": bucket})]

    planned = run_playbook("wfu.multisite.migration_cleanup", setup.inventory, "--check", *args)
    assert "in the bucket: kept 1, would remove 2" in " ".join(planned.stdout.split())
    assert bucket_keys(client, "wfu-backups") == before

    run_playbook("wfu.multisite.migration_cleanup", setup.inventory, *args)
    left = bucket_keys(client, "wfu-backups")
    assert left == sorted(key for key in before if not key.startswith(("uat/%s/" % ids[0], "uat/%s/" % ids[1])))
    assert "uat/README.txt" in left and any(key.startswith("uat/%s/" % ids[2]) for key in left)
    assert any(key.startswith("uat/dev-to-prod-") for key in left)
