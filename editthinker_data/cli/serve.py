"""`serve`: the config's editors (and, with --scorer, its scorer) over HTTP on Ray Serve, on
the cluster a build of that config would use (`run.ray_address`, or a local one), until
Ctrl-C. The reward of the release's RL stage reaches it through EDIT_API_ENDPOINT."""

from __future__ import annotations

import hashlib
import signal
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from editthinker_data.cli.app import app
from editthinker_data.cli.term import console, err_console, fail
from editthinker_data.config import BackendSpec, BuildConfig, ConfigError


def check_serve_config(path: Path, editors: list[str] | None, scorer: bool) -> BuildConfig:
    """The config, with what `serve` needs checked before Ray starts: the named editors, their
    backends built (bad params, a missing model), the Ray head answering. The sources are
    not read: serving needs none."""
    from editthinker_data.backends import create_backend
    from editthinker_data.config import load_config
    from editthinker_data.pipeline.preflight import check_ray_address

    try:
        cfg = load_config(path)
        names = [e.name for e in cfg.editors]
        unknown = [n for n in editors or [] if n not in names]
        if unknown:
            raise ConfigError(f"--editor {', '.join(unknown)}: the config's editors are {', '.join(names)}")
        specs: list[tuple[str, BackendSpec]] = [
            ("editor", e) for e in cfg.editors if not editors or e.name in editors
        ]
        if scorer:
            if cfg.thinker is not None:
                raise ConfigError(
                    "--scorer: the config has a thinker, not a scorer; serve a config with a scorer"
                )
            specs.append(("scorer", cfg.scorer))
        for role, spec in specs:
            try:
                backend = create_backend(role, spec, cfg.seed)
                if cfg.run.ray_address is None and hasattr(backend, "preflight"):
                    backend.preflight()
            except (FileNotFoundError, ValueError) as err:
                if isinstance(err, ConfigError):
                    raise
                raise ConfigError(f"{role} {spec.name!r}: {err}") from None
        check_ray_address(cfg.run.ray_address)
    except ConfigError as err:
        fail(escape(str(err)))
    return cfg


def default_state_dir(cfg: BuildConfig) -> Path:
    digest = hashlib.sha256(cfg.name.encode()).hexdigest()[:8]
    return Path(tempfile.gettempdir()) / f"etd-serve-{digest}"


@app.command()
def serve(
    config: Annotated[Path, typer.Argument(help="build config (YAML) whose editors to serve")],
    host: Annotated[
        str,
        typer.Option(
            help="address to listen on; the default answers this machine only, 0.0.0.0 exposes the "
            "editors to the network (set --token-env then)"
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    editor: Annotated[
        list[str] | None, typer.Option("--editor", help="serve only this editor (repeat for more)")
    ] = None,
    scorer: Annotated[
        bool, typer.Option("--scorer", help="also serve the config's scorer at POST /score")
    ] = False,
    token_env: Annotated[
        str | None,
        typer.Option(
            help="environment variable holding a bearer token that every route but /health then requires"
        ),
    ] = None,
    state_dir: Annotated[
        str | None, typer.Option(help="Ray state of a local cluster (default: a folder under the temp dir)")
    ] = None,
) -> None:
    """Serve CONFIG's editors over HTTP on Ray Serve until Ctrl-C: POST /edit (the EditThinker
    release's contract, for its RL reward), POST /v1/edit (the http editor's), GET /health,
    GET /status; per editor under /<name>, and at the root when one editor is served."""
    cfg = check_serve_config(config, editor, scorer)
    from editthinker_data.distributed import serve as served
    from editthinker_data.distributed.runtime import ensure_ray, shutdown

    try:
        served.check_names(editor or [e.name for e in cfg.editors])
        served.token_digest(token_env)
    except ValueError as err:
        fail(escape(str(err)))
    console.print(f"starting Ray and Serve for {cfg.name} ...")
    state = Path(state_dir) if state_dir else default_state_dir(cfg)
    started_ray = ensure_ray(cfg.run.ray_address, cfg.run.num_cpus, state)
    stopping = threading.Event()
    # Both signals stop it, whatever this process inherited: a shell that starts a job in the
    # background without job control leaves SIGINT ignored, and Python then never raises
    # KeyboardInterrupt, so Ctrl-C or `kill -INT` would be lost.
    previous = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = served.start(cfg, host, port, editor, scorer, token_env)
        names = editor or [e.name for e in cfg.editors]
        say = lambda line: console.print(escape(line), soft_wrap=True)  # noqa: E731  (URLs unbroken)
        say(f"serving {', '.join(names)}{' and the scorer' if scorer else ''} at {url}")
        if len(names) == 1:
            say(f"ready: EDIT_API_ENDPOINT={url}  (the release's reward posts to {url}/edit)")
        else:
            for n in names:
                say(f"ready: {n}: EDIT_API_ENDPOINT={url}/{n}")
        console.print("Ctrl-C stops it")
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    except Exception as err:
        fail(escape(f"serve failed: {type(err).__name__}: {err}"), code=1)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        console.print("stopping ...")
        try:
            served.stop(shutdown_serve=started_ray)
        except Exception as err:  # noqa: BLE001  Serve never came up, or is gone: say so, go on
            err_console.print(escape(f"warning: stopping Serve: {type(err).__name__}: {err}"))
        finally:
            if started_ray:
                shutdown()
    console.print("stopped")
