"""A site's media between environments, against a real S3 API (moto's server on loopback) and real directories.

boto3 talks to ``moto_server`` through ``endpoint_url`` with dummy credentials from the environment (the
default chain); rsync copies between real directories; the module runs once in a real ``ansible-playbook``.
A proxy in front of the server breaks the network in the middle of a sync.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import textwrap
import time
import tracemalloc

import boto3
import botocore.config
import pytest
from helpers import COLLECTIONS, VENV_BIN, files_below, run_playbook
from moto_s3 import ACCESS_KEY, CREDENTIAL_ENV, SECRET_KEY, CuttingProxy, MotoServer

from ansible_collections.wfu.multisite.plugins.module_utils import media
from ansible_collections.wfu.multisite.plugins.module_utils.deadline import Deadline
from ansible_collections.wfu.multisite.plugins.module_utils.errors import SITE, SYSTEMIC, MigrationError
from tools.mariadb_servers import free_port

UPLOADS = "wp-content/uploads"
MIB = 1024 * 1024
# Every subsite of the big bucket, 3 next to 30 and 31 (whose keys start like its own).
SUBSITES = (2, 3, 4, 5, 6, 7, 8, 9, 30, 31)
# The main site's keys, some of them close to sites/ without being in it.
MAIN_KEYS = ["%d/%02d/photo-%d.jpg" % (2019 + n % 6, n % 12 + 1, n) for n in range(55)] + [
    "sites.txt", "sites0/a.jpg", "2024/05/sites/inside.jpg", "zz/last.pdf", "sitesX"]
PER_SUBSITE = 294


@pytest.fixture(scope="module")
def aws_environment():
    """Dummy credentials where boto3's default chain looks (and nowhere else: no profile files, no IMDS)."""
    saved = {key: os.environ.get(key) for key in CREDENTIAL_ENV}
    os.environ.update(CREDENTIAL_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def moto(aws_environment):
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(moto):
    """A client of the tests' own, straight to the server."""
    return boto3.client("s3", endpoint_url=moto.url, config=botocore.config.Config(max_pool_connections=16))


@pytest.fixture
def proxy(moto):
    cutting = CuttingProxy(moto.port).start()
    yield cutting
    cutting.stop()


def new_bucket(s3, objects=None):
    name = "wfu-%s" % secrets.token_hex(6)
    s3.create_bucket(Bucket=name)
    if objects:
        put(s3, name, objects)
    return name


def put(s3, bucket, objects, content_type="image/jpeg"):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: s3.put_object(Bucket=bucket, Key=item[0], Body=item[1], ContentType=content_type),
                      objects.items()))


