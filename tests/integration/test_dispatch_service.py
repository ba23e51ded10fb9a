"""The build's dispatcher actor owns every edit; what it hands to units must not stay in its
memory after the units have fetched it (`distributed/service.py` says why it could)."""

from __future__ import annotations

import time
from functools import partial

import ray

from editthinker_data.distributed.remote import RemoteRunner
from editthinker_data.distributed.service import LET_GO_S, service_name, start_service, stop_service
from editthinker_data.pipeline.loop import Names, rollout
from tests.support.scheduler_helpers import config, pairs


def test_the_dispatcher_frees_the_edits_its_units_fetched(ray_cluster):
    def _unreferenced(service) -> int:
        """Objects in the dispatcher process's in-memory store beyond those it still refers
        to (run inside the actor; defined here so that it travels by value: the actor's
        process cannot import this test module)."""
        core = ray._private.worker.global_worker.core_worker
        return core.get_memory_store_size() - len(core.get_all_reference_counts())

    cfg = config(expert_latency=0.0)
    make = partial(rollout, names=Names(cfg.expert.name, cfg.scorer.name), max_turns=3, seed=0)
    service, _ = start_service(cfg, None, name=service_name(cfg))
    try:
        turns = []
        for _ in range(3):  # three units one after another, as partitions run
            RemoteRunner(service_name(cfg))(pairs(12), make, lambda k, traj: turns.append(len(traj.turns)))
        time.sleep(LET_GO_S + 0.5)
        ray.get(service.release.remote(-1))  # any call lets go of answers handled LET_GO_S ago
        left = ray.get(service.__ray_call__.remote(_unreferenced))
    finally:
        stop_service(service)
    # 48 px edits are small enough to be kept inline in their owner's memory: before the fix
    # every one of them (one per turn) stayed there for the dispatcher's life.
    assert len(turns) == 36 and sum(turns) >= 36
    assert left == 0, (
        f"{left} objects nothing refers to left in the dispatcher's memory after {sum(turns)} turns"
    )
