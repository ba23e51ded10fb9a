"""`publish`: what reaches the Hub (through huggingface_hub's real HTTP calls to a loopback
Hub), what stays behind, what is refused; and the data is Hub-ready: every config the card
declares loads with the real `datasets` library and writes Parquet."""

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import yaml
from typer.testing import CliRunner

from editthinker_data.cli import app, term
from editthinker_data.core.layout import RUN_STATE
from editthinker_data.core.stats import STAGES
from editthinker_data.io.storage import open_storage
from editthinker_data.release.publish import NOT_RELEASED, plan_release, publish
from tests.support.fake_hub import FakeHub
from tests.support.paths import BUCKET, ROOT

pytestmark = [
    pytest.mark.slow,
    # huggingface_hub's legacy LFS PUT (the protocol of the loopback Hub) passes data= to httpx
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]

STATE_SECRET = b"prefect-db-row: run state that must never be published"
RUN_STATE_FILES = {
    "_state/prefect/prefect.db": STATE_SECRET,
    "_state/ray/session_latest/logs/raylet.out": STATE_SECRET,
    "_journal/generate/part-00000/000001.jsonl": STATE_SECRET,
    "_journal/usage/part-00000/000001.json": STATE_SECRET,
    "cache/llm/ab/abcdef.json": STATE_SECRET,
}
STRAY_FILES = {"notes.txt": b"my notes", "_hf/cache.arrow": b"a datasets cache"}


@pytest.fixture
def build_copy(demo_build, tmp_path):
    """The session's demo build with the run state a real local build keeps beside its data
    (state, journals, usage logs, answer cache; its markers are there already) and strays."""
    out, _ = demo_build
    copy = tmp_path / "build"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("_hf*", "_state"))
    for name, data in {**RUN_STATE_FILES, **STRAY_FILES}.items():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes(data)
    return copy


