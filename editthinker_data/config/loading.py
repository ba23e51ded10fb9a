"""Loading a config: YAML, environment overrides (named by their variable in errors),
paths resolved against the config file, errors that name the key, the value and the fix
("did you mean" for misspelt keys)."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from editthinker_data.config.base import ENV_PREFIX, ConfigError
from editthinker_data.config.model import BuildConfig
from editthinker_data.config.sources import PATH_OPTIONS


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model that holds the key at `loc` (list indexes skipped), for "did you mean"."""
    model: type[BaseModel] = BuildConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _inner_model(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    model = _model_at(loc)
    if model is None or not loc:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _format_errors(
    err: ValidationError, origin: str, overrides: dict[tuple[str, ...], str] | None = None
) -> str:
    overrides = overrides or {}
    lines = [f"invalid config {origin}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key" + (
                _did_you_mean(e["loc"]) or "; check the spelling against configs/demo.yaml"
            )
        elif e["type"] == "missing":
            msg = "required key is missing; add it (see configs/demo.yaml)"
        got = e.get("input")
        shown = "" if e["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        path = tuple(str(p) for p in e["loc"] if not isinstance(p, int))
        var = next((v for p, v in overrides.items() if path[: len(p)] == p), None)
        where = f" (set by the environment variable {var})" if var else ""
        lines.append(f"  {loc}{where}: {msg}{shown}")
    return "\n".join(lines)


def _apply_env_overrides(
    data: dict[str, Any], environ: dict[str, str], overrides: dict[tuple[str, ...], str] | None = None
) -> dict[str, Any]:
    """EDITTHINKER__RUN__MAX_IN_FLIGHT=64 sets run.max_in_flight (value parsed as YAML);
    `overrides` collects which key each variable set, so an error names the variable."""
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            raise ConfigError(f"{name}: names no config key; use e.g. EDITTHINKER__LOOP__MAX_TURNS=8")
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} does not name a config key")
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:  # a reader error (a control character) has no `problem`
            problem = err.problem if isinstance(err, yaml.MarkedYAMLError) else str(err).splitlines()[0]
            raise ConfigError(f"{name}: its value {raw!r} is not valid YAML ({problem})") from None
        if overrides is not None:
            overrides[tuple(path)] = name
    return data


def _resolve_model_path(backend: Any, base_dir: Path) -> None:
    """`model: ./models/x` (or `params.model_path`, a scorer's `params.prompt_dir`) is a folder
    next to the config file; a Hub id (`org/name`) or a served model name never starts with a
    dot, so it is left alone."""
    if not isinstance(backend, dict):
        return
    for holder in (backend, backend.get("params")):
        if not isinstance(holder, dict):
            continue
        for key in ("model", "model_path", "prompt_dir"):
            model = holder.get(key)
            if isinstance(model, str) and model.startswith(("./", "../")):
                holder[key] = str((base_dir / model).resolve())


def _resolve(value: Any, base_dir: Path) -> Any:
    if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
        return str((base_dir / value).resolve())
    return value


def _resolve_source_paths(src: dict[str, Any], base_dir: Path) -> None:
    src["manifest"] = _resolve(src.get("manifest"), base_dir) if src.get("manifest") is not None else None
    if src["manifest"] is None:
        del src["manifest"]
    for spec in src.get("inputs") or []:
        if not isinstance(spec, dict):
            continue
        if "path" in spec:
            spec["path"] = _resolve(spec["path"], base_dir)
        roots = spec.get("allowed_roots")
        if isinstance(roots, list):
            spec["allowed_roots"] = [_resolve(r, base_dir) for r in roots]
        options = spec.get("options")
        if isinstance(options, dict):
            for key in PATH_OPTIONS:
                if key in options:
                    options[key] = _resolve(options[key], base_dir)


def parse_config(
    data: dict[str, Any], *, base_dir: Path | None = None, origin: str = "<dict>", environ=None
) -> BuildConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {origin}: the top level must be a mapping of sections")
    overrides: dict[tuple[str, ...], str] = {}
    data = _apply_env_overrides(
        json.loads(json.dumps(data)), dict(os.environ if environ is None else environ), overrides
    )
    src = data.get("source")
    if base_dir is not None and isinstance(src, dict):
        _resolve_source_paths(src, base_dir)
    if base_dir is not None:
        editors = data.get("editors")
        listed = editors if isinstance(editors, list) else []
        for backend in [*listed, data.get("expert"), data.get("scorer"), data.get("thinker")]:
            _resolve_model_path(backend, base_dir)
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, origin, overrides)) from None


def load_config(path: str | Path, *, environ=None) -> BuildConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; start from configs/demo.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    return parse_config(data, base_dir=path.parent.resolve(), origin=str(path), environ=environ)
