"""Qwen-Image-Edit and Qwen-Image-Edit-Plus (diffusers `QwenImageEditPipeline`,
`QwenImageEditPlusPipeline`), one of the paper's three editors.

Defaults are the released settings: 50 steps, true CFG 5 with a blank negative prompt,
about 1024^2 pixels. diffusers fixes the area at which the source is encoded (1024^2, and
384^2 for Plus's vision-language input) inside the pipeline; here both are settings
(`condition_pixels`, `vl_pixels`), applied by swapping the pipeline module's constants for
the duration of a call (one pipeline per actor process, calls under a lock).

The pipeline's processor only ever sees images, so it is built without the video
processor that transformers would otherwise insist on (and that needs torchvision).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from pathlib import Path
from typing import Any

from editthinker_data.backends.editors.diffusers_base import DiffusersEditor
from editthinker_data.backends.qwen_vl import images_only_processor

_DIFFUSERS_AREA = 1024 * 1024
_PATCH_LOCK = threading.Lock()


class QwenImageEditEditor(DiffusersEditor):
    pipeline_class = "QwenImageEditPipeline"
    module = "diffusers.pipelines.qwenimage.pipeline_qwenimage_edit"
    defaults = {
        "steps": 50,
        "true_cfg_scale": 5.0,
        "negative_prompt": " ",
        "pixels": 1024 * 1024,
        "resize": "area",
        "multiple_of": 16,
        "condition_pixels": 1024 * 1024,
    }

    def load_overrides(self, path: str) -> dict[str, Any]:
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        root = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
        processor_dir = root / "processor"
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(processor_dir)
        return {"processor": images_only_processor("qwen2_vl", tokenizer, image_processor)}

    @contextlib.contextmanager
    def _areas(self):
        mod = importlib.import_module(self.module)
        original = mod.calculate_dimensions
        area = int(self.settings["condition_pixels"])

        def calculate_dimensions(target_area, ratio):
            return original(area if target_area == _DIFFUSERS_AREA else target_area, ratio)

        with _PATCH_LOCK:
            mod.calculate_dimensions = calculate_dimensions
            try:
                yield mod
            finally:
                mod.calculate_dimensions = original

    def _generate(self, requests, size):
        with self._areas():
            return super()._generate(requests, size)


class QwenImageEditPlusEditor(QwenImageEditEditor):
    pipeline_class = "QwenImageEditPlusPipeline"
    module = "diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus"
    batchable = False  # a list of images is several references for one edit
    defaults = {**QwenImageEditEditor.defaults, "vl_pixels": 384 * 384}

    @contextlib.contextmanager
    def _areas(self):
        with super()._areas() as mod:
            saved = mod.CONDITION_IMAGE_SIZE, mod.VAE_IMAGE_SIZE
            mod.CONDITION_IMAGE_SIZE = int(self.settings["vl_pixels"])
            mod.VAE_IMAGE_SIZE = int(self.settings["condition_pixels"])
            try:
                yield mod
            finally:
                mod.CONDITION_IMAGE_SIZE, mod.VAE_IMAGE_SIZE = saved
