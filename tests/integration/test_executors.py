"""Executors: the same stage units through the local and the Ray executor give the same
bytes; markers and resume belong to the base (a marked unit is not run again); a failing
unit fails alone, named."""

from __future__ import annotations

import hashlib

import pytest

from editthinker_data.core.layout import POOL_UNIT, part_name, part_range_name
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.execution.local_rollouts import local_runner
from editthinker_data.io.storage import LocalStorage
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage
from editthinker_data.stages.select import SelectStage
from editthinker_data.stages.write_steps import WriteStepsStage


def _prepared(cfg, out):
    storage = LocalStorage(out)
    pool = LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
    runner = local_runner(cfg)
    for p in pool.partitions:
        LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(p), runner=runner)
    LocalExecutor().run_one(SelectStage(cfg), storage, "all", partitions=pool.partitions)
    return pool


def _digests(report):
    return {split: [s.sha256 for s in shards] for split, shards in report.shards.items()}


@pytest.mark.slow
def test_write_steps_on_ray_tasks_equals_local_and_failures_are_named(demo_cfg, ray_cluster, tmp_path):
    from editthinker_data.distributed.executor import RayExecutor

    pool = _prepared(demo_cfg, tmp_path / "a")
    units = [part_range_name(p, p) for p in pool.partitions]  # a run of one partition each
    local = LocalExecutor(workers=2).run(WriteStepsStage(demo_cfg), str(tmp_path / "a"), units)
    remote = RayExecutor().run(WriteStepsStage(demo_cfg), str(tmp_path / "a"), units)
    assert not local.failed and not remote.failed
    assert [_digests(r) for r in remote.reports] == [_digests(r) for r in local.reports]
    assert sum(sum(r.samples.values()) for r in remote.reports) > 0

    broken = RayExecutor().run(WriteStepsStage(demo_cfg), str(tmp_path / "nowhere"), units[:1])
    assert list(broken.failed) == units[:1] and broken.reports == []


def test_the_base_reuses_marked_units_and_isolates_failures(demo_cfg, tmp_path):
    from editthinker_data.stages.pool import PoolStage

    calls = []

    class CountingPool(PoolStage):
        def process(self, storage, unit, **inputs):
            calls.append(unit)
            return super().process(storage, unit, **inputs)

    out = str(tmp_path / "out")
    first = LocalExecutor().run(CountingPool(demo_cfg), out, ["all"])
    again = LocalExecutor().run(CountingPool(demo_cfg), out, ["all"])
    assert calls == ["all"] and first.reports == again.reports  # the marker, not a second pooling
    marker = (tmp_path / "out" / "_markers" / "pool" / "all.json").read_bytes()
    assert hashlib.sha256(marker).hexdigest()

    class Broken(PoolStage):
        def process(self, storage, unit, **inputs):
            raise OSError(f"disk full while writing {unit}")

    run = LocalExecutor(workers=2).run(Broken(demo_cfg), str(tmp_path / "other"), ["a", "b"])
    assert run.reports == [] and run.failed == {
        "a": "OSError: disk full while writing a",
        "b": "OSError: disk full while writing b",
    }


def test_a_ray_unit_gives_freed_memory_back_when_it_ends_or_fails(monkeypatch):
    """A worker process runs one unit after another: the C heap is trimmed after each,
    whether the unit returned or raised, and the unit's result or error passes unchanged."""
    import platform

    from editthinker_data.distributed import executor

    if platform.libc_ver()[0] == "glibc":
        assert executor._malloc_trim() is not None
    trims = []
    monkeypatch.setattr(executor, "_malloc_trim", lambda: trims.append)

    def unit(stage, output, unit, inputs):
        if unit == "bad":
            raise ValueError("unit bad: no such partition")
        return {"unit": unit, **inputs}

    monkeypatch.setattr(executor, "run_unit_at", unit)
    assert executor.run_on_worker(None, "out", "part-00000", {"k": 1}) == {"unit": "part-00000", "k": 1}
    assert trims == [0]
    with pytest.raises(ValueError, match="unit bad"):
        executor.run_on_worker(None, "out", "bad", {})
    assert trims == [0, 0]