def listing(s3, bucket, prefix=""):
    """``{key: (size, etag, last modified)}`` of a bucket."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", ()):
            found[entry["Key"]] = (entry["Size"], entry["ETag"], entry["LastModified"])
    return found


def body(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def location(bucket, url, prefix=UPLOADS, env="dev"):
    return media.media_location(env, {"s3": {"bucket": bucket, "prefix": prefix, "endpoint_url": url}})


def within(keys, directory):
    return {key for key in keys if key.startswith(directory)}


@pytest.fixture(scope="module")
def network_bucket(s3):
    """3000 objects: 60 of the main site and 294 for each of ten subsites, under wp-content/uploads/ (and one odd)."""
    objects = {"%s/%s" % (UPLOADS, key): ("main %s" % key).encode() for key in MAIN_KEYS}
    for site_id in SUBSITES:
        for n in range(PER_SUBSITE):
            key = "%s/sites/%d/%d/%02d/img-%04d.jpg" % (UPLOADS, site_id, 2020 + n % 5, n % 12 + 1, n)
            objects[key] = ("site %d image %d " % (site_id, n)).encode() * (1 + n % 7)
    assert len(objects) == 3000
    # Under sites/ but past the point the main site's listing resumes from: its filter must leave it out.
    objects["%s/sites/\U0010ffff/odd.jpg" % UPLOADS] = b"not the main site's"
    bucket = new_bucket(s3, objects)
    return bucket, objects


def foreign_objects():
    """What a target holds of other sites (and one leftover of site 3), which a sync of site 3 must not touch."""
    return {"%s/%s" % (UPLOADS, key): ("uat's own %s" % key).encode() for key in (
        "2018/01/uat-only.jpg", "sites.txt", "sites/2/2020/01/img-0000.jpg", "sites/30/2020/01/img-0000.jpg",
        "sites/31/x.jpg", "sites/3/2017/leftover.jpg")}


# -- S3 -> S3 ---------------------------------------------------------------------------------------------------------

def test_a_subsite_is_copied_and_nothing_else_is_touched(moto, s3, network_bucket):
    source_bucket, objects = network_bucket
    target_bucket = new_bucket(s3, foreign_objects())
    before = listing(s3, target_bucket)
    source, target = location(source_bucket, moto.url), location(target_bucket, moto.url, env="uat")
    site3 = within(objects, UPLOADS + "/sites/3/")
    assert len(site3) == PER_SUBSITE

    planned = media.sync_site_media(source, target, 3, check_mode=True, page_size=100)
    assert listing(s3, target_bucket) == before
    done = media.sync_site_media(source, target, 3, page_size=100)

    assert (planned.would_copy, planned.would_copy_bytes, planned.would_delete) == (
        done.copied, done.copied_bytes, done.deleted)
    assert done.copied == PER_SUBSITE and done.copied_bytes == sum(len(objects[key]) for key in site3)
    assert (done.unchanged, done.deleted, done.method, done.changed) == (0, 0, "s3_copy", True)
    assert done.source == "s3://%s/%s/sites/3/" % (source_bucket, UPLOADS)
    after = listing(s3, target_bucket)
    source_listing = listing(s3, source_bucket)
    assert set(after) == set(before) | site3
    for key in site3:
        assert after[key][:2] == source_listing[key][:2], key
    assert {key: after[key] for key in before} == before
    head = s3.head_object(Bucket=target_bucket, Key=sorted(site3)[0])
    assert head["ContentType"] == "image/jpeg"
    assert head["Metadata"] == {media.SOURCE_ETAG_KEY: source_listing[sorted(site3)[0]][1].strip('"')}

    again = media.sync_site_media(source, target, 3, page_size=100)
    assert (again.copied, again.unchanged, again.deleted, again.changed) == (0, PER_SUBSITE, 0, False)
    assert listing(s3, target_bucket) == after


def test_the_main_site_is_the_root_without_sites(moto, s3, network_bucket, proxy):
    source_bucket, objects = network_bucket
    target_bucket = new_bucket(s3, foreign_objects())
    before = listing(s3, target_bucket)
    source = location(source_bucket, proxy.url)
    target = location(target_bucket, proxy.url, env="uat")

    done = media.sync_site_media(source, target, 1, page_size=100)

    main = {key for key in objects if not key.startswith(UPLOADS + "/sites/")}
    assert len(main) == len(MAIN_KEYS) == 60
    # sites.txt is the main site's in both: the source's wins; nothing under sites/ is copied.
    assert done.copied == 60 and done.unchanged == 0
    after = listing(s3, target_bucket)
    assert set(after) == set(before) | main
    for key in within(before, UPLOADS + "/sites/"):
        assert after[key] == before[key]
    assert body(s3, target_bucket, UPLOADS + "/sites.txt") == objects[UPLOADS + "/sites.txt"]
    # The 2940 objects of the subsites are skipped, not paged through: 30 pages of 100 otherwise.
    source_pages = proxy.count("GET", "/%s?list-type=2" % source_bucket) + proxy.count(
        "GET", "/%s/?list-type=2" % source_bucket)
    assert 1 <= source_pages <= 3, proxy.requests[:5]


def test_a_changed_object_is_copied_again_and_only_it(moto, s3):
    objects = {"%s/sites/5/2024/%02d.jpg" % (UPLOADS, n): b"original %02d" % n for n in range(20)}
    source_bucket = new_bucket(s3, objects)
    target_bucket = new_bucket(s3)
    source, target = location(source_bucket, moto.url), location(target_bucket, moto.url, env="uat")
    assert media.sync_site_media(source, target, 5).copied == 20

    same_size = UPLOADS + "/sites/5/2024/03.jpg"
    bigger = UPLOADS + "/sites/5/2024/07.jpg"
    added = UPLOADS + "/sites/5/2024/new.jpg"
    put(s3, source_bucket, {same_size: b"changed! 03", bigger: b"changed and longer 07", added: b"new"})
    assert len(b"changed! 03") == len(objects[same_size])
    untouched = {key: value for key, value in listing(s3, target_bucket).items() if key not in (same_size, bigger)}

    planned = media.sync_site_media(source, target, 5, check_mode=True)
    done = media.sync_site_media(source, target, 5)

    assert (planned.would_copy, planned.would_copy_bytes) == (done.copied, done.copied_bytes) == (
        3, len(b"changed! 03") + len(b"changed and longer 07") + len(b"new"))
    assert done.unchanged == planned.unchanged == 18
    for key in (same_size, bigger, added):
        assert body(s3, target_bucket, key) == body(s3, source_bucket, key)
    assert {key: value for key, value in listing(s3, target_bucket).items() if key in untouched} == untouched
    assert media.sync_site_media(source, target, 5).copied == 0


def test_deletion_only_when_asked_and_only_in_the_site(moto, s3):
    objects = {"%s/sites/6/keep-%d.jpg" % (UPLOADS, n): b"k%d" % n for n in range(5)}
    source_bucket = new_bucket(s3, objects)
    # More extras than one DeleteObjects call takes.
    extras = {"%s/sites/6/gone/%04d.jpg" % (UPLOADS, n): b"old" for n in range(1005)}
    outside = {"%s/sites/60/x.jpg" % UPLOADS: b"other", "%s/2020/main.jpg" % UPLOADS: b"main",
               "elsewhere/sites/6/x.jpg": b"not uploads"}
    target_bucket = new_bucket(s3, dict(objects, **extras, **outside))
    source, target = location(source_bucket, moto.url), location(target_bucket, moto.url, env="uat")

    kept = media.sync_site_media(source, target, 6)
    assert (kept.copied, kept.unchanged, kept.deleted) == (0, 5, 0)
    assert len(listing(s3, target_bucket)) == 5 + 1005 + 3

    planned = media.sync_site_media(source, target, 6, delete=True, check_mode=True)
    assert (planned.would_delete, planned.deleted) == (1005, 0)
    assert len(listing(s3, target_bucket)) == 5 + 1005 + 3

    done = media.sync_site_media(source, target, 6, delete=True)
    assert done.deleted == planned.would_delete == 1005
    assert set(listing(s3, target_bucket)) == set(objects) | set(outside)
    assert media.sync_site_media(source, target, 6, delete=True).deleted == 0


def test_delete_from_a_source_that_holds_nothing_is_refused(moto, s3):
    source_bucket = new_bucket(s3, {UPLOADS + "/sites/2/a.jpg": b"a"})
    target_bucket = new_bucket(s3, {UPLOADS + "/sites/6/x.jpg": b"x", UPLOADS + "/2020/y.jpg": b"y"})
    before = listing(s3, target_bucket)
    target = location(target_bucket, moto.url, env="uat")

    # A prefix with a typo: the source root is empty, and deleting would empty the target's site.
    for site_id in (6, 1):
        with pytest.raises(MigrationError) as caught:
            media.sync_site_media(location(source_bucket, moto.url, prefix="wp-content/upload"), target, site_id,
                                  delete=True)
        assert (caught.value.failure_class, caught.value.reason) == (SYSTEMIC, "configuration")
        assert "s3://%s/wp-content/upload/ (media of dev) holds no media at all" % source_bucket in str(caught.value)
    assert listing(s3, target_bucket) == before

    # A site without media in a source that has some: the target's objects of the site go (only with delete).
    source = location(source_bucket, moto.url)
    assert media.sync_site_media(source, target, 6).deleted == 0
    assert media.sync_site_media(source, target, 6, delete=True).deleted == 1
    assert set(listing(s3, target_bucket)) == {UPLOADS + "/2020/y.jpg"}


def test_a_large_object_is_copied_in_parts(moto, s3):
    large = os.urandom(11 * MIB + 123)
    small = os.urandom(7 * MIB)
    source_bucket = new_bucket(s3)
    s3.put_object(Bucket=source_bucket, Key=UPLOADS + "/sites/8/video.mp4", Body=large, ContentType="video/mp4",
                  Metadata={"owner": "news"})
    s3.put_object(Bucket=source_bucket, Key=UPLOADS + "/sites/8/clip.mp4", Body=small, ContentType="video/mp4")
    target_bucket = new_bucket(s3)
    source, target = location(source_bucket, moto.url), location(target_bucket, moto.url, env="uat")
    tuning = {"multipart_threshold": 8 * MIB, "part_size": 5 * MIB}

    done = media.sync_site_media(source, target, 8, **tuning)

    assert (done.copied, done.copied_bytes) == (2, len(large) + len(small))
    head = s3.head_object(Bucket=target_bucket, Key=UPLOADS + "/sites/8/video.mp4")
    source_etag = s3.head_object(Bucket=source_bucket, Key=UPLOADS + "/sites/8/video.mp4")["ETag"].strip('"')
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"owner": "news", media.SOURCE_ETAG_KEY: source_etag}
    assert hashlib.sha256(body(s3, target_bucket, UPLOADS + "/sites/8/video.mp4")).digest() == \
        hashlib.sha256(large).digest()
    clip = s3.head_object(Bucket=target_bucket, Key=UPLOADS + "/sites/8/clip.mp4")["ETag"]
    assert "-" not in clip
    assert not s3.list_multipart_uploads(Bucket=target_bucket).get("Uploads")

    again = media.sync_site_media(source, target, 8, **tuning)
    assert (again.copied, again.unchanged) == (0, 2)


def test_a_network_failure_in_the_middle_then_the_rerun_completes(moto, s3, network_bucket, proxy):
    source_bucket, objects = network_bucket
    target_bucket = new_bucket(s3)
    source, target = location(source_bucket, proxy.url), location(target_bucket, proxy.url, env="uat")
    site4 = within(objects, UPLOADS + "/sites/4/")
    proxy.cut_after("PUT", 40)

    with pytest.raises(MigrationError) as caught:
        media.sync_site_media(source, target, 4, workers=4)

    error = caught.value
    assert proxy.broken
    assert (error.failure_class, error.reason, error.phase, error.site_id) == (SYSTEMIC, "connection", "media", 4)
    text = str(error)
    assert "s3://%s/%s/sites/4/" % (source_bucket, UPLOADS) in text and "resume the migration" in text
    present = listing(s3, target_bucket)
    assert 0 < error.counts["copied"] <= len(present) <= 40 < len(site4)
    source_listing = listing(s3, source_bucket)
    assert set(present) <= site4
    for key, value in present.items():
        assert value[:2] == source_listing[key][:2]

    proxy.heal()
    done = media.sync_site_media(source, target, 4, workers=4)
    assert done.unchanged == len(present) and done.copied == len(site4) - len(present)
    assert set(listing(s3, target_bucket)) == site4


def test_the_time_limit_stops_between_objects_and_the_rerun_goes_on(moto, s3, network_bucket):
    source_bucket, _objects = network_bucket
    target_bucket = new_bucket(s3)
    # A slow network: every object takes 40 ms or more, the whole site 12 s or more.
    slow = CuttingProxy(moto.port, delay=0.02).start()
    try:
        with pytest.raises(MigrationError) as caught:
            media.sync_site_media(location(source_bucket, slow.url), location(target_bucket, slow.url, env="uat"), 9,
                                  workers=1, deadline=Deadline(2))
    finally:
        slow.stop()

    error = caught.value
    assert (error.failure_class, error.reason, error.site_id) == (SITE, "timeout", 9)
    assert "site_timeout" in error.hint
    copied = error.counts["copied"]
    assert 0 < copied < PER_SUBSITE and len(listing(s3, target_bucket)) >= copied
    source, target = location(source_bucket, moto.url), location(target_bucket, moto.url, env="uat")
    done = media.sync_site_media(source, target, 9)
    assert done.copied + done.unchanged == PER_SUBSITE and done.unchanged >= copied


def test_an_unreachable_service_and_a_missing_bucket_are_systemic(moto, s3):
    source_bucket = new_bucket(s3, {UPLOADS + "/sites/3/a.jpg": b"a"})
    nobody = "http://127.0.0.1:%d" % free_port()
    started = time.monotonic()
    with pytest.raises(MigrationError) as caught:
        media.sync_site_media(location(source_bucket, nobody), location("wfu-uat-gone", nobody, env="uat"), 3)
    assert time.monotonic() - started < 60
    assert (caught.value.failure_class, caught.value.reason) == (SYSTEMIC, "connection")
    assert nobody in caught.value.hint

    with pytest.raises(MigrationError) as caught:
        media.sync_site_media(location(source_bucket, moto.url), location("wfu-uat-gone", moto.url, env="uat"), 3)
    assert (caught.value.failure_class, caught.value.reason) == (SYSTEMIC, "configuration")
    assert "s3://wfu-uat-gone/%s/sites/3/ (media of uat)" % UPLOADS in str(caught.value)


# -- memory -----------------------------------------------------------------------------------------------------------

def _peak_of_check(source_bucket, s3, url):
    """The sync's result and its peak of traced memory, in check mode into an empty bucket (listing and merge)."""
    source = location(source_bucket, url, prefix="")
    target = location(new_bucket(s3), url, prefix="", env="uat")
    tracemalloc.start()
    try:
        result = media.sync_site_media(source, target, 7, page_size=100, check_mode=True)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def flat_buckets(s3):
    """Two buckets with 300 and 3000 objects of site 7 (at the bucket's root)."""
    return (new_bucket(s3, {"sites/7/%05d.jpg" % n: b"x%d" % n for n in range(300)}),
            new_bucket(s3, {"sites/7/%05d.jpg" % n: b"x%d" % n for n in range(3000)}))


