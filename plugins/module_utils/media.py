# -*- coding: utf-8 -*-
# Copyright: contributors to wfu.multisite
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A site's media (``wp-content/uploads``) from one environment to another.

Where the media lives is an environment's ``media`` setting::

    media: {s3: {bucket: wfu-uploads-dev, prefix: wp-content/uploads, region: us-east-1, endpoint_url: ...}}
    media: {path: /var/www/html/wp-content/uploads}

WordPress's layout below that root: site N >= 2 keeps its files under ``sites/N/``; the network's main site
owns everything else (the root minus ``sites/``).  ``sync_site_media()`` makes the target's part of one site
equal to the source's, in one of four ways:

``s3_copy`` (S3 -> S3)
    server-side ``CopyObject``, or ``UploadPartCopy`` parts above ``multipart_threshold``; no byte passes
    through the migration host.
``s3_download`` (S3 -> path)
    each object to a temporary file next to its final name, renamed into place when complete.
``s3_upload`` (path -> S3)
    ``upload_file`` (in parts above the threshold).
``rsync`` (path -> path)
    one ``rsync --archive`` of the site's directory, counted from its ``--stats``.

What counts as unchanged (and is not copied):

* S3 -> S3: the same size and the same ETag, or the same size and a target object whose metadata
  ``wfu-source-etag`` (written by every copy) is the source's ETag.  The ETag of a copy made in parts, or in an
  SSE-KMS bucket, is not the source's, so the second rule makes reruns copy nothing; it costs one ``HEAD`` of
  the target object, asked only when the sizes match and the ETags do not.
* S3 -> path: the same size and a file modification time equal to the object's ``LastModified`` (whole
  seconds); every download sets it.
* path -> S3: the same size and the file's MD5 equal to the object's ETag (a file uploaded in one part), or to
  the object's metadata ``wfu-source-md5`` (written by every upload; one ``HEAD``).  The MD5 is computed only
  for files whose size matches.
* path -> path: rsync's own rule (size and modification time).

Objects of the target that the source lacks are deleted only with ``delete=True``, and only inside the
site's part of the target: nothing outside it is listed, so nothing outside it can be touched.

Memory stays bounded whatever the number of objects: both sides are read as sorted streams (S3 listings
page by page, directories one at a time) and walked together in one merge; at most ``workers * 4`` copies
are in flight and at most 1000 deletions wait for their batch.

Credentials come only from boto3's default chain (environment variables, ``AWS_PROFILE``, the instance or
container role); no option takes a key, and none reaches a result or a message.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import math
import mimetypes
import os
import re
import secrets
import subprocess
import tempfile

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    from boto3.s3.transfer import TransferConfig
    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only without boto3
    boto3 = None
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = exc

from ansible_collections.wfu.multisite.plugins.module_utils.errors import (
    ACCESS, CONFIGURATION, CONNECTION, DISK_FULL, MISSING_BINARY, READ_ONLY, SITE_DATA, TIMEOUT, MigrationError,
    failure_reason, redact)
from ansible_collections.wfu.multisite.plugins.module_utils.processes import die_with_parent

PHASE = "media"

MIB = 1024 * 1024
# S3's limits: one CopyObject copies at most 5 GiB; a multipart upload has parts of 5 MiB or more
# (the last excepted) and at most 10000 of them.
MAX_SINGLE_COPY = 5 * 1024 * MIB
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10000
DEFAULT_MULTIPART_THRESHOLD = 64 * MIB
DEFAULT_PART_SIZE = 64 * MIB
DEFAULT_PAGE_SIZE = 1000
DEFAULT_WORKERS = 8
# DeleteObjects takes at most 1000 keys.
DELETE_BATCH = 1000

SOURCE_ETAG_KEY = "wfu-source-etag"
SOURCE_MD5_KEY = "wfu-source-md5"
# A download in progress; a leftover of an interrupted run is removed by the next real run.
TEMP_PREFIX = ".wfu-media-"
TEMP_SUFFIX = ".part"

# Seconds to open a connection to S3, and that one reply may keep it silent.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
# Attempts of one S3 request (botocore's standard retry mode: throttling, 5xx, broken connections).
MAX_ATTEMPTS = 4

# Headers of an object that a server-side copy with new metadata must repeat.
_CONTENT_HEADERS = ("ContentType", "CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage")
_S3_KEYS = frozenset(("bucket", "prefix", "region", "endpoint_url"))
_CREDENTIAL_KEY = re.compile(r"key|secret|token|password|credential|profile", re.IGNORECASE)
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,253}[a-z0-9]$", re.IGNORECASE)

_ACCESS_CODES = frozenset(("AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                           "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "AccountProblem",
                           "InvalidClientTokenId", "UnrecognizedClientException", "403"))
_UNAVAILABLE_CODES = frozenset(("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "502",
                                "503", "504"))
_MISSING_BUCKET_CODES = frozenset(("NoSuchBucket", "PermanentRedirect", "AuthorizationHeaderMalformed"))


