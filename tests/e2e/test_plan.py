"""The planner: it counts the calls the rollout really makes (against the real loop and the
real OpenAI-compatible backends on a loopback server), a calibration on a few pairs predicts
what the whole demo build did, bad plan settings fail before anything runs, and the paper's
plan in docs/planning.md is what the command prints."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from editthinker_data.backends import BackendContext
from editthinker_data.cli import app
from editthinker_data.config import parse_config
from editthinker_data.core.schema import SourcePair
from editthinker_data.core.stats import llm_usage
from editthinker_data.execution.local_rollouts import local_backends
from editthinker_data.pipeline.loop import Names, run_local
from editthinker_data.pipeline.plan import (
    Measured,
    editor_split,
    estimate,
    measured_rates,
    prior_rates,
    requests_per_call,
    trajectory_calls,
)
from tests.support.openai_server import ChatServer
from tests.support.paths import DEMO_CONFIG, ROOT

runner = CliRunner()
DEMO_SOURCE = ROOT / "editthinker_data" / "demo" / "source"


def near(predicted: float, actual: float, tolerance: float = 0.2) -> bool:
    return abs(predicted - actual) <= tolerance * actual


def demo_pairs(n: int) -> list[SourcePair]:
    rows = [json.loads(line) for line in (DEMO_SOURCE / "manifest.jsonl").read_text().splitlines()[:n]]
    return [
        SourcePair(r["id"], r["instruction"], Image.open(DEMO_SOURCE / r["image"]).convert("RGB"),
                   r.get("task_type", "other"), r["id"], editor=("careful", "sloppy")[i % 2])
        for i, r in enumerate(rows)
    ]  # fmt: skip


def demo_with_plan(tmp_path, plan_section: dict) -> Path:
    """The demo config with `plan_section` in place of its own priors."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["source"]["manifest"] = str(DEMO_SOURCE / "manifest.jsonl")
    data["plan"] = plan_section
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def test_plan_counts_what_the_loop_sends_to_a_real_endpoint(tmp_path):
    """Rollouts through the real loop, with the OpenAI-compatible expert and VIEScore scorer
    on a loopback server (canned answers: satisfied once the instruction was refined once):
    both endings, the expert's stop (a final critique) and the turn limit (none after the
    last turn). The planner's per-trajectory count, requests per call and token arithmetic
    reproduce the requests and tokens the server and the backends counted."""
    with ChatServer(canned=True, canned_turns=2) as server:
        remote = {"kind": "openai", "base_url": server.base_url, "model": "test-vlm",
                  "price": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}  # fmt: skip
        cfg = parse_config(
            {"source": {"manifest": "unused.jsonl"}, "loop": {"max_turns": 3},
             "editors": [{"name": "careful", "params": {"skill": 0.8}}, {"name": "sloppy", "params": {"skill": 0.3}}],
             "expert": {**remote, "name": "vlm-expert"}, "scorer": {**remote, "name": "vlm-scorer"}},
            environ={},
        )  # fmt: skip
        backends = local_backends(cfg, BackendContext(llm_cache="off"))
        names = Names("vlm-expert", "vlm-scorer")
        trajectories = [
            run_local(p, backends, names, max_turns=2 + i % 3 // 2, seed=0)
            for i, p in enumerate(demo_pairs(6))
        ]
        bodies = list(server.bodies)
    critic = [b for b in bodies if "image-editing critic" in json.dumps(b)]
    assert {t.stop_reason for t in trajectories} >= {"max_turns", "expert_satisfied"}  # both endings
    edits, critiques = {"careful": 0, "sloppy": 0}, {"careful": 0, "sloppy": 0}
    for t in trajectories:
        made = trajectory_calls(len(t.turns), t.stop_reason)
        edits[t.pair.editor] += made[0]
        critiques[t.pair.editor] += made[1]
    assert sum(critiques.values()) == len(critic)  # the final critique counted, none after the limit
    assert len(bodies) - len(critic) == 2 * sum(edits.values())  # VIEScore: two requests a score
    assert requests_per_call("scorer", cfg.scorer) == 2 and requests_per_call("expert", cfg.expert) == 1

    info = [{"role": r, "name": n, "counters": b.stats()} for (r, n), b in backends.items() if r != "editor"]
    usage = llm_usage(cfg, info)
    measured = Measured({"careful": 5, "sloppy": 5}, edits, critiques, usage, {}, {})
    plan = estimate(cfg, measured.pairs, measured_rates(cfg, measured))
    assert plan["total"]["edits"] == sum(edits.values())
    assert plan["roles"]["expert"]["requests"] == len(critic)
    assert plan["total"]["requests"] == len(bodies) == server.requests
    assert plan["total"]["tokens_in"] == 1000 * len(bodies)  # the server bills 1000 prompt tokens a call
    assert plan["total"]["tokens_out"] == usage["total"]["tokens_out"]
    assert plan["total"]["cost_usd"] == pytest.approx(usage["total"]["cost_usd"], abs=0.01)


@pytest.mark.slow
def test_a_calibration_on_16_pairs_predicts_the_demo_build(demo_build, tmp_path):
    """`plan --calibrate 16` builds 16 of the demo's pairs for real and scales what they
    did to the whole pool; the demo build (40 pairs) is the truth: its edits per editor and
    its expert and scorer calls, as its scheduler counted them in stats.json, within 20%.
    The demo's expert and scorer are procedural: they send no model requests, so tokens are
    zero on both sides (the test above checks tokens against a real endpoint)."""
    out, _ = demo_build
    stats = json.loads((out / "stats.json").read_text())
    result = runner.invoke(
        app,
        ["plan", str(DEMO_CONFIG), "--calibrate", "16", "--json", "-o", str(tmp_path / "out"),
         "--calibration-output", str(tmp_path / "calibration")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    calibration = json.loads((tmp_path / "calibration" / "stats.json").read_text())
    assert calibration["stages"]["pool"]["kept"] == 16 and plan["basis"] == "calibration: a build of 16 pairs"

    pools = stats["scheduler"]["pools"]
    assert plan["pairs"] == stats["stages"]["pool"]["kept"] == 40
    for name, editor in plan["editors"].items():
        assert editor["pairs"] == stats["pool_by_editor"][name]
        assert near(editor["edits"], pools[f"editor/{name}"]["requests"]), (name, editor, pools)
    assert near(plan["total"]["edits"], sum(pools[f"editor/{n}"]["requests"] for n in plan["editors"]))
    for role, r in plan["roles"].items():
        assert near(r["calls"], pools[f"{role}/{r['name']}"]["requests"]), (role, r, pools)
    actual_tokens = sum(u.get("tokens_in", 0) + u.get("tokens_out", 0) for u in stats["llm_usage"].values())
    assert plan["total"]["tokens_in"] + plan["total"]["tokens_out"] == actual_tokens == 0


@pytest.mark.parametrize(
    "plan_section, message",
    [
        ({}, "plan.turns_per_pair is unset"),
        ({"turns_per_pair": 9}, "exceeds loop.max_turns 5"),
        ({"turns_per_pair": 2, "editors": {"carefull": {"edit_seconds": 1}}}, "no editor is named 'carefull'"),
        ({"turns_per_pair": 2, "editors": {"careful": {"edit_seconds": 1}}}, "plan.editors.sloppy.edit_seconds is unset"),
        ({"turns_per_pair": 2, "editors": {"careful": {"edit_seconds": -1}}}, "plan.editors.careful.edit_seconds"),
    ],
)  # fmt: skip
def test_bad_plan_settings_fail_fast_with_the_fix(tmp_path, plan_section, message):
    config = demo_with_plan(tmp_path, plan_section)
    started = time.monotonic()
    result = runner.invoke(app, ["plan", str(config), "-o", str(tmp_path / "out")], terminal_width=400)
    assert result.exit_code == 2 and message in result.output, result.output
    assert time.monotonic() - started < 5 and not (tmp_path / "out").exists()


def test_priors_pool_the_demo_and_scale_by_the_loops_pattern(tmp_path):
    """Priors only: the real pooling's pair counts, edits = pairs x turns, critiques one
    fewer for the share that reaches the limit, GPU-hours = edits x seconds x GPUs."""
    prior = {"turns_per_pair": 2.5, "max_turns_share": 0.2,
             "editors": {"careful": {"edit_seconds": 3.0, "gpus": 1}, "sloppy": {"edit_seconds": 1.0}}}  # fmt: skip
    config = demo_with_plan(tmp_path, prior)
    result = runner.invoke(app, ["plan", str(config), "--json", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["pairs"] == 40 and {n: e["pairs"] for n, e in plan["editors"].items()} == {
        "careful": 21,
        "sloppy": 19,
    }
    assert plan["editors"]["careful"]["edits"] == round(21 * 2.5)
    assert plan["editors"]["careful"]["gpu_hours"] == round(21 * 2.5 * 3.0 * 1 / 3600, 2)
    assert plan["roles"]["expert"]["calls"] == round(40 * (2.5 - 0.2))
    assert plan["roles"]["scorer"]["calls"] == 100 and plan["total"]["requests"] == 0  # procedural: no model
    assert plan["cluster"]["bottleneck"] == "editor/careful" and plan["cluster"]["service_gpus"] == 1


def test_the_papers_plan_in_the_docs_is_what_plan_prints():
    """configs/paper-140k.yaml with a stated pool size (its sources are not downloaded):
    every number docs/planning.md shows comes from this command."""
    result = runner.invoke(
        app, ["plan", str(ROOT / "configs" / "paper-140k.yaml"), "--pairs", "140000"], terminal_width=100
    )
    assert result.exit_code == 0, result.output
    page = (ROOT / "docs" / "planning.md").read_text()
    block = re.search(r"plan configs/paper-140k.yaml --pairs 140000\n(.*?)```", page, re.S)
    assert block is not None, "docs/planning.md lacks the paper's plan output"
    printed = [line.rstrip() for line in result.output.splitlines() if line.strip()]
    shown = [line.rstrip() for line in block.group(1).splitlines() if line.strip()]
    assert shown == printed
    cfg = parse_config({"source": {"manifest": "m.jsonl"}, "editors": [{"name": "a"}, {"name": "b", "ratio": 2}],
                        "plan": {"turns_per_pair": 1, "editors": {"a": {"edit_seconds": 1}, "b": {"edit_seconds": 1}}}},
                       environ={})  # fmt: skip
    assert editor_split(cfg, 10) == {"a": 3, "b": 7} and prior_rates(cfg).turns == {"a": 1.0, "b": 1.0}


def test_plan_on_the_demo_config_runs_on_its_own_priors(tmp_path):
    """`plan configs/demo.yaml` on the embedded demo scenes needs no calibration: the config
    carries priors, and the plan is the demo's pooling scaled by them."""
    result = runner.invoke(app, ["plan", str(DEMO_CONFIG), "-o", str(tmp_path / "out")], terminal_width=100)
    assert result.exit_code == 0, result.output
    assert "40 pairs, 2.05 turns per pair expected" in result.output
    assert "rates from plan: priors" in result.output
    as_json = runner.invoke(app, ["plan", str(DEMO_CONFIG), "--json", "-o", str(tmp_path / "out")])
    assert as_json.exit_code == 0, as_json.output
    plan = json.loads(as_json.output)
    assert plan["pairs"] == 40 and plan["total"]["requests"] == 0  # procedural judges: no model
    assert {n: e["edits"] for n, e in plan["editors"].items()} == {
        "careful": round(21 * 2.05),
        "sloppy": round(19 * 2.05),
    }
    assert plan["roles"]["expert"]["calls"] == round(40 * (2.05 - 0.025))


@pytest.mark.slow
def test_the_demo_priors_predict_the_demo_build(demo_build, tmp_path):
    """The priors in configs/demo.yaml are the demo's own: edits per editor and expert and
    scorer calls within 20% of what the demo build's scheduler counted."""
    out, _ = demo_build
    pools = json.loads((out / "stats.json").read_text())["scheduler"]["pools"]
    result = runner.invoke(app, ["plan", str(DEMO_CONFIG), "--json", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    for name, editor in plan["editors"].items():
        assert near(editor["edits"], pools[f"editor/{name}"]["requests"]), (name, editor, pools)
    for role, r in plan["roles"].items():
        assert near(r["calls"], pools[f"{role}/{r['name']}"]["requests"]), (role, r, pools)