def test_memory_does_not_grow_with_the_number_of_objects(moto, s3, flat_buckets):
    few, many = flat_buckets
    _peak_of_check(few, s3, moto.url)  # warm-up: botocore's caches

    small, small_peak = _peak_of_check(few, s3, moto.url)
    large, large_peak = _peak_of_check(many, s3, moto.url)

    assert (small.would_copy, large.would_copy) == (300, 3000)
    # Holding the 2700 more objects at once would cost about 700 KiB; page by page it costs nothing (measured
    # 13.4 MB for both, botocore's models included).
    assert large_peak - small_peak < 256 * 1024, (small_peak, large_peak)


def test_1200_objects_are_copied_listing_pages_of_the_given_size(moto, s3, proxy):
    many = new_bucket(s3, {"sites/7/%05d.jpg" % n: b"y%d" % n for n in range(1200)})
    target_bucket = new_bucket(s3)
    source, target = location(many, proxy.url, prefix=""), location(target_bucket, proxy.url, prefix="", env="uat")

    done = media.sync_site_media(source, target, 7, page_size=50)

    assert done.copied == 1200 and len(listing(s3, target_bucket)) == 1200
    assert _list_requests(proxy, many) == ["max-keys=50"] * 24
    proxy.clear()
    again = media.sync_site_media(source, target, 7, page_size=50)
    assert (again.copied, again.unchanged) == (0, 1200)
    assert _list_requests(proxy, many) == _list_requests(proxy, target_bucket) == ["max-keys=50"] * 24


