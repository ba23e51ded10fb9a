"""InstructPix2Pix (diffusers `StableDiffusionInstructPix2PixPipeline`): a small, fast
baseline editor, and the model of the GPU benchmark (SD-sized, random weights).

Its output follows the input size, so the working size is set by resizing the input;
`image_guidance_scale` weighs how close the edit stays to the source. Its tiny pipeline also
comes in `sd` size: Stable Diffusion 1.5's shapes, random weights, for GPU benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from editthinker_data.backends.editors.diffusers_base import DiffusersEditor


class InstructPix2PixEditor(DiffusersEditor):
    pipeline_class = "StableDiffusionInstructPix2PixPipeline"
    defaults = {
        "steps": 20,
        "guidance_scale": 7.5,
        "image_guidance_scale": 1.5,
        "pixels": 512 * 512,
        "resize": "max_pixels",
        "multiple_of": 8,
    }

    def family_kwargs(self, size: tuple[int, int]) -> dict[str, Any]:
        return {"image_guidance_scale": float(self.settings["image_guidance_scale"])}

    @classmethod
    def save_tiny(cls, path: Path, size: str = "tiny") -> Path:
        import torch
        from diffusers import (
            AutoencoderKL,
            EulerAncestralDiscreteScheduler,
            StableDiffusionInstructPix2PixPipeline,
            UNet2DConditionModel,
        )

        from editthinker_data.backends.editors.tiny_models import byte_clip_tokenizer, clip_text_encoder

        if size not in ("tiny", "sd"):
            raise ValueError(f"size={size!r}; use tiny or sd")
        torch.manual_seed(0)
        tok = byte_clip_tokenizer()
        if size == "tiny":
            unet = UNet2DConditionModel(
                block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
            )  # fmt: skip
            vae = AutoencoderKL(
                block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                sample_size=32,
            )  # fmt: skip
            text_encoder = clip_text_encoder(len(tok))
        else:  # Stable Diffusion 1.5 shapes, random weights (about 1B parameters)
            unet = UNet2DConditionModel(
                in_channels=8, out_channels=4, cross_attention_dim=768, sample_size=64
            )
            vae = AutoencoderKL(
                block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                layers_per_block=2,
            )  # fmt: skip
            text_encoder = clip_text_encoder(len(tok), hidden=768, layers=12)
        pipe = StableDiffusionInstructPix2PixPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tok,
            unet=unet,
            scheduler=EulerAncestralDiscreteScheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        if size == "sd":
            pipe = pipe.to(torch.float16)  # type: ignore[attr-defined]  # mypy reads diffusers' dummy class, not the pipeline
        pipe.save_pretrained(path)  # type: ignore[attr-defined]  # mypy reads diffusers' dummy class, not the pipeline
        return path
