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
import json
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

    @classmethod
    def tiny_params(cls, pixels: int) -> dict[str, Any]:
        # diffusers encodes the source at 1024^2: far too big for a tiny model on CPU
        return {"condition_pixels": pixels}

    @classmethod
    def save_tiny(cls, path: Path) -> Path:
        import diffusers
        import torch
        from diffusers import (
            AutoencoderKLQwenImage,
            FlowMatchEulerDiscreteScheduler,
            QwenImageTransformer2DModel,
        )
        from transformers import (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2VLImageProcessorPil,
        )

        from editthinker_data.backends.editors.tiny_models import QWEN_SPECIALS, byte_qwen_tokenizer

        torch.manual_seed(0)
        tok = byte_qwen_tokenizer()
        ids = {s: tok.convert_tokens_to_ids(s) for s in QWEN_SPECIALS}
        # hidden_size at the top too, where transformers' dataclass signature has no field for it
        config = Qwen2_5_VLConfig(  # type: ignore[call-arg]
            text_config=dict(
                vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, rope_theta=1e6, bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"],
                rope_scaling={"type": "default", "rope_type": "default", "mrope_section": [1, 1, 2]},
            ),
            vision_config=dict(
                depth=2, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2,
            ),
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
            hidden_size=16,
        )  # fmt: skip
        z = 4
        pipe = getattr(diffusers, cls.pipeline_class)(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=AutoencoderKLQwenImage(
                base_dim=z * 6, z_dim=z, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
                latents_mean=[0.0] * z, latents_std=[1.0] * z,
            ),
            text_encoder=Qwen2_5_VLForConditionalGeneration(config),
            tokenizer=tok,
            processor=images_only_processor(
                "qwen2_vl", tok, Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=64 * 64)
            ),
            transformer=QwenImageTransformer2DModel(
                patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
                num_attention_heads=3, joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
            ),
        )  # fmt: skip
        pipe.save_pretrained(path)
        # The processor was saved from our images-only subclass; record the public class, as a
        # downloaded checkpoint does (the editor builds its own processor when loading).
        index_file = Path(path) / "model_index.json"
        index = json.loads(index_file.read_text())
        index["processor"] = ["transformers", "Qwen2VLProcessor"]
        index_file.write_text(json.dumps(index, indent=2, sort_keys=True))
        return path

    def load_overrides(self, path: str) -> dict[str, Any]:
        from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

        root = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
        processor_dir = root / "processor"
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(processor_dir)
        return {"processor": images_only_processor("qwen2_vl", tokenizer, image_processor)}

    @contextlib.contextmanager
    def _areas(self):
        mod: Any = importlib.import_module(self.module)  # its calculate_dimensions is swapped below
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

    @classmethod
    def tiny_params(cls, pixels: int) -> dict[str, Any]:
        return {**super().tiny_params(pixels), "vl_pixels": 56 * 56}  # the smallest its processor takes

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
