"""Every number a stage keeps or drops, with reasons: input = kept + filtered + failed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class StageStats:
    input: int = 0
    kept: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)

    def keep(self, n: int = 1) -> None:
        self.input += n
        self.kept += n

    def filter(self, reason: str, n: int = 1) -> None:
        self.input += n
        self.filtered[reason] += n

    def fail(self, reason: str, n: int = 1) -> None:
        self.input += n
        self.failed[reason] += n

    @property
    def balanced(self) -> bool:
        return self.input == self.kept + sum(self.filtered.values()) + sum(self.failed.values())

    def merge(self, other: StageStats) -> StageStats:
        return StageStats(
            self.input + other.input,
            self.kept + other.kept,
            self.filtered + other.filtered,
            self.failed + other.failed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "kept": self.kept,
            "filtered": dict(sorted(self.filtered.items())),
            "failed": dict(sorted(self.failed.items())),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageStats:
        return cls(d["input"], d["kept"], Counter(d.get("filtered", {})), Counter(d.get("failed", {})))


Usage = dict[str, dict[str, Any]]  # "role/name" -> {"batches": n, "counters": {name: value}}


# The stages stats.json counts, in pipeline order (input = kept + filtered + failed for each).
STAGES = ("pool", "generate", "trajectory_filter", "balance", "steps")

# A batch shared by several units is split between them; this key carries each unit's whole
# share of the batch itself (1 for one of them, 0 for the rest), so batches still add up.
BATCH_SHARE = "_batch"


def add_usage(usage: Usage, backend: str, cost: dict[str, float], batches: int = 1) -> None:
    """Add one batch's (or one run's) counter deltas to a backend's running sums."""
    entry = usage.setdefault(backend, {"batches": 0, "counters": {}})
    if BATCH_SHARE in cost:
        cost = dict(cost)
        batches = int(cost.pop(BATCH_SHARE))
    entry["batches"] += batches
    for k, v in cost.items():
        entry["counters"][k] = round(entry["counters"].get(k, 0) + v, 6)


def merge_usage(*parts: Usage) -> Usage:
    """Usage of several runs or units, summed per backend (a resumed build's whole cost)."""
    out: Usage = {}
    for part in parts:
        for backend, entry in sorted(part.items()):
            add_usage(out, backend, entry["counters"], entry["batches"])
    return out


def usage_as_actor_info(usage: Usage) -> list[dict[str, Any]]:
    """Per-backend sums in the shape `llm_usage` reads (one entry per backend)."""
    out = []
    for backend, entry in sorted(usage.items()):
        role, _, name = backend.partition("/")
        out.append({"role": role, "name": name, "calls": entry["batches"], "counters": entry["counters"]})
    return out


class _Price(Protocol):
    @property
    def input_per_mtok(self) -> float: ...
    @property
    def output_per_mtok(self) -> float: ...


class _PricedSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def price(self) -> _Price: ...


class PricedBackends(Protocol):
    """What `llm_usage` needs of a BuildConfig (core sits below config, so it names no class)."""

    def backend_specs(self) -> Iterable[tuple[str, _PricedSpec]]: ...


def llm_usage(cfg: PricedBackends, actor_info: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Requests, retries, re-asks, failures, cache hits, tokens, rate-limit waits and
    estimated cost (USD, from the role's `price` per million tokens) per model role, summed
    over its actors, plus their `total`. Cache hits cost nothing: they send no request."""
    specs = {(role, spec.name): spec for role, spec in cfg.backend_specs() if role != "editor"}
    return priced_usage(
        (a["role"], a["counters"], spec.price.input_per_mtok, spec.price.output_per_mtok)
        for a in actor_info
        if (spec := specs.get((a["role"], a["name"]))) is not None
    )


def priced_usage(entries: Iterable[tuple[str, dict[str, Any], float, float]]) -> dict[str, dict[str, float]]:
    """(role, counters, USD per million input tokens, per million output tokens) summed per
    role with their cost, plus the `total`: stats.json's `llm_usage`, and `status` before it."""
    usage: dict[str, dict[str, float]] = {}
    for role_name, counters, per_in, per_out in entries:
        if not counters:
            continue
        role = usage.setdefault(role_name, {"cost_usd": 0.0})
        for k, v in counters.items():
            role[k] = role.get(k, 0) + v
        role["cost_usd"] += (
            counters.get("tokens_in", 0) / 1e6 * per_in + counters.get("tokens_out", 0) / 1e6 * per_out
        )
    if usage:
        total: dict[str, float] = {}
        for sums in usage.values():
            for k, v in sums.items():
                total[k] = total.get(k, 0) + v
        usage["total"] = total
    return {
        role: {k: round(v, 4) if isinstance(v, float) else v for k, v in c.items()}
        for role, c in usage.items()
    }
