"""Media settings, WordPress's uploads layout, the sorted walk and merge, rsync's counts and failure classes.

The copies themselves run against a real S3 API in tests/integration/test_media_sync.py.
"""

import errno
import os

import botocore.exceptions
import pytest

from ansible_collections.wfu.multisite.plugins.module_utils import media
from ansible_collections.wfu.multisite.plugins.module_utils.errors import SITE, SYSTEMIC, MigrationError
from ansible_collections.wfu.multisite.plugins.module_utils.media import (
    MediaObject, PathLocation, S3Location, file_objects, media_failure_reason, media_location, paired, rsync_argv,
    rsync_counts, site_media)

# What rsync 3.2+ prints for --stats (LC_ALL=C), thousands separated by commas.
RSYNC_STATS = """
Number of files: 3,012 (reg: 3,000, dir: 12)
Number of created files: 301 (reg: 300, dir: 1)
Number of deleted files: 7 (reg: 5, dir: 2)
Number of regular files transferred: 1,300
Total file size: 12,345,678 bytes
Total transferred file size: 1,234,567 bytes
Literal data: 1,234,567 bytes
Matched data: 0 bytes
File list size: 0
Total bytes sent: 1,300,000
Total bytes received: 6,000

sent 1,300,000 bytes  received 6,000 bytes  2,612,000.00 bytes/sec
total size is 12,345,678  speedup is 9.45
"""
RSYNC_STATS_NOTHING = """
Number of files: 1 (dir: 1)
Number of created files: 0
Number of deleted files: 0
Number of regular files transferred: 0
Total file size: 0 bytes
Total transferred file size: 0 bytes
"""


# -- settings ---------------------------------------------------------------------------------------------------------

def test_s3_setting_is_normalized():
    location = media_location("uat", {"name": "uat", "s3": {"bucket": "wfu-uploads-uat", "prefix": "/wp-content/uploads/",
                                                            "region": "us-east-1", "endpoint_url": None}})
    assert location == S3Location(env="uat", bucket="wfu-uploads-uat", prefix="wp-content/uploads/",
                                  region="us-east-1")
    assert location.url("sites/3/") == "s3://wfu-uploads-uat/wp-content/uploads/sites/3/"
    assert media_location("dev", {"s3": {"bucket": "b12", "prefix": ""}}).prefix == ""


def test_path_setting_is_normalized():
    location = media_location("local", {"path": "/srv/www//wp-content/uploads/"})
    assert location == PathLocation(env="local", path="/srv/www/wp-content/uploads")
    assert location.url("sites/3/") == "/srv/www/wp-content/uploads/sites/3/"


@pytest.mark.parametrize("setting, where, says", [
    (None, "wfu_environments.uat.media", "must be a mapping"),
    ({}, "wfu_environments.uat.media", "exactly one of s3"),
    ({"s3": {"bucket": "abc"}, "path": "/x"}, "wfu_environments.uat.media", "exactly one of s3"),
    ({"bucket": "abc"}, "wfu_environments.uat.media.bucket", "is not a media setting"),
    ({"s3": {"prefix": "x"}}, "wfu_environments.uat.media.s3.bucket", "is missing"),
    ({"s3": {"bucket": "s3://abc/x"}}, "wfu_environments.uat.media.s3.bucket", "is not a bucket name"),
    ({"s3": {"bucket": "abc", "bukcet": "abc"}}, "wfu_environments.uat.media.s3.bukcet", "is not an S3 media setting"),
    ({"s3": {"bucket": "abc", "prefix": "a/../b"}}, "wfu_environments.uat.media.s3.prefix", "'..'"),
    ({"s3": {"bucket": "abc", "endpoint_url": "127.0.0.1:9000"}}, "wfu_environments.uat.media.s3.endpoint_url",
     "http:// or https://"),
    ({"s3": "abc"}, "wfu_environments.uat.media.s3", "must be a mapping"),
    ({"path": "wp-content/uploads"}, "wfu_environments.uat.media.path", "absolute"),
    ({"path": "/"}, "wfu_environments.uat.media.path", "root directory"),
])
def test_a_wrong_setting_names_the_environment_and_the_key(setting, where, says):
    with pytest.raises(MigrationError) as caught:
        media_location("uat", setting)
    error = caught.value
    assert error.message.startswith(where + " ") and says in error.message
    assert (error.phase, error.reason, error.failure_class) == ("media", "configuration", SYSTEMIC)


@pytest.mark.parametrize("key", ["aws_secret_access_key", "access_key", "session_token", "profile"])
def test_credentials_are_refused_without_repeating_them(key):
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with pytest.raises(MigrationError) as caught:
        media_location("prod", {"s3": {"bucket": "wfu-prod", key: secret}})
    text = str(caught.value)
    assert "wfu_environments.prod.media.s3.%s is not accepted" % key in text
    assert "default chain" in text and secret not in text


