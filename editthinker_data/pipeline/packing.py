"""Which partitions' step samples share a shard. Partitions are cut for the generate stage
(units of device work), not for the released shards: one shard per partition and split would
leave a 140K-pair build with thousands of shards of a few samples. The write stage instead
packs runs of consecutive partitions, so that each run fills about one shard per split.

Pure and deterministic: the runs follow from the selection's step counts alone, so a rerun
writes the same shards with the same names and bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def pack_partitions(
    partitions: Sequence[int], counts: Mapping[int, Mapping[str, int]], max_samples: int
) -> list[list[int]]:
    """Runs of consecutive partitions, in order, each as long as it can be while no split's
    samples in it exceed `max_samples` (a partition bigger than that is a run by itself and
    its shards split at the cap). Every partition is in exactly one run, empty ones too."""
    runs: list[list[int]] = []
    run: list[int] = []
    total: dict[str, int] = {}
    for p in partitions:
        add = counts.get(p, {})
        if run and any(total.get(split, 0) + n > max_samples for split, n in add.items()):
            runs.append(run)
            run, total = [], {}
        run.append(p)
        for split, n in add.items():
            total[split] = total.get(split, 0) + n
    if run:
        runs.append(run)
    return runs
