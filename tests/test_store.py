import os
import stat

import pytest
import trio

from edge.errors import StoreError
from edge.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "data")
    yield s
    s.close()


async def test_group_commit_shares_transactions(store):
    store.start_writer()

    async def put(i):
        await store.write(lambda t: t.put("state", b"k%05d" % i, b"v"))

    async with trio.open_nursery() as nursery:
        for i in range(500):
            nursery.start_soon(put, i)
    assert store.read(lambda t: t.count("state")) == 500
    assert store.commits < 500 / 5, "writes from concurrent tasks were not batched"


async def test_failing_write_is_rolled_back_alone(store):
    store.start_writer()

    def bad(t):
        t.put("state", b"bad", b"1")
        raise ValueError("boom")

    async def good():
        await store.write(lambda t: t.put("state", b"good", b"1"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(good)
        with pytest.raises(ValueError, match="boom"):
            await store.write(bad)
    assert store.read(lambda t: (t.get("state", b"bad"), t.get("state", b"good"))) == (None, b"1")


async def test_map_grows_by_itself(tmp_path):
    store = Store.open(tmp_path / "d")
    store.start_writer()
    size = store.info()["map_size"]
    blob = os.urandom(1 << 20)
    for i in range(80):
        await store.write(lambda t, i=i: t.put("state", b"%d" % i, blob))
    assert store.info()["map_size"] > size
    assert store.read(lambda t: t.count("state")) == 80
    store.close()


def test_scan_prefix_forward_and_reverse(store):
    def fill(t):
        for k in (b"a/1", b"a/2", b"a/3", b"ab/1", b"b/1"):
            t.put("state", k, k)

    store.write_sync(fill)
    assert [k for k, _ in store.read(lambda t: list(t.scan("state", b"a/")))] == [b"a/1", b"a/2", b"a/3"]
    assert [k for k, _ in store.read(lambda t: list(t.scan("state", b"a/", reverse=True)))] == [b"a/3", b"a/2", b"a/1"]
    assert [k for k, _ in store.read(lambda t: list(t.scan("state", b"b/", reverse=True)))] == [b"b/1"]


def test_unwritable_data_dir_names_the_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    if os.geteuid() == 0:
        # root writes anywhere; a path under a regular file cannot be created by anyone
        target = tmp_path / "file"
        target.write_text("x")
        with pytest.raises(StoreError) as info:
            Store.open(target / "data")
        assert str(info.value) == (
            f"cannot write to the data directory {target / 'data'}: Not a directory; "
            "pass --data-dir (or EDGE_DATA_DIR) naming a writable directory"
        )
        return
    with pytest.raises(StoreError, match="cannot write to the data directory"):
        Store.open(ro / "data")


def test_groups_lists_each_group_once_in_order(store):
    def fill(t):
        for k in (b"a\x00k1", b"a\x00k2", b"ab\x00k", b"s/x\x00g1\x00i", b"s/x\x00g1\x00j", b"s/x\x00g2\x00i", b"s/y\x00g3\x00i"):
            t.put("state", k, b"1")

    store.write_sync(fill)
    assert store.read(lambda t: list(t.groups("state"))) == [b"a", b"ab", b"s/x", b"s/y"]
    assert store.read(lambda t: list(t.groups("state", b"s/x\x00"))) == [b"g1", b"g2"]