def test_overlapping_locations():
    dev = S3Location(env="dev", bucket="shared", prefix="")
    uat = S3Location(env="uat", bucket="shared", prefix="uat/")
    other = S3Location(env="uat", bucket="other", prefix="")
    assert dev.overlaps(uat) and uat.overlaps(dev) and not dev.overlaps(other)
    assert S3Location(env="a", bucket="b", prefix="dev/").overlaps(S3Location(env="c", bucket="b", prefix="dev/x/"))
    assert not S3Location(env="a", bucket="b", prefix="dev/").overlaps(S3Location(env="c", bucket="b", prefix="uat/"))
    assert PathLocation("a", "/srv/up").overlaps(PathLocation("b", "/srv/up/sites"))
    assert not PathLocation("a", "/srv/up").overlaps(PathLocation("b", "/srv/up2"))
    with pytest.raises(MigrationError, match="overlap") as caught:
        media.sync_site_media(dev, uat, 3)
    assert caught.value.failure_class == SYSTEMIC and caught.value.site_id == 3


# -- whose media is where ---------------------------------------------------------------------------------------------

def test_a_subsite_owns_exactly_its_directory():
    site = site_media(3)
    assert site.directory == "sites/3/" and not site.is_main
    assert site.owns("sites/3/2024/05/a.jpg")
    assert not site.owns("sites/30/a.jpg") and not site.owns("sites/3") and not site.owns("2024/a.jpg")


def test_the_main_site_owns_the_root_minus_sites():
    site = site_media(1)
    assert site.directory == "" and site.is_main
    for key in ("2024/05/a.jpg", "sites.txt", "sites0/a.jpg", "2024/sites/a.jpg", "sitesx"):
        assert site.owns(key), key
    assert not site.owns("sites/2/a.jpg")


def test_the_main_site_can_be_another_blog():
    main = site_media(5, main_site_id=5)
    assert main.is_main and main.directory == ""
    assert site_media(1, main_site_id=5).directory == "sites/1/"


@pytest.mark.parametrize("site_id, main_site_id", [(0, 1), (-2, 1), ("3", 1), (True, 1), (3, 0), (3.0, 1)])
def test_site_ids_are_positive_integers(site_id, main_site_id):
    with pytest.raises(MigrationError, match="must be a blog id"):
        site_media(site_id, main_site_id)


# -- walking and merging ----------------------------------------------------------------------------------------------

def _touch(root, relative, data=b"x"):
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


TREE = ["a-b", "a/x", "a0", "2024/05/é.jpg", "2024/05/e.jpg", "2024/sites/q.jpg", "sites.txt", "sites0/z",
        "sites/2/a.jpg", "sites/3/b/c.jpg", "sites/30/d.jpg", "zz/Z", "zz/a"]


def test_files_come_in_the_order_s3_lists_keys(tmp_path):
    for relative in TREE:
        _touch(str(tmp_path), relative)
    location = PathLocation("dev", str(tmp_path))
    main = [obj.key for obj in file_objects(location, site_media(1))]
    assert main == sorted((key for key in TREE if not key.startswith("sites/")), key=lambda k: k.encode("utf-8"))
    assert [obj.key for obj in file_objects(location, site_media(3))] == ["sites/3/b/c.jpg"]
    assert list(file_objects(location, site_media(4))) == []


def test_the_walk_skips_links_and_sweeps_temporary_files(tmp_path):
    _touch(str(tmp_path), "sites/3/a.jpg", b"abc")
    _touch(str(tmp_path), "sites/3/.wfu-media-0123abcd.part")
    os.symlink("/etc", str(tmp_path / "sites" / "3" / "etc"))
    os.symlink("/etc/hostname", str(tmp_path / "sites" / "3" / "hostname"))
    location = PathLocation("dev", str(tmp_path))
    objects = list(file_objects(location, site_media(3)))
    assert [(obj.key, obj.size) for obj in objects] == [("sites/3/a.jpg", 3)]
    assert os.path.exists(tmp_path / "sites" / "3" / ".wfu-media-0123abcd.part")
    list(file_objects(location, site_media(3), sweep=True))
    assert not os.path.exists(tmp_path / "sites" / "3" / ".wfu-media-0123abcd.part")


def _stream(keys, pulled):
    for key in keys:
        pulled.append(key)
        yield MediaObject(key=key, size=1)


def test_pairs_come_in_key_order_with_the_missing_side_none():
    source = ["a", "b", "d", "e"]
    target = ["b", "c", "e", "f"]
    pairs = [(s and s.key, t and t.key) for s, t in paired(_stream(source, []), _stream(target, []))]
    assert pairs == [("a", None), ("b", "b"), (None, "c"), ("d", None), ("e", "e"), (None, "f")]


def test_the_merge_reads_each_stream_only_as_far_as_it_has_come():
    pulled_source, pulled_target = [], []
    source = ("k%07d" % n for n in range(0, 10 ** 6, 2))
    target = ("k%07d" % n for n in range(0, 10 ** 6, 3))
    merged = paired(_stream(source, pulled_source), _stream(target, pulled_target))
    first = [next(merged) for _pair in range(10)]
    assert first[0][0].key == first[0][1].key == "k0000000"
    assert len(pulled_source) <= 8 and len(pulled_target) <= 6


