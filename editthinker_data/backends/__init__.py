"""The three roles of the loop (editor, expert, scorer) as small protocols, and the one
place that turns a config's `kind` into a backend class.

Every backend takes a batch of requests and returns one result per request, in order; a
request that failed on its own comes back as a `BackendError` value so that the rest of
the batch is not lost. Backends load models in `setup()`, called once per actor, never at
import time, so the core imports fast and model libraries stay optional.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from editthinker_data.config import BackendSpec, ConfigError
from editthinker_data.core.schema import Refinement, Role, Scores


class BackendError(RuntimeError):
    """One request failed; the message says why (it ends up in stats and the record)."""


class TransientBackendError(BackendError):
    """The backend could not answer (unreachable, timing out, failing after its retries): the
    request's outcome is unknown, not final, so its trajectory is retried by a rerun."""


class UnusableAnswer(BackendError):
    """The model answered, but not in a form the parser accepts (after its re-asks): final,
    since a rerun replays the same cached answers."""


class BackendFatal(RuntimeError):
    """The backend's process can no longer serve (a CUDA error poisons the context): its
    actor exits, the scheduler replaces it and retries the requests elsewhere."""


@dataclass(frozen=True)
class EditRequest:
    image: Image.Image
    instruction: str
    seed: int
    source_sha256: str = ""  # the source image's hash: with the rest, the edit store's key


@dataclass(frozen=True)
class RefineRequest:
    source: Image.Image
    edited: Image.Image
    original_instruction: str
    previous_instruction: str


@dataclass(frozen=True)
class ScoreRequest:
    source: Image.Image
    edited: Image.Image
    instruction: str


@dataclass(frozen=True)
class BackendContext:
    """What a backend may need from the build beyond its own spec, small and picklable so
    it travels to every actor: where the output lives and where model answers are cached
    (`run.llm_cache`). Backends whose constructor takes no `context` never see it."""

    output_url: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    llm_cache: str = "output"
    local_cache_dir: str | None = None


@runtime_checkable
class Backend(Protocol):
    name: str

    def setup(self) -> None: ...

    def run_batch(self, requests: list[Any]) -> list[Any]: ...


class Editor(Backend, Protocol):
    def run_batch(self, requests: list[EditRequest]) -> list[Image.Image | BackendError]: ...


class Expert(Backend, Protocol):
    def run_batch(self, requests: list[RefineRequest]) -> list[Refinement | BackendError]: ...


class Scorer(Backend, Protocol):
    def run_batch(self, requests: list[ScoreRequest]) -> list[Scores | BackendError]: ...


# kind -> "module:Class", per role. New families add one file and one line here.
REGISTRY: dict[str, dict[str, str]] = {
    Role.EDITOR: {
        "procedural": "editthinker_data.backends.editors.procedural:ProceduralEditor",
        "flux_kontext": "editthinker_data.backends.editors.flux_kontext:FluxKontextEditor",
        "qwen_image_edit": "editthinker_data.backends.editors.qwen_image_edit:QwenImageEditEditor",
        "qwen_image_edit_plus": "editthinker_data.backends.editors.qwen_image_edit:QwenImageEditPlusEditor",
        "instruct_pix2pix": "editthinker_data.backends.editors.instruct_pix2pix:InstructPix2PixEditor",
        "diffusers": "editthinker_data.backends.editors.generic_diffusers:GenericDiffusersEditor",
        "http": "editthinker_data.backends.editors.http_service:HTTPEditor",
        "simulated": "editthinker_data.backends.editors.simulated:SimulatedEditor",
    },
    Role.EXPERT: {
        "procedural": "editthinker_data.backends.experts.procedural:ProceduralExpert",
        "openai": "editthinker_data.backends.experts.openai_compat:OpenAIExpert",
        "transformers": "editthinker_data.backends.experts.transformers_vlm:TransformersExpert",
    },
    Role.SCORER: {
        "procedural": "editthinker_data.backends.scoring.procedural:ProceduralScorer",
        "openai": "editthinker_data.backends.experts.openai_compat:OpenAIScorer",
        "transformers": "editthinker_data.backends.experts.transformers_vlm:TransformersScorer",
    },
    # A thinker answers a RefineRequest with (Refinement, Scores of the edit it saw).
    Role.THINKER: {
        "procedural": "editthinker_data.backends.experts.procedural:ProceduralThinker",
        "openai": "editthinker_data.backends.experts.openai_compat:OpenAIThinker",
        "transformers": "editthinker_data.backends.experts.transformers_vlm:TransformersThinker",
    },
}


def check_kind(role: str, spec: BackendSpec) -> str:
    kinds = REGISTRY[role]
    if spec.kind not in kinds:
        raise ConfigError(
            f"{role} {spec.name!r}: unknown kind {spec.kind!r}; available kinds: {', '.join(sorted(kinds))}"
        )
    return kinds[spec.kind]


def prompt_templates(specs) -> dict[str, str]:
    """Role -> prompt template version of the model backends ("procedural" for the
    procedural ones), recorded in every sample so data made with different prompts can be
    told apart. A backend that asks with more than one prompt (the VIEScore scorer) names
    them all through its `template_version(params)`."""
    out = {}
    for role, spec in specs:
        if role == Role.EDITOR:
            continue
        module_name, _, cls_name = check_kind(role, spec).partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        if hasattr(cls, "template_version"):
            out[role] = cls.template_version(spec.params)
            continue
        out[role] = spec.params.get("template") or getattr(cls, "default_template", "") or spec.kind
    return out


# Spec fields passed to the constructor when set (remote model services).
REMOTE_FIELDS = (
    "api_key_env",
    "base_url",
    "model",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_s",
    "temperature",
    "max_tokens",
)
# Limits that hold for the whole cluster: each of a role's actors gets its share.
SHARED_LIMITS = ("requests_per_minute", "tokens_per_minute")
SHARED_CAPS = ("max_concurrency",)  # whole requests, rounded down; each actor gets at least one


def _takes(cls: type, name: str) -> bool:
    """Whether `cls(...)` accepts `name`, also through a subclass's `**kwargs` passed on to a
    base (the scorers wrap their base's __init__): the signature of `cls` alone hides it."""
    return any(
        name in inspect.signature(vars(klass)["__init__"]).parameters
        for klass in cls.__mro__
        if "__init__" in vars(klass) and klass is not object
    )


def create_backend(
    role: str, spec: BackendSpec, seed: int = 0, context: BackendContext | None = None
) -> Backend:
    """Instantiate (without setup) the backend a spec names; bad params fail here, before
    any actor starts. Rate limits and the concurrency cap are divided by num_actors, so the
    actors together keep to what the config sets for the endpoint."""
    module_name, _, cls_name = check_kind(role, spec).partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    kwargs = dict(spec.params)
    kwargs.update({k: getattr(spec, k) for k in REMOTE_FIELDS if getattr(spec, k) is not None})
    for k in SHARED_LIMITS:
        if k in kwargs:
            kwargs[k] = kwargs[k] / spec.num_actors
    for k in SHARED_CAPS:
        if k in kwargs:
            kwargs[k] = max(1, kwargs[k] // spec.num_actors)
    if context is not None and _takes(cls, "context"):
        kwargs["context"] = context
    try:
        return cls(name=spec.name, seed=seed, **kwargs)
    except TypeError as err:
        raise ConfigError(f"{role} {spec.name!r} ({spec.kind}): bad params {spec.params}: {err}") from None