def _list_requests(proxy, bucket):
    """The page size of every ListObjectsV2 request the proxy saw for a bucket."""
    return [re.search(r"max-keys=\d+", target).group(0) if "max-keys=" in target else "no max-keys"
            for method, target in proxy.requests
            if method == "GET" and "list-type=2" in target and target.split("?")[0].strip("/") == bucket]


# -- S3 <-> directory -------------------------------------------------------------------------------------------------

_files = files_below


def test_s3_to_a_directory(moto, s3, network_bucket, tmp_path):
    source_bucket, objects = network_bucket
    root = tmp_path / "uploads"
    (root / "sites" / "30").mkdir(parents=True)
    (root / "sites" / "30" / "theirs.jpg").write_bytes(b"site 30's")
    (root / "2010").mkdir()
    (root / "2010" / "main.jpg").write_bytes(b"main's")
    source = location(source_bucket, moto.url)
    target = media.media_location("local", {"path": str(root)})
    site3 = {key[len(UPLOADS) + 1:]: value for key, value in objects.items() if key.startswith(UPLOADS + "/sites/3/")}

    planned = media.sync_site_media(source, target, 3, check_mode=True)
    assert not (root / "sites" / "3").exists()
    done = media.sync_site_media(source, target, 3)

    assert (planned.would_copy, planned.would_copy_bytes) == (done.copied, done.copied_bytes)
    assert done.copied == PER_SUBSITE and done.method == "s3_download"
    assert _files(str(root)) == dict(site3, **{"sites/30/theirs.jpg": b"site 30's", "2010/main.jpg": b"main's"})
    modified = listing(s3, source_bucket, UPLOADS + "/sites/3/")[UPLOADS + "/sites/3/2020/01/img-0000.jpg"][2]
    assert int(os.stat(root / "sites/3/2020/01/img-0000.jpg").st_mtime) == int(modified.timestamp())
    assert media.sync_site_media(source, target, 3).copied == 0

    # A file changed in the target (same size, new time) is put back; a leftover download is swept; an extra
    # file goes only with delete, and its emptied directory with it.
    changed = root / "sites/3/2020/01/img-0000.jpg"
    changed.write_bytes(b"X" * len(site3["sites/3/2020/01/img-0000.jpg"]))
    leftover = root / "sites/3/2020/01" / (media.TEMP_PREFIX + "deadbeef" + media.TEMP_SUFFIX)
    leftover.write_bytes(b"half")
    (root / "sites/3/2016/07").mkdir(parents=True)
    (root / "sites/3/2016/07/extra.jpg").write_bytes(b"extra")
    planned = media.sync_site_media(source, target, 3, delete=True, check_mode=True)
    assert leftover.exists()
    done = media.sync_site_media(source, target, 3, delete=True)
    assert (planned.would_copy, planned.would_delete) == (done.copied, done.deleted) == (1, 1)
    assert changed.read_bytes() == site3["sites/3/2020/01/img-0000.jpg"]
    assert not leftover.exists() and not (root / "sites/3/2016").exists()
    assert (root / "sites" / "30" / "theirs.jpg").exists() and (root / "2010" / "main.jpg").exists()

    main = media.sync_site_media(source, target, 1, delete=True)
    assert main.copied == 60 and main.deleted == 1  # 2010/main.jpg; nothing under sites/
    assert (root / "sites" / "30" / "theirs.jpg").exists() and (root / "sites" / "3").is_dir()


