"""What every diffusers editor family shares: finding weights offline, loading once per
actor, the resolution policy, per-request seeded generators, batching, and turning GPU
failures into per-request errors (OOM) or an actor replacement (a broken CUDA context).

A family file only names its pipeline class, its defaults (the paper's released settings),
any call arguments of its own, and how to build a tiny random pipeline of itself
(`save_tiny`): the tests, the tiny-diffusers build and the benchmark find every family
through the registry and run its real code on CPU with that, so no other list names it. torch and diffusers are imported in `setup()`, so the
core imports fast and the model libraries stay an optional extra.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from pathlib import Path
from typing import Any

from PIL import Image

from editthinker_data.backends import BackendError, BackendFatal, EditRequest

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "float16", "bfloat16")
RESIZE_MODES = ("area", "max_pixels", "source")
OFFLOAD = ("none", "model", "sequential")


def plan_size(width: int, height: int, *, pixels: int, multiple_of: int, mode: str) -> tuple[int, int]:
    """The model's working size for a source image: keep the aspect ratio, scale to about
    `pixels` ("area", what Kontext and Qwen do) or only down to it ("max_pixels"), or keep
    the source size ("source"); then round down to the model's multiple."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize={mode!r}; use one of {', '.join(RESIZE_MODES)}")
    scale = math.sqrt(pixels / (width * height))
    if mode == "max_pixels":
        scale = min(1.0, scale)
    elif mode == "source":
        scale = 1.0
    w = max(multiple_of, int(width * scale) // multiple_of * multiple_of)
    h = max(multiple_of, int(height * scale) // multiple_of * multiple_of)
    return w, h


def resolve_model(model: str, *, cache_dir: str | None, revision: str | None, download: bool) -> str:
    """A local folder, or a Hugging Face repo id found in the local cache. Never reaches the
    network unless `download` is set, so a missing model fails at start, in seconds."""
    if not model:
        raise ValueError("no model: set model to a local folder or a Hugging Face repo id")
    path = Path(model).expanduser()
    looks_local = model.startswith((".", "/", "~")) or path.exists()
    if looks_local:
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"model folder {path} holds no model_index.json; point model at a diffusers "
                f"pipeline folder (one saved with save_pretrained or downloaded from the Hub)"
            )
        return str(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(model, cache_dir=cache_dir, revision=revision, local_files_only=not download)
    except LocalEntryNotFoundError:
        where = (
            cache_dir or os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
        )
        raise FileNotFoundError(
            f"model {model!r} is not in the local Hugging Face cache ({where}) and downloads are off; "
            f"fetch it first (`hf download {model}` on a machine with network, then copy the cache), "
            f"point model at a local folder, or set params.download: true"
        ) from None


class DiffusersEditor:
    """Base of the diffusers families. Subclasses set `pipeline_class` and `defaults`."""

    pipeline_class = ""
    defaults: dict[str, Any] = {}
    batchable = True  # False where a list of images means "several references for one edit"

    def __init__(
        self,
        name: str = "diffusers",
        seed: int = 0,
        model: str = "",
        dtype: str = "auto",
        device: str = "auto",
        steps: int | None = None,
        guidance_scale: float | None = None,
        true_cfg_scale: float | None = None,
        negative_prompt: str | None = None,
        pixels: int | None = None,
        resize: str | None = None,
        multiple_of: int | None = None,
        output_size: str = "source",
        offload: str = "none",
        attention_slicing: bool = False,
        vae_tiling: bool = False,
        cache_dir: str | None = None,
        revision: str | None = None,
        variant: str | None = None,
        download: bool = False,
        max_sequence_length: int | None = None,
        call_kwargs: dict[str, Any] | None = None,
        **family: Any,
    ):
        self.name = name
        self.model = model
        given = {
            "steps": steps,
            "guidance_scale": guidance_scale,
            "true_cfg_scale": true_cfg_scale,
            "negative_prompt": negative_prompt,
            "pixels": pixels,
            "resize": resize,
            "multiple_of": multiple_of,
            "max_sequence_length": max_sequence_length,
            **family,
        }
        unknown = sorted(k for k in family if k not in self.defaults)
        if unknown:
            raise TypeError(f"unexpected params {unknown} for {type(self).__name__}")
        self.settings = {**self.defaults, **{k: v for k, v in given.items() if v is not None}}
        self.settings.setdefault("pixels", 1024 * 1024)
        self.settings.setdefault("resize", "area")
        self.settings.setdefault("multiple_of", 16)
        self.settings.setdefault("steps", 28)
        for key, allowed in (("dtype", DTYPES), ("offload", OFFLOAD), ("output_size", ("source", "model"))):
            value = {"dtype": dtype, "offload": offload, "output_size": output_size}[key]
            if value not in allowed:
                raise ValueError(f"{key}={value!r}; use one of {', '.join(allowed)}")
        if self.settings["resize"] not in RESIZE_MODES:
            raise ValueError(f"resize={self.settings['resize']!r}; use one of {', '.join(RESIZE_MODES)}")
        if int(self.settings["steps"]) < 1:
            raise ValueError(f"steps={self.settings['steps']} must be at least 1")
        if (
            int(self.settings["multiple_of"]) < 1
            or int(self.settings["pixels"]) < int(self.settings["multiple_of"]) ** 2
        ):
            raise ValueError(
                f"pixels={self.settings['pixels']} must hold at least one multiple_of^2 "
                f"({self.settings['multiple_of']}^2) block"
            )
        if not model:
            raise ValueError("no model: set model to a local folder or a Hugging Face repo id")
        self.dtype_name, self.device_name, self.offload = dtype, device, offload
        self.output_size = output_size
        self.attention_slicing, self.vae_tiling = attention_slicing, vae_tiling
        self.cache_dir, self.revision, self.variant, self.download = cache_dir, revision, variant, download
        self.call_kwargs = dict(call_kwargs or {})
        self.pipe: Any = None  # a diffusers pipeline of the class `pipeline_class` names, set in setup()
        self.counters = {"loads": 0, "edits": 0, "batches": 0, "oom_splits": 0, "failures": 0}

    # ------------------------------------------------------------------ tiny pipeline

    @classmethod
    def save_tiny(cls, path: Path) -> Path:
        """Save a tiny random pipeline of this family at `path`, like a downloaded checkpoint
        (see `tiny_models`); every family registered with a `pipeline_class` needs one."""
        raise NotImplementedError(
            f"{cls.__name__} has no tiny pipeline: define a save_tiny(path) classmethod in its file "
            f"(backends/editors/flux_kontext.py is an example)"
        )

    @classmethod
    def tiny_params(cls, pixels: int) -> dict[str, Any]:
        """Params of the family's own that a tiny CPU run at `pixels` needs, beyond steps and pixels."""
        return {}

    # ------------------------------------------------------------------ loading

    def preflight(self) -> None:
        """Where the actors run on this machine: a missing model fails before Ray starts."""
        resolve_model(self.model, cache_dir=self.cache_dir, revision=self.revision, download=False)

    def load_overrides(self, path: str) -> dict[str, Any]:
        """Components a family builds itself instead of letting diffusers load them."""
        return {}

    def setup(self) -> None:
        import diffusers
        import torch

        self.torch = torch
        path = resolve_model(
            self.model, cache_dir=self.cache_dir, revision=self.revision, download=self.download
        )
        device = self.device_name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype_name = self.dtype_name
        if dtype_name == "auto":
            dtype_name = "bfloat16" if device.startswith("cuda") else "float32"
        cls = getattr(diffusers, self.pipeline_class, None)
        if cls is None:
            raise ValueError(
                f"diffusers {diffusers.__version__} has no {self.pipeline_class}; upgrade diffusers"
            )
        kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype_name)}
        if self.variant:
            kwargs["variant"] = self.variant
        pipe = cls.from_pretrained(path, **kwargs, **self.load_overrides(path))
        if self.offload == "model":
            pipe.enable_model_cpu_offload()
        elif self.offload == "sequential":
            pipe.enable_sequential_cpu_offload()
        else:
            pipe = pipe.to(device)
        if self.attention_slicing:
            pipe.enable_attention_slicing()
        if self.vae_tiling and hasattr(pipe, "vae") and hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.device = device
        self.accepts = set(inspect.signature(pipe.__call__).parameters)
        unknown = sorted(set(self.call_kwargs) - self.accepts)
        if unknown:
            raise ValueError(f"call_kwargs {unknown} are not arguments of {self.pipeline_class}.__call__")
        self.counters["loads"] += 1
        log.info(
            "editor %s: %s loaded from %s on %s (%s)",
            self.name,
            self.pipeline_class,
            path,
            device,
            dtype_name,
        )

    def stats(self) -> dict[str, int]:
        return dict(self.counters)

    # ------------------------------------------------------------------ editing

    def working_size(self, image: Image.Image) -> tuple[int, int]:
        s = self.settings
        return plan_size(
            *image.size, pixels=int(s["pixels"]), multiple_of=int(s["multiple_of"]), mode=s["resize"]
        )

    def family_kwargs(self, size: tuple[int, int]) -> dict[str, Any]:
        """Call arguments of the family; the base passes the common ones it knows."""
        return {}

    def _call_kwargs(self, size: tuple[int, int], n: int) -> dict[str, Any]:
        s = self.settings
        common = {
            "num_inference_steps": int(s["steps"]),
            "guidance_scale": s.get("guidance_scale"),
            "true_cfg_scale": s.get("true_cfg_scale"),
            "max_sequence_length": s.get("max_sequence_length"),
            "height": size[1],
            "width": size[0],
            "output_type": "pil",
        }
        if s.get("negative_prompt") is not None:
            common["negative_prompt"] = [s["negative_prompt"]] * n if self.batchable else s["negative_prompt"]
        common.update(self.family_kwargs(size))
        common.update(self.call_kwargs)
        return {k: v for k, v in common.items() if v is not None and k in self.accepts}

    def _generate(self, requests: list[EditRequest], size: tuple[int, int]) -> list[Image.Image]:
        torch = self.torch
        gen_device = "cpu" if self.offload != "none" else self.device
        generators = [torch.Generator(device=gen_device).manual_seed(int(r.seed)) for r in requests]
        images = [r.image.convert("RGB").resize(size, Image.Resampling.LANCZOS) for r in requests]
        kwargs = self._call_kwargs(size, len(requests))
        with torch.inference_mode():
            if self.batchable:
                out = self.pipe(
                    image=images, prompt=[r.instruction for r in requests], generator=generators, **kwargs
                ).images
            else:
                out = [
                    self.pipe(image=[img], prompt=r.instruction, generator=g, **kwargs).images[0]
                    for img, r, g in zip(images, requests, generators, strict=True)
                ]
        if len(out) != len(requests):
            raise RuntimeError(
                f"{self.pipeline_class} returned {len(out)} images for {len(requests)} requests"
            )
        return out

    def _finish(self, image: Image.Image, source: Image.Image) -> Image.Image:
        image = image.convert("RGB")
        if self.output_size == "source" and image.size != source.size:
            image = image.resize(source.size, Image.Resampling.LANCZOS)
        return image

    def _is_oom(self, err: BaseException) -> bool:
        return (
            isinstance(err, getattr(self.torch, "OutOfMemoryError", ()))
            or "out of memory" in str(err).lower()
        )

    def _run_group(
        self, requests: list[EditRequest], size: tuple[int, int]
    ) -> list[Image.Image | BackendError]:
        try:
            return [
                self._finish(img, r.image)
                for img, r in zip(self._generate(requests, size), requests, strict=True)
            ]
        except BackendFatal:
            raise
        except Exception as err:
            if "CUDA error" in str(err) or "device-side assert" in str(err):
                raise BackendFatal(f"{type(err).__name__}: {err}") from err
            oom = self._is_oom(err)
            if oom and self.device.startswith("cuda"):
                self.torch.cuda.empty_cache()
            if len(requests) > 1:  # one bad request, or a batch too big: retry one by one
                self.counters["oom_splits"] += int(oom)
                out: list[Image.Image | BackendError] = []
                for r in requests:
                    out.extend(self._run_group([r], size))
                return out
            self.counters["failures"] += 1
            if oom:
                return [
                    BackendError(
                        f"out of memory at {size[0]}x{size[1]}; lower params.pixels or batch_size, "
                        f"or set params.offload: model"
                    )
                ]
            return [BackendError(f"{self.pipeline_class} failed: {type(err).__name__}: {err}")]

    def run_batch(self, requests: list[EditRequest]) -> list[Image.Image | BackendError]:
        if self.pipe is None:
            raise RuntimeError(f"editor {self.name!r}: setup() was not called")
        # Requests of one working size run together; results go back in request order.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(self.working_size(r.image), []).append(i)
        results: dict[int, Image.Image | BackendError] = {}
        for size, idx in groups.items():
            results.update(zip(idx, self._run_group([requests[i] for i in idx], size), strict=True))
        out = [results[i] for i in range(len(requests))]
        self.counters["batches"] += 1
        self.counters["edits"] += sum(1 for o in out if isinstance(o, Image.Image))
        return out