# -- where the media lives --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (``""`` or ending in ``/``) that hold an environment's uploads."""

    env: str
    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    kind = "s3"

    def url(self, relative=""):
        return "s3://%s/%s%s" % (self.bucket, self.prefix, relative)

    def label(self, relative=""):
        return "%s (media of %s)" % (self.url(relative), self.env)

    def overlaps(self, other):
        return (isinstance(other, S3Location) and self.bucket == other.bucket
                and (self.prefix.startswith(other.prefix) or other.prefix.startswith(self.prefix)))


@dataclasses.dataclass(frozen=True)
class PathLocation:
    """A directory (absolute, normalized) that holds an environment's uploads on the migration host."""

    env: str
    path: str
    kind = "path"

    def url(self, relative=""):
        return os.path.join(self.path, relative) if relative else self.path + "/"

    def label(self, relative=""):
        return "%s (media of %s)" % (self.url(relative), self.env)

    def overlaps(self, other):
        if not isinstance(other, PathLocation):
            return False
        mine, theirs = os.path.realpath(self.path), os.path.realpath(other.path)
        return mine == theirs or mine.startswith(theirs + os.sep) or theirs.startswith(mine + os.sep)


def media_location(env, media):
    """The S3Location or PathLocation of environment ``env``'s ``media`` setting; MigrationError when it is wrong.

    ``media`` may also carry the environment's ``name`` (the module's options do); it is ignored here.
    """
    setting = "wfu_environments.%s.media" % env
    if not isinstance(media, dict):
        raise _setting_error(setting, "must be a mapping with either s3: {bucket, prefix, region, endpoint_url} "
                                      "or path: /.../wp-content/uploads")
    given = {key: value for key, value in media.items() if key != "name" and value is not None}
    unknown = sorted(set(given) - {"s3", "path"})
    if unknown:
        raise _setting_error("%s.%s" % (setting, unknown[0]), "is not a media setting; give s3 or path")
    if ("s3" in given) == ("path" in given):
        raise _setting_error(setting, "needs exactly one of s3 (a bucket) or path (a directory)")
    if "path" in given:
        return _path_location(env, setting + ".path", given["path"])
    return _s3_location(env, setting + ".s3", given["s3"])


def _path_location(env, setting, path):
    if not isinstance(path, str) or not path.strip():
        raise _setting_error(setting, "must be the directory that holds the uploads, e.g. "
                                      "/var/www/html/wp-content/uploads")
    if not os.path.isabs(path):
        raise _setting_error(setting, "must be an absolute path (it is read on the host that runs the "
                                      "migration), got %r" % path)
    normalized = os.path.normpath(path)
    if normalized == os.sep:
        raise _setting_error(setting, "must not be the root directory")
    return PathLocation(env=env, path=normalized)


def _s3_location(env, setting, s3):
    if not isinstance(s3, dict):
        raise _setting_error(setting, "must be a mapping: {bucket, prefix, region, endpoint_url}")
    given = {key: value for key, value in s3.items() if value is not None}
    for key in sorted(set(given) - _S3_KEYS):
        if _CREDENTIAL_KEY.search(key):
            raise _setting_error("%s.%s" % (setting, key), "is not accepted: S3 credentials come only from boto3's "
                                 "default chain (AWS_* environment variables, AWS_PROFILE, the instance or "
                                 "container role, e.g. an AWX credential); remove the key from the setting")
        raise _setting_error("%s.%s" % (setting, key), "is not an S3 media setting (bucket, prefix, region, "
                                                       "endpoint_url)")
    bucket = given.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise _setting_error(setting + ".bucket", "is missing: give the bucket that holds %s's uploads" % env)
    if not _BUCKET_NAME.match(bucket):
        raise _setting_error(setting + ".bucket", "%r is not a bucket name (3 to 255 letters, digits, dots, "
                                                  "hyphens; no s3:// and no path)" % bucket)
    prefix = given.get("prefix", "")
    if not isinstance(prefix, str):
        raise _setting_error(setting + ".prefix", "must be a key prefix such as wp-content/uploads")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise _setting_error(setting + ".prefix", "%r has an empty, '.' or '..' part" % prefix)
    for key in ("region", "endpoint_url"):
        if key in given and (not isinstance(given[key], str) or not given[key]):
            raise _setting_error("%s.%s" % (setting, key), "must be a non-empty string")
    endpoint_url = given.get("endpoint_url")
    if endpoint_url is not None and not re.match(r"^https?://[^/\s]+", endpoint_url):
        raise _setting_error(setting + ".endpoint_url", "must be an http:// or https:// URL, got %r"
                             % redact(endpoint_url))
    return S3Location(env=env, bucket=bucket, prefix=prefix + "/" if prefix else "", region=given.get("region"),
                      endpoint_url=endpoint_url)


def _setting_error(setting, problem):
    return MigrationError("%s %s" % (setting, problem), phase=PHASE, reason=CONFIGURATION)


# -- whose media is where ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SiteMedia:
    """The part of an uploads tree that belongs to one site (keys are relative to the tree's root)."""

    site_id: int
    main_site_id: int = 1

    @property
    def is_main(self):
        return self.site_id == self.main_site_id

    @property
    def directory(self):
        """``sites/N/`` for a subsite; ``""`` (the whole root, ``sites/`` left out) for the main site."""
        return "" if self.is_main else "sites/%d/" % self.site_id

    def owns(self, key):
        return not key.startswith("sites/") if self.is_main else key.startswith(self.directory)


