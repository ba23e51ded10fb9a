"""Every name a build writes, in one place: the output layout, unit names and markers.

Names depend only on the inputs (config, partition, shard index), so a rerun writes the same
names and a resumed build is byte-identical to an uninterrupted one. Readers (inspect,
verify, release) and writers (the stages) both take their paths from here.
"""

from __future__ import annotations

import re
from enum import StrEnum


class StageName(StrEnum):
    """The build's stages, in order; each names its markers and its Prefect tasks."""

    POOL = "pool"
    GENERATE = "generate"
    SELECT = "select"
    WRITE_STEPS = "write_steps"
    FINALIZE = "finalize"
    RELEASE = "release"


POOL_FILE = "pool/pairs.parquet"
POOL_IMAGES = "pool/images"
DECISIONS_FILE = "selection/decisions.parquet"
STEPS_FILE = "selection/steps.parquet"
FAILURES_FILE = "failures.jsonl"
CONFIG_FILE = "config.json"
STATS_FILE = "stats.json"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"
VERSION_FILE = "version.json"  # in a dataset version: its name and the version it is compared with
SPLITS = ("sft", "rl")
SHARD_KINDS = ("trajectories", *SPLITS)
# Hashed in the manifest beside the shards (stats.json and the trajectory indexes hold timings).
TABLE_FILES = (POOL_FILE, DECISIONS_FILE, STEPS_FILE, FAILURES_FILE, CONFIG_FILE, VERSION_FILE)
STORE = "_store"  # a versioned dataset's content-addressed trajectory store, at its root
# The output's one-writer lease (io/lease.py): exists only while a build writes the output,
# or until its TTL runs out after a crash.
LEASE_FILE = "_lease.json"
# What --overwrite keeps: the run state, the model answer cache (a rebuild pays only for
# calls it has not made before), a trajectory store kept in the output and the lease of the
# build doing the overwriting.
KEPT_ON_CLEAR = ("_state/", "cache/", f"{STORE}/", LEASE_FILE)
MARKERS = "_markers"
JOURNALS = "_journal"
STATE_DIR = "_state"  # a local output's default run state folder (core/runenv.py)
# The dispatcher's circuit breakers that are open now (distributed/breaker_record.py), for
# `status`; written only when a breaker changes state, deleted when a build ends with none open.
BREAKERS_FILE = f"{JOURNALS}/breakers.json"
ANSWER_CACHE = "cache"  # the model answer cache when `run.llm_cache` is `output`
POOL_UNIT = "all"  # the pool stage has one unit


_PART = re.compile(r"part-(\d{5})")


def part_name(partition: int) -> str:
    """The unit name of a partition: `part-00003`."""
    return f"part-{partition:05d}"


def partition_of(name: str) -> int:
    """The partition a unit, shard or index name belongs to (`.../part-00003-000001.tar` -> 3)."""
    m = _PART.search(name)
    if m is None:
        raise ValueError(f"{name!r} names no partition (part-NNNNN)")
    return int(m.group(1))


_PART_RANGE = re.compile(r"parts-(\d{5})-(\d{5})")


def part_range_name(first: int, last: int) -> str:
    """The unit name of a run of partitions, first to last inclusive: `parts-00003-00007`
    (a write-steps unit packs their step samples into shared shards)."""
    return f"parts-{first:05d}-{last:05d}"


def partition_range(name: str) -> range:
    """The partitions a `parts-NNNNN-NNNNN` unit or shard name covers."""
    m = _PART_RANGE.search(name)
    if m is None:
        raise ValueError(f"{name!r} names no run of partitions (parts-NNNNN-NNNNN)")
    return range(int(m.group(1)), int(m.group(2)) + 1)


def marker_name(stage: str, unit: str) -> str:
    """A unit's success marker, written last, after its data is durable."""
    return f"{MARKERS}/{stage}/{unit}.json"


def journal_prefix(stage: str, unit: str) -> str:
    """Where an unfinished unit keeps what it has finished so far."""
    return f"{JOURNALS}/{stage}/{unit}"


def usage_prefix(unit: str) -> str:
    """An unfinished generate unit's model usage so far, summed over its runs."""
    return f"{JOURNALS}/usage/{unit}"


def progress_record(unit: str) -> str:
    """An unfinished generate unit's progress (io/unit_progress.py), read by `status`."""
    return f"{JOURNALS}/progress/{unit}.json"


def trajectory_shards(unit: str) -> str:
    return f"trajectories/{unit}"


def trajectory_index(partition: int) -> str:
    return f"trajectories/{part_name(partition)}.parquet"


def step_shards(split: str, unit: str) -> str:
    return f"steps/{split}/{unit}"


def shard_glob(kind: str) -> str:
    """Every shard of one kind (trajectories, sft, rl), not the trajectory indexes beside them."""
    return f"{trajectory_shards('*') if kind == 'trajectories' else step_shards(kind, '*')}.tar"


def wids_index(kind: str) -> str:
    return f"{kind}.wids.json"


def pool_image(sha256: str, ext: str) -> str:
    return f"{POOL_IMAGES}/{sha256}.{ext}"


# What a published release holds: the data, its tables and indexes, the trainer exports, the
# card with its figures and gallery, and the files that describe and check them. Everything
# else in an output is left out of an upload, run state first.
RELEASE_DIRS = ("pool", "trajectories", "selection", "steps", "exports", "figures", "gallery")
RELEASE_FILES = (
    CARD_FILE,
    STATS_FILE,
    MANIFEST_FILE,
    FAILURES_FILE,
    CONFIG_FILE,
    *(wids_index(kind) for kind in SHARD_KINDS),
)
# Never published, with the reason a dry run gives.
RUN_STATE = {
    f"{STATE_DIR}/": "run state (Prefect database, Ray sessions and logs, local caches)",
    f"{MARKERS}/": "unit success markers",
    f"{JOURNALS}/": "unit journals and model usage logs",
    f"{ANSWER_CACHE}/": "model answer cache",
}


# Dataset versions (output.versions): <root>/v0003/ is one complete build, <root>/latest names
# the newest finished one; the trajectory store and the answer cache under the root are shared
# by every version.
LATEST = "latest"  # at the root: a one-line pointer file (works on object stores too)
ROOT_ANSWER_CACHE = "cache/llm"  # at the root: the model answer cache every version shares
SOURCE_CONTENT_CACHE = "source-content.json"  # in the run state: file hashes by path, size, mtime
_VERSION = re.compile(r"v(\d{4,})")


def version_name(number: int) -> str:
    return f"v{number:04d}"


def version_number(name: str) -> int | None:
    """3 for `v0003`; None for anything else under a root."""
    m = _VERSION.fullmatch(name)
    return int(m.group(1)) if m else None


def stored_trajectory(key: str) -> str:
    """A finished trajectory in the store, by its rollout key."""
    return f"trajectories/{key[:2]}/{key}.tar"
