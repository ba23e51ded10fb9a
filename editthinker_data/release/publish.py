"""Publishing a finished build to the Hugging Face Hub as a dataset repository.

What goes is an allow-list (`core.layout.RELEASE_DIRS` and `RELEASE_FILES`), not a deny-list:
run state, markers, journals, caches and anything a user left in the output stay behind
whatever their names, so a new kind of state can never leak by default. A build is published
only when it is finished, usable and verifies against its manifest.

The upload goes through `HfApi.upload_folder` on a staging folder holding exactly the
planned files: the Hub sees the plan and nothing else, with no per-file glob matching (which
is quadratic in huggingface_hub's filter). A local output is staged as symlinks; an s3://
output is downloaded fresh into it (it needs local disk for the release), because
upload_folder reads local files and hf_xet hashes and chunks them from paths (a stream would
fall back to the slower LFS protocol). The staged copy is what `verify` checks, so the bytes
that were checked are the bytes that go. With `hf_xet` installed (the default),
`upload_folder` is huggingface_hub's resumable, multi-commit upload for large folders (2.x
folded `upload_large_folder` into it): rerunning the command resumes it. Pure of Prefect and
Ray; huggingface_hub is imported only to upload.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editthinker_data.core.layout import (
    CARD_FILE,
    MANIFEST_FILE,
    RELEASE_DIRS,
    RELEASE_FILES,
    RUN_STATE,
    STATS_FILE,
)
from editthinker_data.core.outcome import verdict
from editthinker_data.io.storage import LocalStorage, Storage
from editthinker_data.release.report import PROBLEMS, verify

NOT_RELEASED = "not part of a release (neither a release folder nor a release file)"
REPO_TYPE = "dataset"


class ReleaseError(ValueError):
    """The output cannot be published as it is; the message says why and what to run."""


@dataclass
class ReleasePlan:
    """Every object of an output, sorted into what a release uploads and what stays behind."""

    url: str
    included: dict[str, int] = field(default_factory=dict)  # name -> bytes
    left_out: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> name -> bytes

    @property
    def bytes(self) -> int:
        return sum(self.included.values())

    def by_folder(self) -> dict[str, tuple[int, int]]:
        """(files, bytes) per top folder; files at the top are under "."."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for name, size in self.included.items():
            top = name.split("/", 1)[0] if "/" in name else "."
            out[top][0] += 1
            out[top][1] += size
        return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def classify(name: str) -> str | None:
    """None when `name` belongs to a release, else the reason it stays behind."""
    for prefix, reason in RUN_STATE.items():
        if name.startswith(prefix):
            return reason
    if name in RELEASE_FILES or ("/" in name and name.split("/", 1)[0] in RELEASE_DIRS):
        return None
    return NOT_RELEASED


def plan_release(storage: Storage) -> ReleasePlan:
    plan = ReleasePlan(storage.url)
    for name, size in storage.sizes("").items():
        reason = classify(name)
        if reason is None:
            plan.included[name] = size
        else:
            plan.left_out.setdefault(reason, {})[name] = size
    return plan


def check_finished(storage: Storage) -> None:
    """The cheap checks, before anything is read in bulk: a finished, usable build with a card."""
    where = storage.url
    missing = [n for n in (STATS_FILE, MANIFEST_FILE) if not storage.exists(n)]
    if missing:
        raise ReleaseError(
            f"{where} holds no finished build ({' and '.join(missing)} missing: they are written "
            "last); run `editthinker-data build` on it to the end, then publish"
        )
    stats, manifest = storage.read_json(STATS_FILE), storage.read_json(MANIFEST_FILE)
    if stats.get("config_fingerprint") != manifest.get("config_fingerprint"):
        raise ReleaseError(
            f"{where}: stats.json and manifest.json come from different configs "
            f"({stats.get('config_fingerprint')} vs {manifest.get('config_fingerprint')}): a build "
            "was interrupted while finishing; run the same build command again"
        )
    if "generate_failures" in stats:
        problem = verdict(stats["generate_failures"], manifest.get("totals", {}))
        if problem:
            raise ReleaseError(f"{where}: the build finished but is marked unusable: {problem}")
    if not storage.exists(CARD_FILE):
        raise ReleaseError(
            f"{where} has no dataset card ({CARD_FILE}); write it with `editthinker-data report {where}`"
        )


def check_verified(storage: Storage, where: str) -> None:
    """Every shard, table, export, figure and gallery file matches the manifest."""
    result = verify(storage)
    problems = [f"{kind} {item}" for kind in PROBLEMS for item in result[kind]]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ReleaseError(
            f"{where} does not verify against its manifest ({len(problems)} problem(s): {shown}). "
            f"See `editthinker-data verify {where}`; rerun `editthinker-data export` and `report` for "
            "changed exports or card, or rebuild for damaged shards"
        )


def check_publishable(storage: Storage) -> None:
    """Raise ReleaseError unless the output holds a finished, usable build with a card that
    verifies against its manifest."""
    check_finished(storage)
    check_verified(storage, storage.url)


def stage_release(storage: Storage, plan: ReleasePlan, folder: Path, workers: int = 8) -> Path:
    """A folder holding exactly the planned files: symlinks into a local output; fresh
    downloads (in parallel: a release has many small files) from an object store, never the
    storage's read cache, which could hold an earlier build's bytes under the same names."""
    if isinstance(storage, LocalStorage):
        for name in plan.included:
            link = folder / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(storage.path(name).resolve())
        return folder

    def fetch(name: str) -> None:
        storage.download_to(name, folder / name, plan.included[name])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(fetch, plan.included))
    return folder


def publish(
    storage: Storage,
    repo: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> dict[str, Any]:
    """Check, plan, stage, verify what was staged, upload; returns the plan and the Hub's
    commit. `token` and `endpoint` default to huggingface_hub's own (HF_TOKEN, HF_ENDPOINT)."""
    from huggingface_hub import HfApi, get_token

    if (token or get_token()) is None:
        raise ReleaseError(
            "no Hugging Face token: export HF_TOKEN with a token that can write to "
            f"{repo.split('/')[0]} (https://huggingface.co/settings/tokens), or run `hf auth login`"
        )
    check_finished(storage)
    plan = plan_release(storage)
    with tempfile.TemporaryDirectory(prefix="etd-publish-") as tmp:
        folder = stage_release(storage, plan, Path(tmp))
        staged = LocalStorage(folder)
        check_verified(staged, storage.url)  # the bytes that will go, read once
        manifest = staged.read_json(MANIFEST_FILE)
        api = HfApi(endpoint=endpoint, token=token)
        # private=None leaves an existing repo's visibility as it is
        repo_url = api.create_repo(
            repo, repo_type=REPO_TYPE, private=True if private else None, exist_ok=True
        )
        if revision and revision != "main":
            api.create_branch(repo, branch=revision, repo_type=REPO_TYPE, exist_ok=True)
        message = commit_message or (
            f"Publish {manifest.get('name', 'dataset')} (config {manifest.get('config_fingerprint')})"
        )
        info = api.upload_folder(
            repo_id=repo,
            folder_path=folder,
            repo_type=REPO_TYPE,
            revision=revision,
            commit_message=message,
            ignore_patterns=[f"{prefix}*" for prefix in RUN_STATE],  # never staged; kept out twice
        )
    return {"plan": plan, "repo_url": str(repo_url), "commit_url": info.commit_url, "commit_oid": info.oid}


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
