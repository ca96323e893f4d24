# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A second home for a migration's backups: an S3 bucket, in the same layout as ``backup_dir``.

With ``backup_s3`` (``s3://bucket/prefix`` or ``{bucket, prefix, region, endpoint_url}``) each backup that
``rollback.write_backup`` wrote is uploaded before the swap, to ``<prefix>/<migration id>/site-<N>.sql.gz`` and its
manifest ``site-<N>.json`` (the manifest last, so a manifest in the bucket means its dump is complete); a failed
upload fails the site before its swap, so no site is replaced without its backup in the bucket.  A rollback whose
backup is missing from ``backup_dir`` (another controller, a throwaway AWX container) downloads it from the bucket
into ``backup_dir`` first; the usual checks (SHA-256, gzip integrity, row counts) then apply to what came down.

Credentials come only from boto3's default chain, as for media (``media.s3_client``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile

from ansible_collections.wfu.multisite.plugins.module_utils import media
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.errors import MISSING_BINARY, VERIFICATION, MigrationError

_URL = re.compile(r"^s3://([^/]+)/?(.*)$")
# Above this size a backup goes up in parts (boto3's managed transfer).
MULTIPART_THRESHOLD = 64 * 1024 * 1024


def backup_location(value):
    """The S3Location of a ``backup_s3`` setting, or None; ConfigError naming what is wrong."""
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        match = _URL.match(value.strip())
        if not match:
            raise ConfigError("backup_s3 must be s3://bucket/prefix or a mapping {bucket, prefix, region, "
                              "endpoint_url}, not %r" % value)
        value = {"bucket": match.group(1), "prefix": match.group(2)}
    try:
        return media.media_location("backups", {"s3": value})
    except MigrationError as exc:
        raise ConfigError(str(exc).replace("wfu_environments.backups.media.s3", "backup_s3")) from None


def _require_boto3():
    if not media.HAS_BOTO3:
        raise MigrationError("boto3 is needed for backup_s3 and is not installed on the host that runs the migration",
                             phase="backup", reason=MISSING_BINARY,
                             hint="install boto3 (pip install boto3) where the migration runs, or leave backup_s3 out")


def _key(location, backup_name, filename):
    return "%s%s/%s" % (location.prefix, backup_name, filename)


def _failure(exc, doing, location, key, phase):
    reason = media.media_failure_reason(exc)
    return MigrationError("%s s3://%s/%s failed: %s" % (doing, location.bucket, key, media._exception_text(exc)),
                          phase=phase, reason=reason,
                          hint="check backup_s3 (bucket, prefix, endpoint_url) and the credentials boto3 finds "
                               "(AWS_* variables, AWS_PROFILE, the instance or container role)")


def upload_backup(location, backup_name, report):
    """Upload the dump and then the manifest of ``report`` (what ``rollback.write_backup`` returned).

    Returns ``{bucket, dump, manifest}`` (keys; ``dump`` None for a site new to the target).
    """
    _require_boto3()
    client = media.s3_client(location)
    transfer = media.TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD)
    uploaded = {"bucket": location.bucket, "dump": None, "manifest": None}
    for field in ("path", "manifest"):
        path = report.get(field)
        if not path:
            continue
        key = _key(location, backup_name, os.path.basename(path))
        try:
            client.upload_file(path, location.bucket, key, Config=transfer,
                               ExtraArgs={"ContentType": "application/gzip" if path.endswith(".gz")
                                          else "application/json"})
            size = client.head_object(Bucket=location.bucket, Key=key)["ContentLength"]
        except Exception as exc:  # pylint: disable=broad-except
            raise _failure(exc, "uploading the backup %s to" % path, location, key, "backup") from exc
        if size != os.path.getsize(path):
            raise MigrationError("the backup s3://%s/%s holds %d bytes, the file %s %d" % (
                location.bucket, key, size, path, os.path.getsize(path)), phase="backup", reason=VERIFICATION)
        uploaded["dump" if field == "path" else "manifest"] = key
    return uploaded


