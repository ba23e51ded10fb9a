"""Step samples of consecutive partitions share shards; partitions are sized from the pool."""

from __future__ import annotations

import pytest

from editthinker_data.core.layout import part_range_name, partition_range
from editthinker_data.pipeline.packing import pack_partitions
from editthinker_data.pipeline.quotas import MIN_UNIT_PAIRS, TARGET_UNITS, partition_size


def test_runs_fill_each_split_up_to_the_cap_and_cover_every_partition_once():
    counts = {
        0: {"sft": 400, "rl": 100},
        1: {"sft": 500, "rl": 300},
        2: {"sft": 200},
        4: {"rl": 900},
        5: {"sft": 5},
    }
    runs = pack_partitions(range(7), counts, max_samples=1000)
    assert runs == [[0, 1], [2, 3, 4, 5, 6]]  # adding 2 to [0, 1] makes sft 1100
    flat = [p for run in runs for p in run]
    assert flat == list(range(7))
    for run in runs:
        for split in ("sft", "rl"):
            total = sum(counts.get(p, {}).get(split, 0) for p in run)
            assert total <= 1000 or len(run) == 1


def test_a_partition_over_the_cap_is_a_run_by_itself():
    runs = pack_partitions([0, 1, 2], {0: {"sft": 10}, 1: {"sft": 2500}, 2: {"sft": 10}}, max_samples=1000)
    assert runs == [[0], [1], [2]]


def test_run_names_round_trip():
    assert partition_range(part_range_name(3, 7)) == range(3, 8)
    assert partition_range(f"steps/sft/{part_range_name(0, 0)}-000001.tar") == range(0, 1)
    with pytest.raises(ValueError, match="names no run of partitions"):
        partition_range("part-00003")


@pytest.fixture
def cfg_with(demo_cfg):
    def make(size, editors=None):
        data = demo_cfg.model_dump()
        data["run"]["partition_size"] = size
        if editors:
            data["editors"] = editors
        return type(demo_cfg).model_validate(data)

    return make


def test_auto_partitions_are_hundreds_for_a_paper_size_pool_and_never_tiny(cfg_with):
    auto = cfg_with("auto")
    assert partition_size(140_000, auto) == -(-140_000 // TARGET_UNITS)  # 547: 256 units
    assert -(-140_000 // partition_size(140_000, auto)) <= TARGET_UNITS
    assert partition_size(2_000, auto) == MIN_UNIT_PAIRS  # 8 units, not 167 of 12
    assert partition_size(140_000, cfg_with(12)) == 12  # a number is taken as given
    big = [{"name": "e", "kind": "procedural", "num_actors": 200, "batch_size": 4}]
    assert partition_size(2_000, cfg_with("auto", big)) == 1600  # one unit can feed every editor twice


def test_partition_size_rejects_zero_with_the_fix(cfg_with):
    with pytest.raises(ValueError, match="auto or 1 or more"):
        cfg_with(0)
