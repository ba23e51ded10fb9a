"""The CLI's consoles and its one way to fail: a one-paragraph message, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def storage_problem(err: Exception) -> str | None:
    """One line for an object-store or file-system error a user can fix; None for a bug."""
    try:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(err, NoCredentialsError):
        return "no S3 credentials; export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "?")
        hint = {
            "NoSuchBucket": "the bucket does not exist; create it first",
            "AccessDenied": "access denied; check the credentials' permissions on this bucket",
            "403": "access denied; check the credentials' permissions on this bucket",
            "404": "the bucket does not exist; create it first",
        }.get(str(code), "check the bucket, the credentials and the endpoint")
        return f"the object store answered {code}: {hint}"
    if isinstance(err, BotoCoreError):
        return f"{err}; check AWS_ENDPOINT_URL_S3 / output.s3_endpoint_url and the network"
    if isinstance(err, OSError):
        return f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}"
    return None


@contextmanager
def failing_as_paragraph(where: str) -> Iterator[None]:
    """A config problem, or an object-store or file-system error a user can fix, met in
    the block: one paragraph naming `where`, exit 2; anything else (a bug) is raised."""
    from editthinker_data.config import ConfigError

    try:
        yield
    except ConfigError as err:
        fail(str(err))
    except typer.Exit:
        raise
    except Exception as err:
        message = storage_problem(err)
        if message is None:
            raise
        fail(f"{where}: {message}")