def fetch_backup(location, backup_dir, backup_name, stem):
    """Bring ``<stem>.json`` (and the dump it names) from the bucket into ``<backup_dir>/<backup_name>/``.

    Called when the manifest is not in ``backup_dir``.  Files already there are left alone.  Returns the keys
    downloaded; a manifest the bucket does not have either returns ``[]`` (the rollback then says it is missing).
    """
    _require_boto3()
    client = media.s3_client(location)
    directory = os.path.join(os.path.expanduser(backup_dir), backup_name)
    fetched = []
    manifest_key = _key(location, backup_name, stem + ".json")
    try:
        client.head_object(Bucket=location.bucket, Key=manifest_key)
    except Exception as exc:  # pylint: disable=broad-except
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            return fetched
        raise _failure(exc, "reading", location, manifest_key, "verify_backup") from exc
    os.makedirs(directory, mode=0o700, exist_ok=True)
    manifest_path = os.path.join(directory, stem + ".json")
    _download(client, location, manifest_key, manifest_path)
    fetched.append(manifest_key)
    try:
        with open(manifest_path, encoding="utf-8") as handle:
            dump_name = json.load(handle).get("file")
    except (OSError, ValueError, AttributeError):
        dump_name = None
    if isinstance(dump_name, str) and dump_name == os.path.basename(dump_name) and dump_name != stem + ".json":
        dump_key = _key(location, backup_name, dump_name)
        if not os.path.exists(os.path.join(directory, dump_name)):
            _download(client, location, dump_key, os.path.join(directory, dump_name))
            fetched.append(dump_key)
    return fetched


def _download(client, location, key, path):
    """Download ``key`` to ``path`` through a temporary name: the file is complete or absent."""
    if os.path.exists(path):
        return
    fd, temporary = tempfile.mkstemp(prefix=".wfu-", suffix=".tmp", dir=os.path.dirname(path))
    os.close(fd)
    try:
        client.download_file(location.bucket, key, temporary)
        os.chmod(temporary, 0o600)
        os.link(temporary, path)
    except FileExistsError:
        pass
    except Exception as exc:  # pylint: disable=broad-except
        raise _failure(exc, "downloading the backup", location, key, "verify_backup") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def prune_backups(location, target_env, keep, check_mode=False):
    """``rollback.prune_backups`` for the bucket: keep the newest ``keep`` sets of ``target_env`` under the prefix.

    A set is ``<prefix><migration id>/`` with at least one manifest; its age is its earliest manifest's
    ``created``.  Only backup keys are deleted; a set holding other keys is left whole.  Listings are paged.
    Returns ``{kept, removed, left, bytes_removed}``.
    """
    from ansible_collections.wfu.multisite.plugins.module_utils import rollback

    rollback.check_keep(keep)
    _require_boto3()
    client = media.s3_client(location)
    sets = {}
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=location.prefix):
            for item in page.get("Contents", []):
                name, _slash, filename = item["Key"][len(location.prefix):].partition("/")
                if not _slash or not rollback.BACKUP_NAME_RE.match(name):
                    continue
                found = sets.setdefault(name, rollback.new_backup_set(name))
                if "/" in filename or not rollback.SET_FILE.match(filename):
                    found["others"].append(item["Key"])
                    continue
                found["files"].append(item["Key"])
                found["bytes"] += item.get("Size", 0)
                if filename.endswith(".json"):
                    try:
                        rollback.add_manifest(found, json.loads(
                            client.get_object(Bucket=location.bucket, Key=item["Key"])["Body"].read()))
                    except ValueError:
                        continue
    except Exception as exc:  # pylint: disable=broad-except
        raise _failure(exc, "listing the backups in", location, location.prefix, "cleanup") from exc

    def remove(found):
        for start in range(0, len(found["files"]), 1000):
            try:
                client.delete_objects(Bucket=location.bucket, Delete={
                    "Objects": [{"Key": key} for key in found["files"][start:start + 1000]], "Quiet": True})
            except Exception as exc:  # pylint: disable=broad-except
                raise _failure(exc, "deleting old backups from", location, found["name"], "cleanup") from exc

    return rollback.apply_retention(rollback.sets_of_target(sets.values(), target_env), keep, remove, check_mode)