def test_a_key_that_would_leave_the_directory_is_refused(moto, s3, tmp_path):
    source_bucket = new_bucket(s3, {"sites/3/a.jpg": b"a", "sites/3/../../escaped.txt": b"evil"})
    root = tmp_path / "uploads"
    root.mkdir()
    with pytest.raises(MigrationError) as caught:
        media.sync_site_media(location(source_bucket, moto.url, prefix=""),
                              media.media_location("local", {"path": str(root)}), 3)
    assert caught.value.failure_class == SITE and "sites/3/../../escaped.txt" in str(caught.value)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "escaped.txt").exists()


def test_a_download_cut_in_the_middle_leaves_only_whole_files(moto, s3, network_bucket, proxy, tmp_path):
    source_bucket, objects = network_bucket
    root = tmp_path / "uploads"
    root.mkdir()
    source, target = location(source_bucket, proxy.url), media.media_location("local", {"path": str(root)})
    site6 = {key[len(UPLOADS) + 1:]: value for key, value in objects.items() if key.startswith(UPLOADS + "/sites/6/")}
    proxy.cut_after("GET", 60)

    with pytest.raises(MigrationError) as caught:
        media.sync_site_media(source, target, 6, workers=4)

    assert (caught.value.failure_class, caught.value.reason) == (SYSTEMIC, "connection")
    present = _files(str(root))
    assert 0 < caught.value.counts["copied"] <= len(present) < len(site6)
    assert all(present[name] == site6[name] for name in present), "a file is incomplete or a download leftover"

    proxy.heal()
    done = media.sync_site_media(source, target, 6, workers=4)
    assert (done.copied, done.unchanged) == (len(site6) - len(present), len(present))
    assert _files(str(root)) == site6


