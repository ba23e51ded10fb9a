"""What every stage shares: the Stage type, the one place markers and resume live
(`run_unit`), the output's storage and its guards, and the failure records.

A stage is a small object with declared resources and a pure `process(storage, unit)`
that reads its inputs from storage, writes its outputs and returns its typed report
(`core.reports`: counts, shard infos, never image bytes). Executors (execution/) decide where a
unit runs; whichever runs it goes through `run_unit`, so a unit with a marker of this
config is never redone and a marker is written only after the unit's data is durable.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from editthinker_data.backends import BackendContext
from editthinker_data.config import BuildConfig, ConfigError, Resources
from editthinker_data.core.layout import FAILURES_FILE, KEPT_ON_CLEAR, POOL_UNIT, StageName, marker_name
from editthinker_data.core.reports import StageReport
from editthinker_data.io.storage import Storage, is_remote, local_path, open_storage
from editthinker_data.sources.base import RecordError
from editthinker_data.sources.content import describe_changes, rerun_notes

R = TypeVar("R", bound=StageReport)


class Stage(ABC, Generic[R]):
    """One kind of unit of work. `name` names its markers; `marked` stages leave one per
    finished unit (a rerun skips them); `resources` is what one unit asks of a worker;
    `report` is the type of what a unit returns (and its marker holds)."""

    name: ClassVar[StageName]
    report: type[R]  # a class attribute too; ClassVar cannot name a type variable
    marked: ClassVar[bool] = True
    resources: ClassVar[Resources] = Resources(num_cpus=1)
    placement: ClassVar[str] = "spread"  # spread | beside_driver: where a Ray executor runs a unit

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg

    @abstractmethod
    def process(self, storage: Storage, unit: str, *args: Any, **inputs: Any) -> R:
        """Do the unit's work; a report that is not `finished` leaves the unit unmarked. Each
        stage names its own inputs (`*args: Any, **inputs: Any` lets a type checker accept them)."""

    def on_skip(self, storage: Storage, unit: str, report: R) -> None:  # noqa: B027
        """A marked unit is being reused (repair what an older version did not write)."""

    def after_marker(self, storage: Storage, unit: str) -> None:  # noqa: B027
        """The unit is durable: drop what only a resume needed (journals)."""


def run_unit(stage: Stage[R], storage: Storage, unit: str, **inputs: Any) -> R:
    """Run one unit once: a unit marked by the same config is reused; a finished one's marker
    is written last. Every executor runs units through here."""
    fingerprint = stage.cfg.fingerprint()
    if stage.marked:
        done = read_marker(storage, stage.name, unit, fingerprint, stage.report)
        if done is not None:
            stage.on_skip(storage, unit, done)
            return done
    report = stage.process(storage, unit, **inputs).stamped(fingerprint)
    if stage.marked and report.finished:
        storage.write_json(marker_name(stage.name, unit), report.to_dict())
        stage.after_marker(storage, unit)
    return report


def read_marker(storage: Storage, stage: str, unit: str, fingerprint: str, report: type[R]) -> R | None:
    """A finished unit's report, when it was made by the same config."""
    name = marker_name(stage, unit)
    if not storage.exists(name):
        return None
    data = storage.read_json(name)
    return report.from_dict(data) if data.get("fingerprint") == fingerprint else None


def output_storage(cfg: BuildConfig, url: str) -> Storage:
    return open_storage(url, endpoint_url=cfg.output.s3_endpoint_url, region=cfg.output.s3_region)


def backend_context(cfg: BuildConfig, output: str, state_dir: str | None = None) -> BackendContext:
    """What the backends of a build into `output` need to know about it."""
    return BackendContext(
        output_url=output if is_remote(output) else str(local_path(output).resolve()),
        s3_endpoint_url=cfg.output.s3_endpoint_url,
        s3_region=cfg.output.s3_region,
        llm_cache=cfg.run.llm_cache,
        local_cache_dir=str(Path(state_dir) / "cache" / "llm") if state_dir else None,
    )


def check_output(cfg: BuildConfig, storage: Storage) -> list[str]:
    """Refuse to mix two configs' data in one output (finished units would be reused). The
    same config on sources whose content changed makes the old build stale: it is cleared
    (not the run state nor the answer cache) and the notes returned say what changed and
    what runs again."""
    name = marker_name("pool", POOL_UNIT)
    if storage.exists(name):
        marker = storage.read_json(name)
        theirs = marker.get("fingerprint")
        same_config = marker.get("config_fingerprint", theirs) == cfg.fingerprint(content=False)
        if theirs != cfg.fingerprint() and same_config and cfg.source_content is not None:
            changed = describe_changes(marker.get("sources"), cfg.source_content)
            return rerun_notes(changed, clear_output(storage), cfg.output.trajectory_store)
        if theirs != cfg.fingerprint():
            raise ConfigError(
                f"{storage.url} holds a build of another config (fingerprint {theirs}, this one is "
                f"{cfg.fingerprint()}); choose a new --output, or pass --overwrite to replace it"
            )
    return []


def clear_output(storage: Storage) -> int:
    """Delete a previous build's objects, not the run state nor the model answer cache (a
    rebuild pays only for calls it has not made before); returns how many."""
    names = [n for n in storage.list("") if not n.startswith(KEPT_ON_CLEAR)]
    for name in names:
        storage.delete(name)
    return len(names)


def failure(stage: str, origin: str, record: str, reason: str, detail: str) -> dict[str, str]:
    return {"stage": stage, "origin": origin, "record": record, "reason": reason, "detail": detail}


def failures_of(errors: list[RecordError], stage: str) -> list[dict[str, str]]:
    return [{"stage": stage, **asdict(e)} for e in errors]


def write_failures(storage: Storage, failures: list[dict[str, Any]]) -> None:
    """failures.jsonl: one JSON object a line, keys sorted. `pool` writes the pool's;
    a build's finalize rewrites it whole, with every stage's."""
    storage.write_bytes(
        FAILURES_FILE, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures).encode()
    )