def site_media(site_id, main_site_id=1):
    """The SiteMedia of a site; MigrationError unless both ids are positive integers."""
    for name, value in (("site_id", site_id), ("main_site_id", main_site_id)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise MigrationError("%s must be a blog id (an integer >= 1), got %r" % (name, value), phase=PHASE,
                                 reason=CONFIGURATION)
    return SiteMedia(site_id=site_id, main_site_id=main_site_id)


@dataclasses.dataclass(frozen=True)
class MediaObject:
    """One object or file: its key relative to the root, size, ETag (S3, unquoted) and mtime (whole seconds)."""

    key: str
    size: int
    etag: str | None = None
    mtime: int | None = None


# -- the result -------------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class MediaSyncResult:
    """What a sync did; in check mode, the ``would_*`` counts say what a real run would do."""

    site_id: int
    source: str
    target: str
    method: str
    check_mode: bool = False
    copied: int = 0
    copied_bytes: int = 0
    unchanged: int = 0
    deleted: int = 0
    would_copy: int = 0
    would_copy_bytes: int = 0
    would_delete: int = 0

    @property
    def changed(self):
        return bool(self.would_copy or self.would_delete) if self.check_mode else bool(self.copied or self.deleted)

    def count_copy(self, size):
        if self.check_mode:
            self.would_copy += 1
            self.would_copy_bytes += size
        else:
            self.copied += 1
            self.copied_bytes += size

    def count_deletions(self, number):
        if self.check_mode:
            self.would_delete += number
        else:
            self.deleted += number

    def as_dict(self):
        return dataclasses.asdict(self)


# -- the sync ---------------------------------------------------------------------------------------------------------

def sync_site_media(source, target, site_id, main_site_id=1, delete=False, check_mode=False, deadline=None,
                    multipart_threshold=DEFAULT_MULTIPART_THRESHOLD, part_size=DEFAULT_PART_SIZE,
                    page_size=DEFAULT_PAGE_SIZE, workers=DEFAULT_WORKERS):
    """Make the target's media of one site equal to the source's; return a MediaSyncResult.

    ``source`` and ``target`` are S3Location or PathLocation values (``media_location()``).  ``deadline`` is
    anything with ``expired()`` and ``remaining()`` (seconds, None for no limit), e.g. the
    call's ``Deadline``; when it passes, the sync stops between objects.  Every failure is a
    MigrationError of phase ``media`` that names the site, the locations and the next step, classified
    ``systemic`` for connection, credential, disk-full and configuration problems; its ``counts`` attribute
    holds what was done before it (a rerun skips that).
    """
    site = site_media(site_id, main_site_id)
    _check_tuning(multipart_threshold, part_size, page_size, workers)
    if source.overlaps(target):
        raise MigrationError("the media of %s and %s overlap (%s, %s); a sync needs two separate locations"
                             % (source.env, target.env, source.url(), target.url()), site_id=site.site_id,
                             phase=PHASE, reason=CONFIGURATION)
    if isinstance(source, PathLocation) and isinstance(target, PathLocation):
        sync = _RsyncSync(source, target, site, deadline)
    else:
        if not HAS_BOTO3:
            raise MigrationError("boto3 is needed for media in S3 and is not installed on the host that runs the "
                                 "migration", site_id=site.site_id, phase=PHASE, reason=MISSING_BINARY,
                                 hint="Install boto3 (pip install boto3) where the migration runs, then resume.")
        kind = {(S3Location, S3Location): _S3CopySync, (S3Location, PathLocation): _DownloadSync,
                (PathLocation, S3Location): _UploadSync}[(type(source), type(target))]
        sync = kind(source, target, site, deadline, multipart_threshold=multipart_threshold, part_size=part_size,
                    page_size=page_size, workers=workers)
    result = MediaSyncResult(site_id=site.site_id, source=source.url(site.directory),
                             target=target.url(site.directory), method=sync.method, check_mode=check_mode)
    try:
        sync.run(result, delete=delete, check_mode=check_mode)
    except Exception as exc:  # pylint: disable=broad-except
        error = sync.failure(exc, sync.doing)
        error.counts = result.as_dict()
        raise error from exc
    return result


def _check_tuning(multipart_threshold, part_size, page_size, workers):
    if not MIN_PART_SIZE <= part_size <= MAX_SINGLE_COPY:
        raise MigrationError("part_size must be between 5 MiB and 5 GiB, got %d bytes" % part_size, phase=PHASE,
                             reason=CONFIGURATION)
    if not 0 < multipart_threshold <= MAX_SINGLE_COPY:
        raise MigrationError("multipart_threshold must be at most 5 GiB (S3's limit for one copy), got %d bytes"
                             % multipart_threshold, phase=PHASE, reason=CONFIGURATION)
    if not 1 <= page_size <= 1000:
        raise MigrationError("page_size must be between 1 and 1000, got %d" % page_size, phase=PHASE,
                             reason=CONFIGURATION)
    if workers < 1:
        raise MigrationError("workers must be at least 1, got %d" % workers, phase=PHASE, reason=CONFIGURATION)


def paired(source_objects, target_objects):
    """``(source, target)`` for every key of two key-sorted streams of MediaObject, None on the side that lacks it.

    Only the current object of each stream is held, whatever their lengths.
    """
    source_objects, target_objects = iter(source_objects), iter(target_objects)
    src, tgt = next(source_objects, None), next(target_objects, None)
    while src is not None or tgt is not None:
        if tgt is None or (src is not None and src.key < tgt.key):
            yield src, None
            src = next(source_objects, None)
        elif src is None or tgt.key < src.key:
            yield None, tgt
            tgt = next(target_objects, None)
        else:
            yield src, tgt
            src, tgt = next(source_objects, None), next(target_objects, None)


class _Sync:
    """What every kind of sync shares: the failure it raises, and the time limit."""

    method = None

    def __init__(self, source, target, site, deadline):
        self.source = source
        self.target = target
        self.site = site
        self.deadline = deadline
        self.doing = "listing the media"

    def check_time(self):
        if self.deadline is not None and self.deadline.expired():
            raise MigrationError("the media sync did not finish within its time limit", site_id=self.site.site_id,
                                 phase=PHASE, reason=TIMEOUT)

    def refuse_deleting_from_nothing(self, source_is_empty):
        """With ``delete``, an empty source root would empty the target's site: far more likely a wrong setting."""
        if source_is_empty:
            raise MigrationError("%s holds no media at all, so delete=true would delete every object of the site in %s;"
                                 " nothing was changed" % (self.source.label(), self.target.label(self.site.directory)),
                                 site_id=self.site.site_id, phase=PHASE, reason=CONFIGURATION)

    def read_timeout(self):
        remaining = self.deadline.remaining() if self.deadline is not None else None
        return READ_TIMEOUT if remaining is None else max(5, min(READ_TIMEOUT, int(remaining) + 5))

    def failure(self, exc, doing):
        """The MigrationError for ``exc``, raised while ``doing`` (e.g. ``copying sites/3/a.jpg``)."""
        if isinstance(exc, MigrationError):
            exc.site_id = exc.site_id if exc.site_id is not None else self.site.site_id
            exc.phase = exc.phase or PHASE
            exc.hint = self.hint(exc.reason)
            return exc
        reason = media_failure_reason(exc)
        message = "%s from %s to %s failed: %s" % (
            doing, self.source.label(self.site.directory), self.target.label(self.site.directory),
            _exception_text(exc))
        return MigrationError(redact(message), site_id=self.site.site_id, phase=PHASE, reason=reason,
                              hint=self.hint(reason))

    def hint(self, reason):
        where = "%s and %s" % (self.source.url(), self.target.url())
        s3 = [loc for loc in (self.source, self.target) if isinstance(loc, S3Location)]
        resume = " The objects already copied are not copied again."
        if reason == CONNECTION:
            services = ", ".join(sorted({loc.endpoint_url or "S3 (%s)" % (loc.region or "default region")
                                         for loc in s3})) or "the storage"
            return ("Check that %s can be reached from the host that runs the migration, then resume the "
                    "migration.%s" % (services, resume))
        if reason == ACCESS:
            if s3:
                return ("Check the credentials boto3 finds on the host that runs the migration (AWS_* environment "
                        "variables, AWS_PROFILE, the instance or container role) and that they may read %s and "
                        "write %s, then resume the migration.%s" % (self.source.url(), self.target.url(), resume))
            return ("Check that the user who runs the migration may read %s and write %s, then resume the "
                    "migration.%s" % (self.source.url(), self.target.url(), resume))
        if reason in (DISK_FULL, READ_ONLY):
            return "Free space on (or make writable) the filesystem of %s, then resume the migration.%s" % (
                self.target.url(), resume)
        if reason == CONFIGURATION:
            return ("Fix the media settings of %s or %s in wfu_environments (%s), then resume the migration."
                    % (self.source.env, self.target.env, where))
        if reason == MISSING_BINARY:
            return "Install rsync on the host that runs the migration, then resume the migration."
        if reason == TIMEOUT:
            return ("Raise site_timeout (the media of a large site may need more time), then retry the site with "
                    "retry_failed=true.%s" % resume)
        return ("Look at the object named in the message in %s; fix or remove it, then retry the site with "
                "retry_failed=true.%s" % (self.source.url(), resume))


def media_failure_reason(exc):
    """Why a media operation failed, as one of the reasons of ``errors`` (systemic or not as they are)."""
    if HAS_BOTO3:
        if isinstance(exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError,
                            botocore.exceptions.CredentialRetrievalError,
                            botocore.exceptions.NoAuthTokenError)):
            return ACCESS
        if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionError,
                            botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError,
                            botocore.exceptions.ConnectionClosedError, botocore.exceptions.IncompleteReadError,
                            botocore.exceptions.ResponseStreamingError)):
            return CONNECTION
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _ACCESS_CODES:
                return ACCESS
            if code in _MISSING_BUCKET_CODES:
                return CONFIGURATION
            if code in _UNAVAILABLE_CODES:
                return CONNECTION
            return SITE_DATA
    if isinstance(exc, FileNotFoundError) and os.path.basename(str(exc.filename or "")) == "rsync":
        return MISSING_BINARY
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        # A file that went away, or a key that is a file on one side and a directory on the other.
        return SITE_DATA
    return failure_reason(exc)


