"""`publish`: upload a finished build to the Hugging Face Hub, or with --dry-run show what
would go and what stays behind (nothing is sent then, not even a login check)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from editthinker_data.cli.app import EndpointOption, OutputArg, app
from editthinker_data.cli.term import console, fail, storage_problem


def _plan_tables(plan, human_bytes) -> list[Table]:
    going = Table(
        title=f"would upload: {len(plan.included)} files, {human_bytes(plan.bytes)}", header_style="bold"
    )
    going.add_column("folder", no_wrap=True)
    going.add_column("files", justify="right")
    going.add_column("bytes", justify="right")
    for top, (files, size) in plan.by_folder().items():
        going.add_row(top, str(files), human_bytes(size))
    staying = Table(title="left out", header_style="bold")
    staying.add_column("why", overflow="fold")
    staying.add_column("files", justify="right")
    staying.add_column("bytes", justify="right")
    staying.add_column("e.g.", overflow="fold")
    for reason, names in sorted(plan.left_out.items()):
        staying.add_row(reason, str(len(names)), human_bytes(sum(names.values())), next(iter(sorted(names))))
    return [going, staying] if plan.left_out else [going]


@app.command()
def publish(
    output: OutputArg,
    repo: Annotated[str, typer.Option("--repo", help="the Hub dataset repository, ORG/NAME")],
    revision: Annotated[
        str | None, typer.Option(help="branch to commit to (created from main if missing); default main")
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="create the repository private")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list what would go and what is left out; send nothing")
    ] = False,
    endpoint_url: EndpointOption = None,
) -> None:
    """Upload a finished, verified build as a Hub dataset: shards, tables, exports, card,
    figures, gallery, stats.json, manifest.json, failures.jsonl; never run state, markers,
    journals or caches. The token comes from HF_TOKEN (or `hf auth login`)."""
    from huggingface_hub.errors import HfHubHTTPError

    from editthinker_data.io.storage import open_storage
    from editthinker_data.release.publish import ReleaseError, check_publishable, human_bytes, plan_release

    if repo.count("/") != 1 or not all(repo.split("/")):
        fail(f"--repo {repo!r}: expected ORG/NAME, e.g. my-org/editthinker-data")
    from editthinker_data.cli.outputs import finished_output

    output = finished_output(output, endpoint_url)
    try:
        storage = open_storage(output, endpoint_url=endpoint_url)
        if dry_run:
            plan = plan_release(storage)
            for table in _plan_tables(plan, human_bytes):
                console.print(table)
            check_publishable(storage)
            console.print(
                f"dry run: {output} verifies; `publish` would send these {len(plan.included)} files to "
                f"datasets/{repo}{f' ({revision})' if revision else ''}; nothing was sent"
            )
            return
        from editthinker_data.release.publish import publish as upload

        console.print(f"publishing {output} to datasets/{repo} (checking it first) ...")
        result = upload(storage, repo, revision=revision, private=private)
    except ReleaseError as err:
        fail(str(err))
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        hint = {
            401: "the token is invalid or expired; export a valid HF_TOKEN",
            403: f"the token may not write to {repo}; use a token with write access to its owner",
            404: f"{repo} was not found; check the name and the token's access",
        }.get(status, "see the message above")
        fail(f"the Hub answered {status}: {str(err).splitlines()[0]} ({hint})", code=1)
    except Exception as err:
        message = storage_problem(err)
        if message is None:
            raise
        fail(f"{output}: {message}")
    plan = result["plan"]
    console.print(
        f"published {len(plan.included)} files ({human_bytes(plan.bytes)}) to {result['repo_url']}; "
        f"commit {result['commit_url']}"
    )
    skipped = sum(len(v) for v in plan.left_out.values())
    if skipped:
        console.print(f"left out {skipped} files: {', '.join(sorted(plan.left_out))}")
