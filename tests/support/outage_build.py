"""The demo build with its model services on loopback, so an outage can be staged: the
editors are HTTP editors on one local editor service (`EditorServer`, which counts every edit
and when it started), the expert is the OpenAI-compatible test server (`ChatServer`, which
goes down after its N-th request, for a while or for good). The scorer stays procedural, so
the server's requests are the expert's alone. Shared by tests/e2e/test_outage.py and
bench/outage.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from editthinker_data.config import BuildConfig, load_config, parse_config
from tests.support.paths import ROOT

DEMO = ROOT / "configs" / "demo.yaml"


def outage_config(
    editor_url: str, expert_url: str, per_type_quota: int | None = None, **run: Any
) -> BuildConfig:
    """configs/demo.yaml with its editors and expert behind `editor_url` and `expert_url`.
    The expert's own retries are quick (the breaker, not the client, waits out an outage)."""
    data = load_config(DEMO).model_dump(mode="json")
    if per_type_quota is not None:
        data["source"]["per_type_quota"] = per_type_quota
    for editor in data["editors"]:
        editor.update(kind="http", params={"base_url": editor_url, "backoff_s": 0.01, "timeout_s": 10})
    data["expert"] = {"kind": "openai", "name": "vlm-expert", "base_url": expert_url, "model": "test-vlm",
                      "params": {"backoff_s": 0.01, "max_retries": 2, "parse_retries": 1},
                      "batch_size": 4, "resources": {"num_cpus": 0.25}}  # fmt: skip
    data["output"].update(exports=[], report=False)
    data["run"].update(run)
    data.pop("plan", None)
    return parse_config(data, environ={})


def cli_build(cfg: BuildConfig, folder: Path, out: Path | str, state_dir: Path | str) -> tuple[int, str]:
    """`editthinker-data build` as a user runs it (in this process): exit code and output."""
    from typer.testing import CliRunner

    from editthinker_data.cli import app

    path = folder / f"outage-{abs(hash(str(out))) % 10**8}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    args = ["build", str(path), "-o", str(out), "--state-dir", str(state_dir)]
    result = CliRunner().invoke(app, args, terminal_width=200)
    text = result.output + (
        f"\n{result.exception!r}" if result.exception and result.exit_code not in (0, 75) else ""
    )
    return result.exit_code, text


def shards(out: Path) -> dict[str, list[tuple[str, str]]]:
    """Each shard kind's (file name, sha256), from the manifest."""
    manifest = json.loads((out / "manifest.json").read_text())
    return {k: [(s["url"].rsplit("/", 1)[-1], s["sha256"]) for s in v] for k, v in manifest["shards"].items()}


def peak_in_flight(out: Path) -> int:
    """The most rollouts the build had in flight at once (its in-flight budget in use)."""
    return int(json.loads((out / "stats.json").read_text())["scheduler"]["peak_in_flight"])


def repeated(before: list[tuple[str, str, int]], after: list[tuple[str, str, int]]) -> int:
    """Edits of `after` that `before` had made already (same source image, instruction, seed)."""
    made = set(before)
    return sum(e in made for e in after)
