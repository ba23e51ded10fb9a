import json
import time

import pytest
from typer.testing import CliRunner

from editthinker_data.cli import app

runner = CliRunner()


def test_help_on_every_command():
    for cmd in ([], ["build"], ["inspect"], ["validate"], ["demo-source"]):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_bad_config_fails_fast_with_the_fix(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: {manifest: m.jsonl}\nloop: {max_turns: -2}\neditors: [{kind: diffusion-magic}]\n")
    started = time.monotonic()
    result = runner.invoke(app, ["build", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "loop.max_turns" in result.output and "(got -2)" in result.output
    assert time.monotonic() - started < 5 and not (tmp_path / "out").exists()
    (tmp_path / "m.jsonl").write_text("")
    bad.write_text("source: {manifest: m.jsonl}\neditors: [{kind: diffusion-magic}]\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "unknown kind 'diffusion-magic'" in result.output


def test_validate_demo():
    result = runner.invoke(app, ["validate", "configs/demo.yaml"])
    assert result.exit_code == 0 and "valid" in result.output


@pytest.mark.slow
def test_inspect_summary_and_sample(demo_build, tmp_path):
    out, _ = demo_build
    result = runner.invoke(app, ["inspect", str(out)], terminal_width=160)
    assert result.exit_code == 0, result.output
    assert "trajectory_filter" in result.output and "per editor" in result.output
    assert "selection re-check: all 40 decisions follow" in result.output
    rows = [r for r in json.loads((out / "stats.json").read_text())["stop_reasons"]]
    assert rows
    result = runner.invoke(
        app,
        ["inspect", str(out), "--sample", "subj-synonyms", "--extract", str(tmp_path / "x")],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "Turn the crimson square navy." in result.output and "turn 1" in result.output
    assert sorted(p.name for p in (tmp_path / "x").iterdir())[0] == "subj-synonyms_t1.png"
    result = runner.invoke(app, ["inspect", str(out), "--sample", "nope"])
    assert result.exit_code == 2 and "no trajectory 'nope'" in result.output


def test_inspect_on_empty_dir(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "no finished build" in result.output


def test_resume_needs_something_to_resume(tmp_path):
    result = runner.invoke(app, ["build", "configs/demo.yaml", "-o", str(tmp_path / "empty"), "--resume"])
    assert result.exit_code == 2 and "holds no build to continue" in result.output