def _exception_text(exc):
    text = str(exc)
    return text if text else type(exc).__name__


# -- S3 listings and clients ------------------------------------------------------------------------------------------

def s3_client(location, read_timeout=READ_TIMEOUT, pool_size=10):
    """A boto3 S3 client for a location, with credentials from boto3's default chain only."""
    config = botocore.config.Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=read_timeout,
                                    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                                    max_pool_connections=pool_size)
    return boto3.session.Session().client("s3", region_name=location.region, endpoint_url=location.endpoint_url,
                                          config=config)


def s3_objects(client, location, site, page_size=DEFAULT_PAGE_SIZE):
    """The site's objects under a location, in key order, one listing page in memory at a time."""
    root = location.prefix
    if not site.is_main:
        yield from _listing(client, location.bucket, root, root + site.directory, page_size)
        return
    for obj in _listing(client, location.bucket, root, root, page_size):
        if obj.key.startswith("sites/"):
            break
        yield obj
    else:
        return
    # The rest of the root sorts after every key of sites/ except those that go on with U+10FFFF (ignored below
    # like the others): list from there instead of paging through the subsites' objects.
    for obj in _listing(client, location.bucket, root, root, page_size, start_after=root + "sites/\U0010ffff"):
        if not obj.key.startswith("sites/"):
            yield obj