def _expected_release(root: Path) -> dict[str, bytes]:
    """Independently of the plan: every file but run state, markers and strays."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {
        n: d
        for n, d in files.items()
        if not n.startswith(("_state/", "_markers/", "_journal/", "cache/")) and n not in STRAY_FILES
    }


def _cli(args, hub_url, **env):
    full = {
        **os.environ,
        "HF_ENDPOINT": hub_url,
        "HF_TOKEN": "hf_test_token",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",  # the legacy protocol the loopback Hub speaks (see fake_hub)
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "COLUMNS": "200",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "editthinker_data.cli", *args],
        cwd=ROOT, env=full, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_publish_sends_every_release_file_and_no_run_state(build_copy, state_dir):
    with FakeHub() as hub:
        done = _cli(
            ["publish", str(build_copy), "--repo", "org/demo", "--revision", "v1", "--private"], hub.url
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert hub.unexpected == []
    assert hub.repos["org/demo"]["type"] == "dataset" and hub.repos["org/demo"]["visibility"] == "private"
    assert hub.branches == [("org/demo", "v1")]
    # the token goes to the Hub's API, not to the LFS storage URLs it hands out
    assert {auth for _, path, auth in hub.requests if path.startswith("/api/")} == {"Bearer hf_test_token"}
    assert [c["revision"] for c in hub.commits] == ["v1"]
    sent = hub.committed()
    expected = _expected_release(build_copy)
    assert sent == expected  # every release file, byte for byte; nothing else
    manifest = json.loads((build_copy / "manifest.json").read_bytes())
    listed = {s["url"] for items in manifest["shards"].values() for s in items} | set(manifest["files"])
    assert listed <= set(sent) and {"stats.json", "manifest.json", "README.md", "failures.jsonl"} <= set(sent)
    assert any(n.startswith("exports/easyr1/images/") for n in sent)  # export images go too
    assert not [n for n in sent if n.startswith(tuple(RUN_STATE))]
    leaked = [n for n, d in sent.items() if STATE_SECRET in d or str(state_dir).encode() in d]
    assert leaked == []  # no published file carries run state or points at it
    assert f"published {len(expected)} files" in " ".join(done.stdout.split())


def test_dry_run_lists_what_would_go_and_sends_nothing(build_copy, monkeypatch):
    from huggingface_hub import constants

    with FakeHub() as hub:  # anything huggingface_hub sent would reach this Hub
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        # The CLI's console took its width when it was imported: widen it (a narrow one wraps
        # the table's cells, and the text checked below with them).
        monkeypatch.setattr(term.console, "width", 200)
        result = CliRunner().invoke(app, ["publish", str(build_copy), "--repo", "org/demo", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert hub.requests == []
    out = " ".join(result.output.split())
    expected = _expected_release(build_copy)
    assert f"would upload: {len(expected)} files" in out and "nothing was sent" in out
    steps = [n for n in expected if n.startswith("steps/")]
    assert re.search(rf"│ steps\s+│\s+{len(steps)} │", result.output)
    for reason in (
        "run state",
        "unit success markers",
        "unit journals and model usage logs",
        "model answer cache",
    ):
        assert reason in out
    plan = plan_release(open_storage(str(build_copy)))
    assert set(plan.included) == set(expected)
    assert set(plan.left_out[NOT_RELEASED]) == set(STRAY_FILES)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "stats.json").unlink(), "holds no finished build"),
        (lambda p: (p / "README.md").unlink(), "has no dataset card"),
        (lambda p: next((p / "steps" / "sft").glob("*.tar")).write_bytes(b"x"), "does not verify"),
        (lambda p: (p / "exports" / "easyr1" / "rl_train.jsonl").write_text("{}\n"), "does not verify"),
    ],
    ids=["unfinished", "no-card", "damaged-shard", "changed-export"],
)
def test_unfinished_or_unverified_builds_are_refused_before_any_request(
    build_copy, damage, message, monkeypatch
):
    from huggingface_hub import constants

    damage(build_copy)
    with FakeHub() as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        for extra in ([], ["--dry-run"]):
            result = CliRunner().invoke(app, ["publish", str(build_copy), "--repo", "org/demo", *extra])
            assert result.exit_code == 2, result.output
            assert message in " ".join(result.output.split())
    assert hub.requests == []


def test_no_token_is_a_clear_error(build_copy, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    result = CliRunner().invoke(app, ["publish", str(build_copy), "--repo", "org/demo"])
    assert result.exit_code == 2 and "HF_TOKEN" in result.output
    bad = CliRunner().invoke(app, ["publish", str(build_copy), "--repo", "demo"])
    assert bad.exit_code == 2 and "ORG/NAME" in bad.output
    help_text = CliRunner().invoke(app, ["publish", "--help"], terminal_width=120).output
    assert all(opt in help_text for opt in ("--repo", "--revision", "--private", "--dry-run", "HF_TOKEN"))


def test_a_token_the_hub_refuses_is_one_clear_line(build_copy, monkeypatch):
    from huggingface_hub import constants

    with FakeHub(refuse_token=True) as hub:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_expired")
        result = CliRunner().invoke(app, ["publish", str(build_copy), "--repo", "org/demo"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    out = " ".join(result.output.split())
    assert "the Hub answered 401" in out and "export a valid HF_TOKEN" in out
    assert hub.commits == [] and not [p for _, p, _ in hub.requests if "preupload" in p]


def test_publish_from_s3_stages_fresh_bytes_and_uploads_them(s3_endpoint, build_copy, monkeypatch):
    from huggingface_hub import constants

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    files = [p for p in build_copy.rglob("*") if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda p: client.upload_file(
                    str(p), BUCKET, f"publish/{p.relative_to(build_copy).as_posix()}"
                ),
                files,
            )
        )
    storage = open_storage(f"s3://{BUCKET}/publish", endpoint_url=s3_endpoint)
    shard = json.loads((build_copy / "manifest.json").read_text())["shards"]["sft"][0]["url"]
    storage.local_copy(shard).write_bytes(b"an earlier build's bytes in the read cache")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with FakeHub() as hub:
        result = publish(storage, "org/s3-demo", token="hf_test_token", endpoint=hub.url)
    assert hub.unexpected == [] and hub.repos["org/s3-demo"].get("visibility") is None
    assert hub.committed() == _expected_release(build_copy)  # the object store's bytes, not the cache's
    assert result["commit_url"].startswith(hub.url)


def test_the_default_xet_upload_gets_the_same_files(build_copy, monkeypatch):
    """With hf_xet (the default install) upload_folder hands its additions to the Xet
    pipeline, which talks to a separate CAS service: capture what it was given instead."""
    from types import SimpleNamespace

    from huggingface_hub import _upload_pipeline, constants

    given = {}

    def pipelined_upload(api, *, add_operations, delete_operations, revision, **kwargs):
        for op in add_operations:
            given[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
        given["__revision__"], given["__deletes__"] = revision, delete_operations
        return SimpleNamespace(commit_url=f"{api.endpoint}/commit/x", oid="x" * 40)

    monkeypatch.setattr(_upload_pipeline, "pipelined_upload", pipelined_upload)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    with FakeHub() as hub:
        publish(
            open_storage(str(build_copy)), "org/demo", revision="v2", token="hf_test_token", endpoint=hub.url
        )
    assert given.pop("__revision__") == "v2" and given.pop("__deletes__") == []
    assert given == _expected_release(build_copy)
    assert hub.branches == [("org/demo", "v2")] and hub.commits == []


def _card(out: Path) -> tuple[dict, str]:
    _, front, body = (out / "README.md").read_text().split("---\n", 2)
    return yaml.safe_load(front), body


def test_every_card_config_loads_with_datasets_and_writes_parquet(demo_build, tmp_path):
    """How the Hub and `load_dataset(repo, name)` read a published build: the card's configs."""
    import datasets

    out, result = demo_build
    meta, _ = _card(out)
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert list(configs) == ["sft", "rl", "trajectories"] and configs["sft"].get("default") is True
    assert [i["config_name"] for i in meta["dataset_info"]] == list(configs)  # typed over all samples
    for name in configs:
        ds = datasets.load_dataset(str(out), name, split="train", cache_dir=str(tmp_path / "hf"))
        assert ds.num_rows == result.manifest["totals"][name]
        images = {"png"} if name == "trajectories" else {"src.png", "prev.png"}
        assert set(ds.features) >= {"json", *images}
        ds.to_parquet(str(tmp_path / f"{name}.parquet"))  # no empty struct anywhere
        back = datasets.Dataset.from_parquet(
            str(tmp_path / f"{name}.parquet"), cache_dir=str(tmp_path / "hf")
        )
        assert back.num_rows == ds.num_rows and back[0]["json"]["scores"] == ds[0]["json"]["scores"]


