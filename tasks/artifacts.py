"""What a build shows in the Prefect UI beside its task states."""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact

from editthinker_data.config import BuildConfig
from editthinker_data.core.reports import FinalizeReport


def summary_artifact(cfg: BuildConfig, output: str, final: FinalizeReport) -> None:
    """The finished build's stages and splits, as a table."""
    rows = "\n".join(
        f"| {name} | {s['input']} | {s['kept']} | {sum(s['filtered'].values())} | {sum(s['failed'].values())} |"
        for name, s in final.stats["stages"].items()
    )
    create_markdown_artifact(
        key="dataset-build-summary",
        markdown=f"# {cfg.name}\n\n| stage | input | kept | filtered | failed |\n|---|---|---|---|---|\n{rows}\n\n"
        f"splits: {final.stats['splits']}\n",
        description=f"build of {cfg.name} into {output}",
    )
