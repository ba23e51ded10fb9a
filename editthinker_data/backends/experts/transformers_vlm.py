"""Local VLMs through transformers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3-VL-MoE families)
as expert, scorer or thinker, loaded once per Ray actor from a local path or a Hugging Face
cache folder. The family is the checkpoint's `model_type` (config.json), or the
`model_type` param when given; it picks the model class (transformers' auto mapping) and
the processor (image patching and placeholder tokens differ between families).

torch and transformers are imported in `setup()` only. Without network a missing model
fails there, at actor start, with the path it looked for. Prompts are the same versioned
templates as the remote backends; answers go through the same strict parsers, and an
unusable answer is sampled again (greedy first, then seeded sampling) a bounded number of
times before the request fails with the parser's reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editthinker_data.backends import BackendError, RefineRequest, ScoreRequest, UnusableAnswer
from editthinker_data.backends.experts.parsing import ParseError
from editthinker_data.backends.experts.prompting import (
    ExpertRole,
    ThinkerRole,
    expert_job,
    load_template,
    new_counters,
    thinker_job,
)
from editthinker_data.backends.qwen_vl import FAMILIES, images_only_processor
from editthinker_data.backends.scoring.protocols import ProtocolScorer, combine_answers

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"


def model_family(path: Path, model_type: str = "auto") -> str:
    """The checkpoint's family; an unsupported one fails with the list of those supported."""
    if model_type == "auto":
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
    if model_type not in FAMILIES:
        raise ValueError(
            f"model_type {model_type!r} is not supported by the transformers backend; use one of "
            f"{', '.join(FAMILIES)} (set params.model_type, or point model_path at such a checkpoint)"
        )
    return model_type


class _LocalVLM:
    role = ""
    default_template = ""

    def __init__(
        self,
        name: str = "vlm",
        seed: int = 0,
        model_path: str = "",
        dtype: str = "auto",
        device: str = "auto",
        max_new_tokens: int = 512,
        parse_retries: int = 2,
        template: str | None = None,
        max_pixels: int = 1024 * 1024,
        model_type: str = "auto",
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float = 0.0,
    ):
        # `model` and `max_tokens` are the spec's fields shared with kind: openai.
        model_path = model_path or model or ""
        if not model_path:
            raise ValueError(
                "model (or params.model_path) is required: a local folder holding the model (config, weights, "
                "tokenizer)"
            )
        self.name = name
        self.seed = seed
        self.model_path = model_path
        self.dtype = dtype
        self.device = device
        self.max_new_tokens = max_tokens or max_new_tokens
        self.temperature = temperature
        self.parse_retries = parse_retries
        self._load_prompts(template)
        self.max_pixels = max_pixels
        if model_type != "auto" and model_type not in FAMILIES:
            raise ValueError(
                f"model_type {model_type!r} is not supported; use auto or one of {', '.join(FAMILIES)}"
            )
        self.model_type = model_type
        self.counters = new_counters()

    def _load_prompts(self, template: str | None) -> None:
        self.template_name = template or self.default_template
        self.template = load_template(self.template_name)

    def preflight(self) -> str:
        """Checks the checkpoint before any actor starts (no torch): it exists and its family
        is supported. Returns the family."""
        path = Path(self.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.role} {self.name!r}: no model at {path} (config.json missing); this build has no network, "
                f"so point model_path at a local copy or a Hugging Face cache snapshot folder"
            )
        return model_family(path, self.model_type)

    def setup(self) -> None:
        family = self.preflight()
        path = Path(self.model_path).expanduser()
        import torch
        from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil

        self.torch = torch
        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = {"auto": "auto", "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
            self.dtype
        ]
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
        # typeshed's functools.wraps hides the bound self of transformers' wrapped `to`
        self.model = model.to(device).eval()  # type: ignore[arg-type]
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, max_pixels=self.max_pixels)
        self.processor = images_only_processor(family, tokenizer, image_processor)
        self.family = family
        self.tokenizer = tokenizer
        self.device_name = device

    def stats(self) -> dict[str, float]:
        return dict(self.counters)

    def _generate(self, text: str, images: list, attempt: int) -> str:
        torch = self.torch
        prompt = f"<|im_start|>user\n{IMAGE * len(images)}{text}<|im_end|>\n<|im_start|>assistant\n"
        inputs = self.processor(text=[prompt], images=images, return_tensors="pt").to(self.device_name)
        sampling: dict[str, Any] = {"do_sample": False}
        if attempt or self.temperature:  # a re-ask samples, else it would repeat the same answer
            torch.manual_seed(self.seed + attempt)
            sampling = {
                "do_sample": True,
                "temperature": max(self.temperature, 0.7 if attempt else 0),
                "top_p": 0.95,
            }
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, **sampling)
        new = out[:, inputs["input_ids"].shape[1] :]  # the one prompt's row, its new tokens
        self.counters["requests"] += 1
        self.counters["tokens_in"] += int(inputs["input_ids"].shape[1])
        self.counters["tokens_out"] += int(new.shape[1])
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)[0]

    def _ask(self, text: str, images: list, parse=None):
        parse = parse or self.parse
        last = "no answer"
        for attempt in range(self.parse_retries + 1):
            if attempt:
                self.counters["reasks"] += 1
            try:
                return parse(self._generate(text, images, attempt))
            except ParseError as err:
                last = str(err)
        self.counters["failures"] += 1
        return UnusableAnswer(f"{self.role} answer unusable after {self.parse_retries + 1} tries: {last}")

    def parse(self, answer: str):
        raise NotImplementedError


class TransformersExpert(ExpertRole, _LocalVLM):
    def run_batch(self, requests: list[RefineRequest]) -> list[Any]:
        return [self._ask(*expert_job(self.template, r)) for r in requests]


class TransformersScorer(ProtocolScorer, _LocalVLM):
    """Scores by `params.protocol` (scoring.protocols), `viescore` by default: two
    generations per score, images before the text as in GEdit-Bench's Qwen2.5-VL scorer; the
    quality call is skipped when the semantic one already failed (no GPU time for a lost score)."""

    def run_batch(self, requests: list[ScoreRequest]) -> list[Any]:
        out = []
        for r in requests:
            calls, answers = self.protocol.calls(r), []
            for call in calls:
                answers.append(self._ask(call.text, call.images, call.parse))
                if isinstance(answers[-1], BackendError):
                    break
            out.append(combine_answers(self.protocol, calls[: len(answers)], answers))
        return out


class TransformersThinker(ThinkerRole, _LocalVLM):
    def run_batch(self, requests: list[RefineRequest]) -> list[Any]:
        return [self._ask(*thinker_job(self.template_name, r)) for r in requests]