def _table(body: str, header: str) -> list[list[str]]:
    lines = body[body.index(header) :].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_card_numbers_agree_with_stats(demo_build):
    out, _ = demo_build
    stats = json.loads((out / "stats.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    meta, body = _card(out)
    splits = {r[0]: r for r in _table(body, "| split | samples | trajectories |")}
    for split in ("sft", "rl"):
        assert int(splits[split][1]) == stats["splits"][split] == manifest["totals"][split]
        assert int(splits[split][2]) == stats["trajectory_splits"][split]
    stages = {r[0]: r for r in _table(body, "| stage | input | kept |")}
    assert set(stages) == {s for s in STAGES if s in stats["stages"]}
    for name, row in stages.items():
        assert (int(row[1]), int(row[2])) == (stats["stages"][name]["input"], stats["stages"][name]["kept"])
    steps = stats["splits"]["sft"] + stats["splits"]["rl"]
    assert steps < 1000 and meta["size_categories"] == ["n<1K"]
    limitations = body[body.index("## Limitations") : body.index("## Citation")]
    assert "procedural demo backend" in limitations  # the demo runs the procedural backends
    for source, licence in stats["licences"].items():
        assert f"{source}: {licence}" in limitations
    citation = body[body.index("## Citation") :]
    assert "@article{" in citation and "arXiv:2512.05965" in citation and "EditThinker" in citation


def test_card_features_let_a_field_set_only_after_the_first_samples_load(tmp_path):
    """`datasets` infers a config's types from its first five samples unless the card
    declares them: a trajectory turn's `error` (or turn 1's `reasoning`) is null there and
    set later. With the features the card writes, every sample loads and writes Parquet."""
    import io
    import tarfile

    import datasets

    from editthinker_data.release.card_features import shard_features

    (tmp_path / "trajectories").mkdir()
    with tarfile.open(tmp_path / "trajectories" / "part-00000-000000.tar", "w") as tar:
        for i in range(8):
            meta = {"turn": i, "reasoning": None if i < 6 else "why", "error": "boom" if i == 7 else None}
            for suffix, data in (("json", json.dumps(meta).encode()), ("png", b"\x89PNG not decoded")):
                info = tarfile.TarInfo(f"t{i}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    config = {"config_name": "trajectories", "data_files": [{"split": "train", "path": "trajectories/*.tar"}]}

    def load(meta):
        (tmp_path / "README.md").write_text("---\n" + yaml.safe_dump(meta) + "---\n")
        return datasets.load_dataset(
            str(tmp_path), "trajectories", split="train", cache_dir=str(tmp_path / "hf")
        )

    with pytest.raises(datasets.exceptions.DatasetGenerationError):
        load({"configs": [config]})  # inferred from the first five samples: error is null there
    features = shard_features(open_storage(str(tmp_path)), ["trajectories/part-00000-000000.tar"])
    ds = load({"configs": [config], "dataset_info": [{"config_name": "trajectories", "features": features}]})
    assert [r["error"] for r in ds["json"]] == [None] * 7 + ["boom"]
    assert ds.features["png"] == datasets.Image()
    ds.remove_columns("png").to_parquet(str(tmp_path / "t.parquet"))
