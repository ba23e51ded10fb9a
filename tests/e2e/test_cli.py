import json
import time

import pytest
from typer.testing import CliRunner

from editthinker_data.cli import app
from tests.support.paths import ROOT

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
    assert "…" not in result.output and "{'" not in result.output  # fits 80 columns, no raw dicts
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


def _one_paragraph(output: str) -> str:
    assert "Traceback" not in output
    return " ".join(output.split())


def test_output_that_is_a_file_or_inside_one_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for cmd in ("build", "pool"):
        result = runner.invoke(app, [cmd, "configs/demo.yaml", "-o", str(afile)])
        assert result.exit_code == 2, result.output
        assert f"output {afile} is a file, not a folder" in _one_paragraph(result.output)
    result = runner.invoke(app, ["build", "configs/demo.yaml", "-o", str(afile / "sub")])
    assert result.exit_code == 2 and "which is a file" in _one_paragraph(result.output)


def test_unwritable_output_is_one_line(tmp_path):
    # /proc refuses new folders even to root, so this holds whoever runs the tests.
    result = runner.invoke(app, ["pool", "configs/demo.yaml", "-o", "/proc/etd-nope/out"])
    assert result.exit_code == 2
    assert "is not writable" in _one_paragraph(result.output)


def test_console_entry_point_turns_os_errors_into_one_paragraph(tmp_path, monkeypatch, capsys):
    from editthinker_data import cli

    def broken() -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / "x"))

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 1
    err = _one_paragraph(capsys.readouterr().err)
    assert "error: Permission denied" in err and str(tmp_path / "x") in err
    monkeypatch.setenv("EDITTHINKER_DEBUG", "1")
    with pytest.raises(PermissionError):
        cli.main()


def test_bad_env_override_names_its_variable(monkeypatch):
    monkeypatch.setenv("EDITTHINKER__LOOP__MAX_TURNS", "0")
    result = runner.invoke(app, ["validate", "configs/demo.yaml"])
    assert result.exit_code == 2
    out = _one_paragraph(result.output)
    assert "set by the environment variable EDITTHINKER__LOOP__MAX_TURNS" in out and "(got 0)" in out
    monkeypatch.delenv("EDITTHINKER__LOOP__MAX_TURNS")
    monkeypatch.setenv("EDITTHINKER__LOOP__MAX_TRUNS", "3")
    result = runner.invoke(app, ["validate", "configs/demo.yaml"])
    out = _one_paragraph(result.output)
    assert (
        result.exit_code == 2 and "EDITTHINKER__LOOP__MAX_TRUNS" in out and "did you mean 'max_turns'" in out
    )


def test_misspelt_key_gets_did_you_mean(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (ROOT / "configs" / "demo.yaml").read_text().replace("max_turns:", "max_turn:")
    assert "max_turn:" in text
    bad.write_text(text)
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2 and "did you mean 'max_turns'" in _one_paragraph(result.output)


def test_help_text_keeps_square_brackets():
    result = runner.invoke(app, ["tiny-editors", "--help"], terminal_width=100)
    assert result.exit_code == 0 and ".[models]" in result.output


def test_tiny_editors_help_lists_the_registered_families():
    from editthinker_data.backends.editors.tiny_models import tiny_names

    result = runner.invoke(app, ["tiny-editors", "--help"])
    flat = " ".join(result.output.replace("│", " ").split())  # the help is wrapped in panels
    names = tiny_names()
    assert result.exit_code == 0 and "{families}" not in flat and "instruct-pix2pix" in names
    assert flat.count(", ".join(names)) == 2  # in the description and in --name
    listing = runner.invoke(app, ["--help"])
    assert listing.exit_code == 0 and "tiny-editors" in listing.output and "{families}" not in listing.output


def test_state_dir_is_absolute_and_per_user_for_object_storage(tmp_path, monkeypatch):
    from editthinker_data.core.runenv import default_state_dir, state_dir_for

    monkeypatch.delenv("EDITTHINKER_STATE_HOME", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    remote = default_state_dir("s3://bucket/prefix")
    assert remote.is_absolute() and remote.parent == tmp_path / "xdg" / "editthinker-data"
    assert default_state_dir("s3://bucket/prefix") == remote != default_state_dir("s3://bucket/other")
    monkeypatch.chdir(tmp_path)
    assert default_state_dir("runs/x") == tmp_path / "runs" / "x" / "_state"
    assert state_dir_for("s3://b/p", "rel/state") == tmp_path / "rel" / "state"


def test_rate_stops_when_generation_ends(monkeypatch):
    from editthinker_data.core import progress as progress_mod

    clock = [100.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    p = progress_mod.Progress()
    p.set_stage("generating")
    clock[0] = 110.0
    p.add(pairs_done=20)
    p.set_stage("selecting")
    clock[0] = 500.0
    snap = p.snapshot()
    assert snap["generate_s"] == 10.0 and snap["elapsed_s"] == 400.0