def test_a_key_that_climbs_out_of_the_directory_is_refused(tmp_path):
    location = PathLocation("uat", str(tmp_path))
    for key in ("sites/3/../../etc/passwd", "sites/3//a", "./a", "sites/3/a/", "/abs"):
        with pytest.raises(MigrationError, match="cannot be stored as a file") as caught:
            media._file_path(location, key)
        assert caught.value.failure_class == SITE
    assert media._file_path(location, "sites/3/a.jpg") == os.path.join(str(tmp_path), "sites", "3", "a.jpg")


# -- rsync ------------------------------------------------------------------------------------------------------------

def test_rsync_argv_for_a_subsite_and_the_main_site():
    assert rsync_argv("/srv/dev/up/sites/3", "/srv/uat/up/sites/3/") == [
        "rsync", "--archive", "--stats", "--", "/srv/dev/up/sites/3/", "/srv/uat/up/sites/3/"]
    assert rsync_argv("/srv/dev/up", "/srv/uat/up", main_site=True, delete=True, check_mode=True) == [
        "rsync", "--archive", "--stats", "--exclude=/sites/", "--delete", "--dry-run", "--", "/srv/dev/up/",
        "/srv/uat/up/"]


def test_rsync_counts_read_the_stats():
    assert rsync_counts(RSYNC_STATS) == {"files": 3000, "deleted": 5, "transferred": 1300, "bytes": 1234567}
    assert rsync_counts(RSYNC_STATS_NOTHING) == {"files": 0, "deleted": 0, "transferred": 0, "bytes": 0}
    with pytest.raises(ValueError, match="no 'files' line"):
        rsync_counts("sent 10 bytes  received 20 bytes")


# -- failures ---------------------------------------------------------------------------------------------------------

def _client_error(code, operation="CopyObject"):
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": "m"}}, operation)


@pytest.mark.parametrize("exc, reason", [
    (_client_error("AccessDenied"), "access"),
    (_client_error("InvalidAccessKeyId"), "access"),
    (_client_error("SignatureDoesNotMatch"), "access"),
    (_client_error("ExpiredToken"), "access"),
    (_client_error("NoSuchBucket", "ListObjectsV2"), "configuration"),
    (_client_error("SlowDown"), "connection"),
    (_client_error("ServiceUnavailable"), "connection"),
    (botocore.exceptions.NoCredentialsError(), "access"),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "connection"),
    (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), "connection"),
    (OSError(errno.ENOSPC, "No space left on device"), "disk_full"),
    (OSError(errno.EROFS, "Read-only file system"), "read_only"),
    (OSError(errno.EACCES, "Permission denied"), "access"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "rsync"), "missing_binary"),
])
def test_environment_failures_are_systemic(exc, reason):
    assert media_failure_reason(exc) == reason
    sync = media._Sync(S3Location("dev", "wfu-dev"), PathLocation("uat", "/srv/uat"), site_media(7), None)
    error = sync.failure(exc, "copying sites/7/a.jpg")
    assert (error.failure_class, error.reason, error.phase, error.site_id) == (SYSTEMIC, reason, "media", 7)
    text = str(error)
    assert "Site 7, phase media: copying sites/7/a.jpg from s3://wfu-dev/sites/7/ (media of dev) to " \
           "/srv/uat/sites/7/ (media of uat) failed" in text
    assert "resume the migration" in text


@pytest.mark.parametrize("exc", [
    _client_error("NoSuchKey", "HeadObject"), _client_error("InvalidObjectState"),
    FileNotFoundError(errno.ENOENT, "No such file or directory", "/srv/dev/sites/7/a.jpg"),
    IsADirectoryError(errno.EISDIR, "Is a directory"),
])
def test_a_failure_of_one_object_is_the_site_s(exc):
    assert media_failure_reason(exc) == "site_data"
    sync = media._Sync(S3Location("dev", "wfu-dev"), S3Location("uat", "wfu-uat"), site_media(7), None)
    error = sync.failure(exc, "copying sites/7/a.jpg")
    assert error.failure_class == SITE and "retry_failed=true" in error.hint


def test_tuning_is_checked():
    source, target = S3Location("dev", "wfu-dev"), S3Location("uat", "wfu-uat")
    for tuning, says in (({"part_size": 1024}, "part_size"), ({"multipart_threshold": 6 * 1024 ** 3}, "5 GiB"),
                         ({"page_size": 0}, "page_size"), ({"workers": 0}, "workers")):
        with pytest.raises(MigrationError, match=says):
            media.sync_site_media(source, target, 3, **tuning)


def test_server_side_copies_need_one_service():
    source = S3Location("dev", "wfu-dev", endpoint_url="http://127.0.0.1:9000")
    with pytest.raises(MigrationError, match="one S3 service") as caught:
        media.sync_site_media(source, S3Location("uat", "wfu-uat"), 3)
    assert caught.value.failure_class == SYSTEMIC
