import hashlib

import pytest
import webdataset as wds

from editthinker_data.io.shards import ShardSink
from editthinker_data.io.storage import LocalStorage


def samples(n):
    return [
        {"__key__": f"k{i}", "json": {"i": i, "b": [1, 2]}, "png": b"\x89PNG" + bytes([i])} for i in range(n)
    ]


def write(root, n, max_samples):
    sink = ShardSink(LocalStorage(root), "steps/sft/part-00000", max_samples, 10**9)
    for s in samples(n):
        sink.write(s)
    return sink.close()


def test_rollover_names_counts_and_hashes(tmp_path):
    shards = write(tmp_path, 5, 2)
    assert [s.url for s in shards] == [f"steps/sft/part-00000-00000{i}.tar" for i in range(3)]
    assert [s.samples for s in shards] == [2, 2, 1]
    for s in shards:
        data = (tmp_path / s.url).read_bytes()
        assert hashlib.sha256(data).hexdigest() == s.sha256 and len(data) == s.bytes
    assert not list(tmp_path.rglob("*.partial"))
    read = list(wds.WebDataset([str(tmp_path / s.url) for s in shards], shardshuffle=False).decode())
    assert [r["__key__"] for r in read] == [f"k{i}" for i in range(5)]
    assert read[3]["json"] == {"i": 3, "b": [1, 2]}


def test_same_samples_give_same_bytes(tmp_path):
    a = write(tmp_path / "a", 3, 10)
    b = write(tmp_path / "b", 3, 10)
    assert [s.sha256 for s in a] == [s.sha256 for s in b]


def test_member_sets_must_match(tmp_path):
    sink = ShardSink(LocalStorage(tmp_path), "x/part", 10, 10**9)
    sink.write({"__key__": "a", "json": {}, "png": b"1"})
    with pytest.raises(ValueError, match="members"):
        sink.write({"__key__": "b", "json": {}})
    sink.close()


def test_no_samples_no_shard(tmp_path):
    assert ShardSink(LocalStorage(tmp_path), "x/part", 10, 10**9).close() == []
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())