KILLED_SYNC = textwrap.dedent("""\
    import sys
    sys.path.insert(0, sys.argv[1])
    from ansible_collections.wfu.multisite.plugins.module_utils import media
    source = media.media_location("dev", {"s3": {"bucket": sys.argv[2], "endpoint_url": sys.argv[3]}})
    target = media.media_location("local", {"path": sys.argv[4]})
    media.sync_site_media(source, target, 3)
    """)


def test_a_killed_download_leaves_the_previous_file_whole(moto, s3, tmp_path):
    new_version = os.urandom(24 * MIB)
    source_bucket = new_bucket(s3, {"sites/3/video.mp4": new_version})
    root = tmp_path / "uploads"
    (root / "sites" / "3").mkdir(parents=True)
    old_version = b"the previous video " * 1000
    (root / "sites" / "3" / "video.mp4").write_bytes(old_version)
    slow = CuttingProxy(moto.port, delay=0.02).start()
    try:
        process = subprocess.Popen([os.path.join(VENV_BIN, "python"), "-c", KILLED_SYNC, COLLECTIONS, source_bucket,
                                    slow.url, str(root)])
        give_up = time.monotonic() + 30
        while time.monotonic() < give_up and not any(
                name.startswith(media.TEMP_PREFIX) and (root / "sites" / "3" / name).stat().st_size > MIB
                for name in os.listdir(root / "sites" / "3")):
            time.sleep(0.05)
        process.kill()
        process.wait()
    finally:
        slow.stop()

    assert (root / "sites" / "3" / "video.mp4").read_bytes() == old_version
    leftovers = [name for name in os.listdir(root / "sites" / "3") if name.startswith(media.TEMP_PREFIX)]
    assert len(leftovers) == 1, "the download was not caught in the middle"
    done = media.sync_site_media(location(source_bucket, moto.url, prefix=""),
                                 media.media_location("local", {"path": str(root)}), 3)
    assert done.copied == 1
    assert os.listdir(root / "sites" / "3") == ["video.mp4"]
    assert (root / "sites" / "3" / "video.mp4").read_bytes() == new_version


def test_a_directory_to_s3(moto, s3, tmp_path):
    root = tmp_path / "uploads"
    files = {"sites/4/2024/%02d/pic-%d.jpg" % (n % 12 + 1, n): os.urandom(100 + n) for n in range(40)}
    files["sites/4/docs/report.pdf"] = b"%PDF-1.4 " * 50
    files["sites/40/not-mine.jpg"] = b"site 40"
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    (root / "sites/4/big.bin").write_bytes(os.urandom(9 * MIB))
    source = media.media_location("local", {"path": str(root)})
    target_bucket = new_bucket(s3, {UPLOADS + "/sites/4/old.jpg": b"old", UPLOADS + "/sites/40/x.jpg": b"x"})
    target = location(target_bucket, moto.url, env="uat")
    tuning = {"multipart_threshold": 8 * MIB, "part_size": 5 * MIB}

    planned = media.sync_site_media(source, target, 4, check_mode=True, **tuning)
    done = media.sync_site_media(source, target, 4, **tuning)

    assert done.method == "s3_upload" and done.copied == planned.would_copy == 42
    assert done.copied_bytes == planned.would_copy_bytes == sum(len(v) for k, v in files.items()
                                                                if k.startswith("sites/4/")) + 9 * MIB
    keys = listing(s3, target_bucket)
    assert set(keys) == {UPLOADS + "/" + k for k in files if k.startswith("sites/4/")} | {
        UPLOADS + "/sites/4/big.bin", UPLOADS + "/sites/4/old.jpg", UPLOADS + "/sites/40/x.jpg"}
    report = s3.head_object(Bucket=target_bucket, Key=UPLOADS + "/sites/4/docs/report.pdf")
    assert report["ContentType"] == "application/pdf"
    assert report["ETag"].strip('"') == hashlib.md5(files["sites/4/docs/report.pdf"]).hexdigest()
    assert keys[UPLOADS + "/sites/4/big.bin"][1].strip('"').endswith("-2")

    again = media.sync_site_media(source, target, 4, **tuning)
    assert (again.copied, again.unchanged) == (0, 42)

    changed = root / "sites/4/docs/report.pdf"
    changed.write_bytes(b"%PDF-1.5 " * 50)
    planned = media.sync_site_media(source, target, 4, delete=True, check_mode=True, **tuning)
    done = media.sync_site_media(source, target, 4, delete=True, **tuning)
    assert (planned.would_copy, planned.would_delete) == (done.copied, done.deleted) == (1, 1)
    assert body(s3, target_bucket, UPLOADS + "/sites/4/docs/report.pdf") == changed.read_bytes()
    assert UPLOADS + "/sites/40/x.jpg" in listing(s3, target_bucket)


# -- directory -> directory -------------------------------------------------------------------------------------------

