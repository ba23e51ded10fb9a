"""The build's Prefect artifacts: a progress artifact that follows the live counters as units
end, and a table artifact of each stage's units (Prefect's ephemeral server, as in a build)."""

from __future__ import annotations

import json
import uuid

from prefect import flow
from prefect.artifacts import Artifact

from editthinker_data.core.progress import Progress
from editthinker_data.core.reports import GenerateReport
from tasks.artifacts import BuildArtifacts, artifact_key


def test_progress_follows_the_counters_and_each_stage_gets_its_table(demo_cfg):
    # A name of its own: the session's Prefect server also holds the artifacts of its builds.
    demo_cfg = demo_cfg.model_copy(update={"name": f"artifacts-{uuid.uuid4().hex[:8]}"})
    counters = Progress()
    counters.set_total(8)
    counters.set_stage("generating")
    seen: list[float] = []

    @flow
    def a_build() -> None:
        artifacts = BuildArtifacts(demo_cfg, "s3://bucket/out", counters)
        counters.add(pairs_done=2)
        artifacts.unit_ended("part-00000", GenerateReport(partition=0, pairs=2, turns=5), None)
        seen.append(Artifact.get(artifact_key(demo_cfg.name, "progress")).data)
        counters.add(pairs_done=3)
        artifacts.unit_ended(
            "part-00001", GenerateReport(partition=1, pairs=3, turns=7, incomplete=True), None
        )
        seen.append(Artifact.get(artifact_key(demo_cfg.name, "progress")).data)
        artifacts.unit_ended("part-00002", None, "RuntimeError: the unit's process died")
        artifacts.stage_ended("generate")
        artifacts.stage_ended("select")  # no unit ended: no table
        artifacts.finished()

    a_build()
    assert seen == [25.0, 62.5]  # 2 then 5 of 8 pairs
    progress = Artifact.get(artifact_key(demo_cfg.name, "progress"))
    assert progress.type == "progress" and progress.data == 100.0
    assert "5 of 8 pairs generated" in progress.description and "s3://bucket/out" in progress.description
    table = Artifact.get(artifact_key(demo_cfg.name, "generate"))
    assert table.type == "table"
    rows = json.loads(table.data)
    assert [(r["unit"], r["outcome"], r["pairs"]) for r in rows] == [
        ("part-00000", "done", 2),
        ("part-00001", "unfinished", 3),
        ("part-00002", "failed", ""),
    ]
    assert rows[2]["error"] == "RuntimeError: the unit's process died"
    assert Artifact.get(artifact_key(demo_cfg.name, "select")) is None


def test_artifact_keys_are_what_prefect_accepts():
    assert artifact_key("EditThinker Demo_v2", "write_steps") == "editthinker-demo-v2-write-steps"
