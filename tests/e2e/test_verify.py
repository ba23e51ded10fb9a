"""`verify` covers everything a user downloads, not only the shards: exports (against their
export_info.json), card, figures, gallery, pool and selection tables."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from editthinker_data.cli import app
from editthinker_data.io.storage import open_storage
from editthinker_data.release.report import Build, verify

pytestmark = pytest.mark.slow


@pytest.fixture
def build_copy(demo_build, tmp_path):
    out, _ = demo_build
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("_state", "_hf*"))
    return copy


def _verify_cli(path):
    result = CliRunner().invoke(app, ["verify", str(path)])
    return result.exit_code, " ".join(result.output.split())  # rich wraps long lines


def test_manifest_lists_every_download_and_a_clean_build_verifies(build_copy):
    files = json.loads((build_copy / "manifest.json").read_text())["files"]
    for name in (
        "README.md",
        "pool/pairs.parquet",
        "selection/decisions.parquet",
        "selection/steps.parquet",
        "config.json",
        "gallery/index.html",
        "figures/task_types.png",
        "exports/llamafactory/export_info.json",
        "exports/llamafactory/sft_train.json",
        "exports/easyr1/rl_train.jsonl",
        "exports/easyr1/format_prompt.txt",
    ):
        assert name in files and len(files[name]["sha256"]) == 64, name
    # every file under the release folders is listed, or (export images) named by a row
    report = verify(open_storage(build_copy))
    assert (report["mismatched"], report["missing"], report["extra"]) == ([], [], [])
    assert report["files"] == len(files)
    code, out = _verify_cli(build_copy)
    assert code == 0 and f"and {len(files)} files" in out


def test_emptied_llamafactory_export_fails_verify_naming_it(build_copy):
    (build_copy / "exports/llamafactory/sft_train.json").write_text("[]")
    code, out = _verify_cli(build_copy)
    rows = json.loads((build_copy / "exports/llamafactory/export_info.json").read_text())["rows"]
    assert code == 1
    assert "exports/llamafactory/sft_train.json: 2 bytes" in out
    assert f"0 rows, export_info.json says {rows}" in out


@pytest.mark.parametrize(
    "name, damage",
    [
        ("README.md", lambda b: b.replace(b"## Splits", b"## Splitz")),
        ("pool/pairs.parquet", lambda b: b[:100] + bytes([b[100] ^ 0xFF]) + b[101:]),
        ("selection/steps.parquet", lambda b: b[:-1]),
        ("gallery/kept.html", lambda b: b""),
        ("exports/easyr1/format_prompt.txt", lambda b: b.replace(b"{rewritten_prompt}", b"")),
        ("exports/easyr1/export_info.json", lambda b: b.replace(b'"rows": ', b'"rows": 1')),
    ],
)
def test_damaged_download_fails_verify_naming_it(build_copy, name, damage):
    path = build_copy / name
    path.write_bytes(damage(path.read_bytes()))
    report = verify(open_storage(build_copy))
    assert report["mismatched"] and all(m.startswith(f"{name}: ") for m in report["mismatched"])
    assert report["missing"] == report["extra"] == []
    code, out = _verify_cli(build_copy)
    assert code == 1 and f"{name}: " in out and "sha256 differs" in out


def test_missing_stray_and_swapped_export_images_are_named(build_copy):
    root = build_copy / "exports/easyr1"
    rows = [json.loads(line) for line in (root / "rl_train.jsonl").read_text().splitlines()]
    gone, other = rows[0]["origin_image_path"], rows[0]["edited_image_path"]
    (root / "images" / other).write_bytes((root / "images" / gone).read_bytes())  # wrong content
    (root / "images" / gone).unlink()
    (root / "images" / "stray.png").write_bytes(b"x")
    (build_copy / "gallery/old-page.html").write_text("left over")
    report = verify(open_storage(build_copy))
    assert f"exports/easyr1/images/{gone}: missing (a row of exports/easyr1 names it)" in report["mismatched"]
    assert any(
        m.startswith(f"exports/easyr1/images/{other}: content does not match") for m in report["mismatched"]
    )
    assert report["extra"] == ["exports/easyr1/images/stray.png", "gallery/old-page.html"]


def test_rewriting_the_release_is_byte_identical_and_clears_leftovers(build_copy):
    """export and report redo the release alone: same bytes, same manifest; files an earlier
    run left in the release folders are removed, so the folders hold what is listed."""
    from editthinker_data.release.run import run_exports, write_report

    names = ["manifest.json", "README.md"] + [
        p.relative_to(build_copy).as_posix()
        for folder in ("exports", "figures", "gallery")
        for p in sorted((build_copy / folder).rglob("*"))
        if p.is_file()
    ]
    before = {n: (build_copy / n).read_bytes() for n in names}
    (build_copy / "gallery/old-page.html").write_text("left over")
    (build_copy / "exports/easyr1/images/0000.png").write_bytes(b"x")
    build = Build(str(build_copy))
    write_report(build, run_exports(build, ["llamafactory", "easyr1"]))
    assert not (build_copy / "gallery/old-page.html").exists()
    assert not (build_copy / "exports/easyr1/images/0000.png").exists()
    assert {n: (build_copy / n).read_bytes() for n in names} == before
    assert verify(open_storage(build_copy))["extra"] == []