def test_directories_with_rsync(tmp_path):
    source_root, target_root = tmp_path / "dev", tmp_path / "uat"
    source_files = {"2024/01/a.jpg": b"main a", "sites.txt": b"main", "sites/3/2024/b.jpg": b"three b",
                    "sites/3/2024/c.jpg": b"three c", "sites/30/d.jpg": b"thirty"}
    target_files = {"sites/30/theirs.jpg": b"uat 30", "sites/2/x.jpg": b"uat 2", "old-main.jpg": b"uat main",
                    "sites/3/2023/extra.jpg": b"extra"}
    for root, files in ((source_root, source_files), (target_root, target_files)):
        for relative, data in files.items():
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_bytes(data)
    source = media.media_location("dev", {"path": str(source_root)})
    target = media.media_location("uat", {"path": str(target_root)})

    planned = media.sync_site_media(source, target, 3, check_mode=True)
    assert _files(str(target_root)) == target_files
    done = media.sync_site_media(source, target, 3)
    assert done.method == "rsync"
    assert (planned.would_copy, planned.would_copy_bytes) == (done.copied, done.copied_bytes) == (2, 14)
    assert done.deleted == 0
    assert _files(str(target_root)) == dict(target_files, **{"sites/3/2024/b.jpg": b"three b",
                                                             "sites/3/2024/c.jpg": b"three c"})
    again = media.sync_site_media(source, target, 3)
    assert (again.copied, again.unchanged, again.changed) == (0, 2, False)

    planned = media.sync_site_media(source, target, 3, delete=True, check_mode=True)
    done = media.sync_site_media(source, target, 3, delete=True)
    assert planned.would_delete == done.deleted == 1
    assert not (target_root / "sites/3/2023/extra.jpg").exists()

    main = media.sync_site_media(source, target, 1, delete=True)
    assert (main.copied, main.deleted) == (2, 1)  # 2024/01/a.jpg and sites.txt in, old-main.jpg out
    assert _files(str(target_root / "sites")) == {"30/theirs.jpg": b"uat 30", "2/x.jpg": b"uat 2",
                                                  "3/2024/b.jpg": b"three b", "3/2024/c.jpg": b"three c"}
    # A site without media in the source has nothing to copy; with delete, what the target has of it goes.
    (target_root / "sites/77/2020").mkdir(parents=True)
    (target_root / "sites/77/2020/old.jpg").write_bytes(b"old")
    assert media.sync_site_media(source, target, 77).copied == 0
    assert (target_root / "sites/77/2020/old.jpg").exists()
    planned = media.sync_site_media(source, target, 77, delete=True, check_mode=True)
    assert (target_root / "sites/77/2020/old.jpg").exists()
    done = media.sync_site_media(source, target, 77, delete=True)
    assert planned.would_delete == done.deleted == 1 and not (target_root / "sites/77/2020/old.jpg").exists()
    assert (target_root / "sites/30/theirs.jpg").exists()

    # An empty source root with delete is a wrong setting, not a request to empty the target's site.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MigrationError, match="holds no media at all") as caught:
        media.sync_site_media(media.media_location("dev", {"path": str(empty)}), target, 3, delete=True)
    assert caught.value.failure_class == SYSTEMIC
    assert (target_root / "sites/3/2024/b.jpg").exists()


def test_a_missing_directory_is_a_setting_to_fix(tmp_path):
    source = media.media_location("dev", {"path": str(tmp_path / "nope")})
    target = media.media_location("uat", {"path": str(tmp_path)})
    with pytest.raises(MigrationError) as caught:
        media.sync_site_media(source, target, 3)
    assert (caught.value.failure_class, caught.value.reason) == (SYSTEMIC, "configuration")
    assert str(tmp_path / "nope") in str(caught.value)


# -- the module -------------------------------------------------------------------------------------------------------

PLAYBOOK = textwrap.dedent("""\
    - name: Media of one site
      hosts: localhost
      gather_facts: false
      tasks:
        - name: Sync the media of site {{ site }}
          wfu.multisite.wfu_media_sync:
            source: "{{ media_source }}"
            target: "{{ media_target }}"
            site_id: "{{ site }}"
            delete: true
            timeout: 120
          register: media_result
          ignore_errors: true
        - name: Save the result
          ansible.builtin.copy:
            content: "{{ media_result | to_json }}"
            dest: "{{ result_file }}"
            mode: "0600"
          check_mode: false
    """)


