"""How a site's tables are cut into batches that go through the pipeline together (pipeline.table_batches)."""

from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import BATCH_BYTES, SMALL_TABLE_BYTES, table_batches

KB = 1024


def sizes(**tables):
    return {name: {"rows": 0, "bytes": size} for name, size in tables.items()}


def test_small_tables_go_together_and_a_large_one_alone_in_the_order_given():
    stats = sizes(posts=SMALL_TABLE_BYTES + 1, options=200 * KB, comments=16 * KB, links=16 * KB)
    assert table_batches(["posts", "options", "comments", "links"], stats) == [["posts"], ["options", "comments", "links"]]
    # Largest last (the migration database on the target's server): the same cut, the other way round.
    assert table_batches(["links", "comments", "options", "posts"], stats) == [["links", "comments", "options"], ["posts"]]


def test_a_large_table_between_small_ones_splits_them():
    stats = sizes(a=KB, big=SMALL_TABLE_BYTES * 5, b=KB)
    assert table_batches(["a", "big", "b"], stats) == [["a"], ["big"], ["b"]]


def test_a_batch_holds_no_more_than_its_limit():
    names = ["t%02d" % n for n in range(20)]
    stats = sizes(**{name: SMALL_TABLE_BYTES for name in names})
    batches = table_batches(names, stats)
    assert [table for batch in batches for table in batch] == names
    assert all(len(batch) * SMALL_TABLE_BYTES <= BATCH_BYTES for batch in batches)
    assert len(batches[0]) == BATCH_BYTES // SMALL_TABLE_BYTES


def test_a_table_without_statistics_counts_as_empty_and_no_tables_make_no_batch():
    assert table_batches(["x", "y"], {}) == [["x", "y"]]
    assert table_batches([], {}) == []
    assert table_batches(["x"], sizes(x=10), small=0) == [["x"]]
