from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from editthinker_data import stages
from editthinker_data.config import BuildConfig


@task(name="finalize", cache_policy=NONE)
def finalize_task(
    cfg: BuildConfig,
    output: str,
    pool: dict,
    generate: list[dict],
    select: dict,
    write: list[dict],
    extra: dict,
) -> dict:
    """manifest.json and stats.json, written last; a summary artifact for the Prefect UI."""
    result = stages.finalize(cfg, stages.output_storage(cfg, output), pool, generate, select, write, extra)
    rows = "\n".join(
        f"| {name} | {s['input']} | {s['kept']} | {sum(s['filtered'].values())} | {sum(s['failed'].values())} |"
        for name, s in result["stats"]["stages"].items()
    )
    create_markdown_artifact(
        key="dataset-build-summary",
        markdown=f"# {cfg.name}\n\n| stage | input | kept | filtered | failed |\n|---|---|---|---|---|\n{rows}\n\n"
        f"splits: {result['stats']['splits']}\n",
        description=f"build of {cfg.name} into {output}",
    )
    return result