def _listing(client, bucket, root, prefix, page_size, start_after=None):
    arguments = {"Bucket": bucket, "Prefix": prefix, "PaginationConfig": {"PageSize": page_size}}
    if start_after:
        arguments["StartAfter"] = start_after
    for page in client.get_paginator("list_objects_v2").paginate(**arguments):
        for entry in page.get("Contents", ()):
            yield MediaObject(key=entry["Key"][len(root):], size=entry["Size"], etag=entry["ETag"].strip('"'),
                              mtime=int(entry["LastModified"].timestamp()))


# -- files ------------------------------------------------------------------------------------------------------------

def file_objects(location, site, sweep=False):
    """The site's regular files under a directory, in the order of their keys (as S3 sorts them).

    One directory's entries are held at a time.  Symbolic links are not followed; leftover temporary files
    of an interrupted download are skipped, and removed when ``sweep`` is true.
    """
    start = os.path.join(location.path, site.directory)
    if not os.path.isdir(start):
        return
    yield from _walk(start, site.directory, skip_sites=site.is_main, sweep=sweep)


def _walk(directory, relative, skip_sites, sweep):
    with os.scandir(directory) as entries:
        listed = []
        for entry in entries:
            is_dir = entry.is_dir(follow_symlinks=False)
            # Keys sort byte by byte with "/" after the directory's name: "a-b" < "a/x" < "a0".
            listed.append((entry.name + "/" if is_dir else entry.name, entry, is_dir))
    listed.sort(key=lambda item: item[0])
    for name, entry, is_dir in listed:
        if is_dir:
            if not (skip_sites and name == "sites/"):
                yield from _walk(entry.path, relative + name, False, sweep)
        elif _is_temporary(name):
            if sweep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        elif entry.is_file(follow_symlinks=False):
            info = entry.stat(follow_symlinks=False)
            yield MediaObject(key=relative + name, size=info.st_size, mtime=int(info.st_mtime))


def _is_temporary(name):
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def _file_md5(path, deadline_check):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(MIB), b""):
            digest.update(chunk)
            deadline_check()
    return digest.hexdigest()


def _file_path(location, key):
    """The file of ``key`` under a directory; MigrationError for a key that is no safe relative file name."""
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\0" in key:
        raise MigrationError("the object key %r cannot be stored as a file below %s (an empty, '.' or '..' part)"
                             % (key, location.path), phase=PHASE, reason=SITE_DATA)
    return os.path.join(location.path, *parts)


# -- object by object (S3 on one side at least) -----------------------------------------------------------------------