def test_the_module_in_a_playbook(moto, s3, network_bucket, tmp_path):
    source_bucket, objects = network_bucket
    target_bucket = new_bucket(s3, {UPLOADS + "/sites/5/stale.jpg": b"stale", UPLOADS + "/sites/2/x.jpg": b"x"})
    (tmp_path / "hosts.ini").write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n"
                                        % os.path.join(VENV_BIN, "python"))
    (tmp_path / "site.yml").write_text(PLAYBOOK)
    result_file = tmp_path / "result.json"
    settings = {"media_source": {"name": "dev", "s3": {"bucket": source_bucket, "prefix": UPLOADS,
                                                       "endpoint_url": moto.url}},
                "media_target": {"name": "uat", "s3": {"bucket": target_bucket, "prefix": UPLOADS,
                                                       "endpoint_url": moto.url}},
                "site": 5, "result_file": str(result_file)}
    (tmp_path / "vars.json").write_text(json.dumps(settings))

    def run(*args, **overrides):
        (tmp_path / "vars.json").write_text(json.dumps(dict(settings, **overrides)))
        done = run_playbook(str(tmp_path / "site.yml"), str(tmp_path / "hosts.ini"), "-e", "@vars.json", "-vvv",
                            *args)
        assert SECRET_KEY not in done.stdout and ACCESS_KEY not in done.stdout
        return json.loads(result_file.read_text())

    site5 = within(objects, UPLOADS + "/sites/5/")
    planned = run("--check")
    assert planned["changed"] and (planned["would_copy"], planned["would_delete"]) == (PER_SUBSITE, 1)
    assert len(listing(s3, target_bucket)) == 2

    done = run()
    assert done["changed"] and (done["copied"], done["deleted"], done["method"]) == (PER_SUBSITE, 1, "s3_copy")
    assert set(listing(s3, target_bucket)) == site5 | {UPLOADS + "/sites/2/x.jpg"}

    again = run()
    assert not again["changed"] and (again["copied"], again["unchanged"]) == (0, PER_SUBSITE)

    failed = run(media_target={"name": "uat", "s3": {"bucket": "wfu-no-such-bucket", "endpoint_url": moto.url}})
    assert failed["failed"] and (failed["failure_class"], failed["reason"], failed["phase"], failed["site_id"]) == (
        "systemic", "configuration", "media", 5)
    assert "s3://wfu-no-such-bucket/sites/5/ (media of uat)" in failed["msg"]
    assert failed["counts"]["copied"] == 0

    refused = run(media_target={"name": "uat", "s3": {"bucket": target_bucket, "aws_secret_access_key": SECRET_KEY}})
    assert refused["failed"] and "wfu_environments.uat.media.s3.aws_secret_access_key is not accepted" in refused["msg"]
    assert SECRET_KEY not in json.dumps(refused)


RSYNC_SYNC = """
import sys
sys.path[:0] = [{collections!r}]
from ansible_collections.wfu.multisite.plugins.module_utils import media
media.sync_site_media(media.media_location("dev", {{"path": {source!r}}}),
                      media.media_location("uat", {{"path": {target!r}}}), 2)
"""


def test_rsync_dies_with_a_killed_module(tmp_path):
    """SIGKILL of the process that syncs (the OOM killer, a task timeout) ends its rsync too: nothing keeps copying."""
    source, target = tmp_path / "dev", tmp_path / "uat"
    (source / "sites" / "2").mkdir(parents=True)
    target.mkdir()
    for index in range(8):
        with open(source / "sites" / "2" / ("big-%d.bin" % index), "wb") as handle:
            handle.write(os.urandom(32 * 1024 * 1024))
    script = tmp_path / "sync.py"
    script.write_text(RSYNC_SYNC.format(collections=COLLECTIONS, source=str(source), target=str(target)))
    # A slow network: the rsync found first on PATH is the real one, limited to 500 KiB/s (exec keeps its pid).
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "rsync").write_text("#!/bin/sh\nexec %s --bwlimit=500 \"$@\"\n" % shutil.which("rsync"))
    (slow / "rsync").chmod(0o755)
    env = dict(os.environ, PATH="%s:%s" % (slow, os.environ["PATH"]))
    syncing = subprocess.Popen([os.path.join(VENV_BIN, "python"), str(script)], env=env)
    rsyncs = []
    try:
        give_up = time.monotonic() + 30
        while not rsyncs and time.monotonic() < give_up and syncing.poll() is None:
            rsyncs[:] = [int(pid) for pid in os.listdir("/proc")
                         if pid.isdigit() and _parent(int(pid)) == syncing.pid and _comm(int(pid)) == "rsync"]
            time.sleep(0.01)
        assert rsyncs, "the sync never started rsync"
        time.sleep(0.3)
        # rsync forks its receiver: that one must end too.
        rsyncs += [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) in rsyncs
                   and _comm(int(pid)) == "rsync"]
        syncing.kill()
        syncing.wait()
        give_up = time.monotonic() + 5
        while any(_alive(pid) for pid in rsyncs) and time.monotonic() < give_up:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in rsyncs), "rsync outlived the killed module"
    finally:
        if syncing.poll() is None:
            syncing.kill()
            syncing.wait()
        for pid in rsyncs:
            if _alive(pid):
                os.kill(pid, 9)


def _stat(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()


def _parent(pid):
    stat = _stat(pid)
    return int(stat[1][1]) if stat else None


def _comm(pid):
    stat = _stat(pid)
    return stat[0] if stat else None


def _alive(pid):
    stat = _stat(pid)
    return stat is not None and stat[1][0] != "Z"
