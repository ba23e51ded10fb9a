"""`tiny-editors`: save tiny random pipelines of the diffusers editor families for CPU runs.
The families, and so the help's list of them, come from `backends.REGISTRY`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperCommand

from editthinker_data.cli.app import app
from editthinker_data.cli.term import console, fail


class _FamiliesInHelp(TyperCommand):
    """Fills `{families}` in a command's help from `backends.REGISTRY` when the help is
    shown, so a new family is listed without an edit here and without importing every
    editor class each time the CLI starts."""

    def format_help(self, ctx, formatter):
        from editthinker_data.backends.editors.tiny_models import tiny_names

        names = ", ".join(tiny_names())
        self.help = (self.help or "").replace("{families}", names)
        for param in self.params:
            if getattr(param, "help", None):
                param.help = param.help.replace("{families}", names)
        return super().format_help(ctx, formatter)


@app.command(
    "tiny-editors",
    cls=_FamiliesInHelp,
    short_help="Save tiny random pipelines of the diffusers editor families for CPU runs.",
)
def tiny_editors(
    out_dir: Annotated[Path, typer.Argument(help="where to save the pipelines, one folder each")],
    name: Annotated[list[str] | None, typer.Option("--name", help="only these, of: {families}")] = None,
) -> None:
    """Save a tiny random pipeline of every diffusers editor family ({families}) for CPU
    runs of configs/tiny-diffusers.yaml; needs the models extra: pip install -e '.\\[models]'."""
    try:
        from editthinker_data.backends.editors.tiny_models import save_tiny_editors
    except ImportError as err:
        fail(f"{err}; install the model libraries: pip install -e '.[models]'")
    try:
        saved = save_tiny_editors(out_dir, name or None)
    except ValueError as err:
        fail(str(err))
    for editor, path in saved.items():
        console.print(f"{editor}: {path}")