class _ObjectSync(_Sync):
    """Walk the two sorted sides together; copy in a bounded pool of threads, delete in batches."""

    def __init__(self, source, target, site, deadline, multipart_threshold, part_size, page_size, workers):
        super().__init__(source, target, site, deadline)
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.page_size = page_size
        self.workers = workers
        self.pending_deletions = []
        self.clients = {}

    def client(self, location):
        key = (location.region, location.endpoint_url)
        if key not in self.clients:
            self.clients[key] = s3_client(location, read_timeout=self.read_timeout(), pool_size=self.workers + 2)
        return self.clients[key]

    def run(self, result, delete, check_mode):
        self.check_mode = check_mode
        if delete:
            self.refuse_deleting_from_nothing(self.source_is_empty())
        window = self.workers * 4
        in_flight = set()
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                   thread_name_prefix="wfu-media") as pool:
            try:
                for src, tgt in paired(self.source_objects(), self.target_objects()):
                    self.check_time()
                    if src is None:
                        if delete:
                            self.delete_later(tgt, result)
                        continue
                    if tgt is not None and self.plainly_unchanged(src, tgt):
                        result.unchanged += 1
                        continue
                    in_flight.add(pool.submit(self.bring, src, tgt))
                    if len(in_flight) >= window:
                        in_flight = self.collect(in_flight, result, concurrent.futures.FIRST_COMPLETED)
                self.collect(in_flight, result, concurrent.futures.ALL_COMPLETED)
                self.doing = "deleting objects the source does not have"
                self.flush_deletions(result)
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise
        self.finish(result)

    def collect(self, in_flight, result, return_when):
        done, still = concurrent.futures.wait(in_flight, return_when=return_when)
        for future in done:
            copied, size = future.result()
            if copied:
                result.count_copy(size)
            else:
                result.unchanged += 1
        return still

    def bring(self, src, tgt):
        """In a worker: copy ``src`` unless ``tgt`` holds it already; ``(copied, size)``."""
        doing = "copying %s" % src.key
        try:
            self.check_time()
            if tgt is not None and self.unchanged(src, tgt):
                return False, src.size
            if not self.check_mode:
                self.copy(src)
            return True, src.size
        except Exception as exc:  # pylint: disable=broad-except
            raise self.failure(exc, doing) from exc

    def delete_later(self, tgt, result):
        if self.check_mode:
            result.count_deletions(1)
            return
        self.pending_deletions.append(tgt)
        if len(self.pending_deletions) >= DELETE_BATCH:
            self.doing = "deleting objects the source does not have"
            self.flush_deletions(result)
            self.doing = "listing the media"

    def flush_deletions(self, result):
        if self.pending_deletions:
            self.delete(self.pending_deletions)
            result.count_deletions(len(self.pending_deletions))
            self.pending_deletions = []

    def plainly_unchanged(self, src, tgt):
        """Whether ``tgt`` holds ``src`` by what the listings alone say (no request, no reading)."""
        return False

    def source_is_empty(self):
        if isinstance(self.source, S3Location):
            reply = self.client(self.source).list_objects_v2(Bucket=self.source.bucket, Prefix=self.source.prefix,
                                                             MaxKeys=1)
            return not reply.get("KeyCount")
        return _directory_is_empty(self.source.path)

    def finish(self, result):
        """After every copy and deletion."""


class _S3CopySync(_ObjectSync):
    method = "s3_copy"

    def __init__(self, source, target, site, deadline, **tuning):
        super().__init__(source, target, site, deadline, **tuning)
        if source.endpoint_url != target.endpoint_url:
            raise MigrationError("server-side copies need both buckets on one S3 service, but %s is at %s and %s at "
                                 "%s" % (source.url(), source.endpoint_url or "AWS S3", target.url(),
                                         target.endpoint_url or "AWS S3"), site_id=site.site_id, phase=PHASE,
                                 reason=CONFIGURATION)

    def source_objects(self):
        return s3_objects(self.client(self.source), self.source, self.site, self.page_size)

    def target_objects(self):
        return s3_objects(self.client(self.target), self.target, self.site, self.page_size)

    def plainly_unchanged(self, src, tgt):
        return src.size == tgt.size and src.etag == tgt.etag

    def unchanged(self, src, tgt):
        if src.size != tgt.size:
            return False
        if src.etag == tgt.etag:
            return True
        head = self.client(self.target).head_object(Bucket=self.target.bucket, Key=self.target.prefix + tgt.key)
        return head.get("Metadata", {}).get(SOURCE_ETAG_KEY) == src.etag

    def copy(self, src):
        source_client, target_client = self.client(self.source), self.client(self.target)
        copy_source = {"Bucket": self.source.bucket, "Key": self.source.prefix + src.key}
        head = source_client.head_object(**copy_source)
        etag = head["ETag"].strip('"')
        settings = {name: head[name] for name in _CONTENT_HEADERS if head.get(name)}
        settings["Metadata"] = dict(head.get("Metadata", {}), **{SOURCE_ETAG_KEY: etag})
        key = self.target.prefix + src.key
        size = head["ContentLength"]
        if size <= self.multipart_threshold:
            target_client.copy_object(Bucket=self.target.bucket, Key=key, CopySource=copy_source,
                                      CopySourceIfMatch='"%s"' % etag, MetadataDirective="REPLACE", **settings)
            return
        upload = target_client.create_multipart_upload(Bucket=self.target.bucket, Key=key, **settings)["UploadId"]
        try:
            part_size = max(self.part_size, math.ceil(size / MAX_PARTS / MIB) * MIB)
            parts = []
            for number, start in enumerate(range(0, size, part_size), start=1):
                self.check_time()
                end = min(start + part_size, size) - 1
                reply = target_client.upload_part_copy(
                    Bucket=self.target.bucket, Key=key, UploadId=upload, PartNumber=number, CopySource=copy_source,
                    CopySourceRange="bytes=%d-%d" % (start, end), CopySourceIfMatch='"%s"' % etag)
                parts.append({"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]})
            target_client.complete_multipart_upload(Bucket=self.target.bucket, Key=key, UploadId=upload,
                                                    MultipartUpload={"Parts": parts})
        except BaseException:
            with contextlib.suppress(Exception):
                target_client.abort_multipart_upload(Bucket=self.target.bucket, Key=key, UploadId=upload)
            raise

    def delete(self, objects):
        _delete_s3_objects(self.client(self.target), self.target, objects)


class _DownloadSync(_ObjectSync):
    method = "s3_download"

    def __init__(self, source, target, site, deadline, **tuning):
        super().__init__(source, target, site, deadline, **tuning)
        self.emptied = set()

    def run(self, result, delete, check_mode):
        if not os.path.isdir(self.target.path):
            raise _missing_directory(self.target, self.site)
        super().run(result, delete, check_mode)

    def source_objects(self):
        # A key that ends in "/" is a folder marker of the S3 console, not a file.
        return (obj for obj in s3_objects(self.client(self.source), self.source, self.site, self.page_size)
                if not obj.key.endswith("/"))

    def target_objects(self):
        return file_objects(self.target, self.site, sweep=not self.check_mode)

    def plainly_unchanged(self, src, tgt):
        return src.size == tgt.size and src.mtime == tgt.mtime

    def unchanged(self, src, tgt):
        return self.plainly_unchanged(src, tgt)

    def copy(self, src):
        final = _file_path(self.target, src.key)
        directory = os.path.dirname(final)
        os.makedirs(directory, exist_ok=True)
        temporary = os.path.join(directory, "%s%s%s" % (TEMP_PREFIX, secrets.token_hex(8), TEMP_SUFFIX))
        handle = os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
        try:
            with handle:
                self.client(self.source).download_fileobj(
                    self.source.bucket, self.source.prefix + src.key, handle, Callback=self.on_progress,
                    Config=TransferConfig(multipart_threshold=self.multipart_threshold,
                                          multipart_chunksize=self.part_size, use_threads=False))
            os.utime(temporary, (src.mtime, src.mtime))
            os.replace(temporary, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def on_progress(self, _bytes):
        self.check_time()

    def delete(self, objects):
        for obj in objects:
            path = _file_path(self.target, obj.key)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self.emptied.add(os.path.dirname(path))

    def finish(self, result):
        """Remove the directories the deletions left empty, up to the site's directory (never the root)."""
        stop = os.path.normpath(os.path.join(self.target.path, self.site.directory))
        for directory in sorted(self.emptied, key=len, reverse=True):
            while directory != stop and directory.startswith(stop + os.sep):
                try:
                    os.rmdir(directory)
                except OSError:
                    break
                directory = os.path.dirname(directory)


class _UploadSync(_ObjectSync):
    method = "s3_upload"

    def run(self, result, delete, check_mode):
        if not os.path.isdir(self.source.path):
            raise _missing_directory(self.source, self.site)
        super().run(result, delete, check_mode)

    def source_objects(self):
        return file_objects(self.source, self.site)

    def target_objects(self):
        return s3_objects(self.client(self.target), self.target, self.site, self.page_size)

    def unchanged(self, src, tgt):
        if src.size != tgt.size:
            return False
        md5 = _file_md5(os.path.join(self.source.path, src.key), self.check_time)
        if md5 == tgt.etag:
            return True
        head = self.client(self.target).head_object(Bucket=self.target.bucket, Key=self.target.prefix + tgt.key)
        return head.get("Metadata", {}).get(SOURCE_MD5_KEY) == md5

    def copy(self, src):
        path = os.path.join(self.source.path, src.key)
        try:
            src.key.encode("utf-8")
        except UnicodeEncodeError:
            raise MigrationError("the file name %r is not UTF-8 and cannot be an S3 key" % src.key, phase=PHASE,
                                 reason=SITE_DATA) from None
        settings = {"Metadata": {SOURCE_MD5_KEY: _file_md5(path, self.check_time)},
                    "ContentType": mimetypes.guess_type(src.key)[0] or "application/octet-stream"}
        self.client(self.target).upload_file(
            path, self.target.bucket, self.target.prefix + src.key, ExtraArgs=settings, Callback=self.on_progress,
            Config=TransferConfig(multipart_threshold=self.multipart_threshold, multipart_chunksize=self.part_size,
                                  use_threads=False))

    def on_progress(self, _bytes):
        self.check_time()

    def delete(self, objects):
        _delete_s3_objects(self.client(self.target), self.target, objects)


def _delete_s3_objects(client, location, objects):
    reply = client.delete_objects(Bucket=location.bucket, Delete={
        "Objects": [{"Key": location.prefix + obj.key} for obj in objects], "Quiet": True})
    errors = reply.get("Errors") or []
    if errors:
        first = errors[0]
        raise MigrationError("%d of %d deletions in %s failed, the first: %s: %s (%s)"
                             % (len(errors), len(objects), location.url(), first.get("Key"), first.get("Message"),
                                first.get("Code")), phase=PHASE,
                             reason=ACCESS if first.get("Code") in _ACCESS_CODES else SITE_DATA)


def _directory_is_empty(path):
    with os.scandir(path) as entries:
        return next(entries, None) is None


def _missing_directory(location, site):
    return MigrationError("the media directory %s does not exist on the host that runs the migration"
                          % location.label(), site_id=site.site_id, phase=PHASE, reason=CONFIGURATION)


# -- directory to directory -------------------------------------------------------------------------------------------

_STATS = {
    "files": re.compile(r"^Number of files: ([\d,.]+)(?: \((.*)\))?", re.MULTILINE),
    "deleted": re.compile(r"^Number of deleted files: ([\d,.]+)(?: \((.*)\))?", re.MULTILINE),
    "transferred": re.compile(r"^Number of regular files transferred: ([\d,.]+)", re.MULTILINE),
    "bytes": re.compile(r"^Total transferred file size: ([\d,.]+)", re.MULTILINE),
}
_RSYNC_REASONS = (
    (re.compile(r"no space left on device|disk quota exceeded", re.IGNORECASE), DISK_FULL),
    (re.compile(r"read-only file system", re.IGNORECASE), READ_ONLY),
    (re.compile(r"permission denied|operation not permitted", re.IGNORECASE), ACCESS),
)


def rsync_argv(source_directory, target_directory, main_site=False, delete=False, check_mode=False):
    """The rsync command that makes one site's directory in the target like the source's (no shell; paths last)."""
    argv = ["rsync", "--archive", "--stats"]
    if main_site:
        # Anchored: only the root's sites/ belongs to the subsites.  Excluded files are also safe from --delete.
        argv.append("--exclude=/sites/")
    if delete:
        argv.append("--delete")
    if check_mode:
        argv.append("--dry-run")
    return argv + ["--", os.path.join(source_directory, ""), os.path.join(target_directory, "")]


def rsync_counts(stats):
    """``{files, transferred, bytes, deleted}`` (regular files only) from ``rsync --stats`` output."""
    def number(text):
        return int(re.sub(r"[,.]", "", text))

    def regular(name):
        match = _STATS[name].search(stats)
        if match is None:
            raise ValueError("rsync printed no %r line in its --stats" % name)
        detail = re.search(r"\breg: ([\d,.]+)", match.group(2) or "")
        return number(detail.group(1)) if detail else 0

    counts = {"files": regular("files"), "deleted": regular("deleted")}
    for name in ("transferred", "bytes"):
        match = _STATS[name].search(stats)
        if match is None:
            raise ValueError("rsync printed no %r line in its --stats" % name)
        counts[name] = number(match.group(1))
    return counts


class _RsyncSync(_Sync):
    method = "rsync"

    def run(self, result, delete, check_mode):
        self.doing = "rsync"
        for location in (self.source, self.target):
            if not os.path.isdir(location.path):
                raise _missing_directory(location, self.site)
        if delete:
            self.refuse_deleting_from_nothing(_directory_is_empty(self.source.path))
        source_directory = os.path.join(self.source.path, self.site.directory)
        target_directory = os.path.join(self.target.path, self.site.directory)
        if not os.path.isdir(source_directory):
            if delete and os.path.isdir(target_directory):
                # The site has no media in the source: what the target has of it goes, as from an empty directory.
                with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as empty:
                    self.rsync(result, empty, target_directory, delete, check_mode)
            return
        if not check_mode:
            os.makedirs(target_directory, exist_ok=True)
        self.rsync(result, source_directory, target_directory, delete, check_mode)

    def rsync(self, result, source_directory, target_directory, delete, check_mode):
        self.check_time()
        argv = rsync_argv(source_directory, target_directory, main_site=self.site.is_main, delete=delete,
                          check_mode=check_mode)
        try:
            # rsync dies with the module (a task timeout, the OOM killer): nothing copies after the module is gone.
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
                                  env=dict(os.environ, LC_ALL="C"),
                                  preexec_fn=die_with_parent,  # pylint: disable=subprocess-popen-preexec-fn
                                  timeout=self.deadline.remaining() if self.deadline else None)
        except subprocess.TimeoutExpired:
            raise MigrationError("rsync did not finish within the time limit", site_id=self.site.site_id,
                                 phase=PHASE, reason=TIMEOUT) from None
        if done.returncode != 0:
            reason = next((reason for pattern, reason in _RSYNC_REASONS if pattern.search(done.stderr)), SITE_DATA)
            raise MigrationError("rsync from %s to %s failed (exit status %d): %s"
                                 % (self.source.label(self.site.directory), self.target.label(self.site.directory),
                                    done.returncode, done.stderr.strip()[-2000:]),
                                 site_id=self.site.site_id, phase=PHASE, reason=reason)
        counts = rsync_counts(done.stdout)
        result.unchanged = counts["files"] - counts["transferred"]
        if check_mode:
            result.would_copy, result.would_copy_bytes = counts["transferred"], counts["bytes"]
        else:
            result.copied, result.copied_bytes = counts["transferred"], counts["bytes"]
        result.count_deletions(counts["deleted"])
