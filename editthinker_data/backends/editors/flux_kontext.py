"""FLUX.1 Kontext [dev] (diffusers `FluxKontextPipeline`), one of the paper's three editors.

Defaults are the released settings: 28 steps, guidance 2.5, about 1024^2 pixels. The
resolution policy is ours (`pixels`, `resize`, `multiple_of`), so Kontext's own snapping to
its preferred resolutions is turned off: the working size is what the config says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from editthinker_data.backends.editors.diffusers_base import DiffusersEditor


class FluxKontextEditor(DiffusersEditor):
    pipeline_class = "FluxKontextPipeline"
    defaults = {
        "steps": 28,
        "guidance_scale": 2.5,
        "pixels": 1024 * 1024,
        "resize": "area",
        "multiple_of": 16,
    }

    def family_kwargs(self, size: tuple[int, int]) -> dict[str, Any]:
        return {"max_area": size[0] * size[1], "_auto_resize": False}

    @classmethod
    def save_tiny(cls, path: Path) -> Path:
        import torch
        from diffusers import (
            AutoencoderKL,
            FlowMatchEulerDiscreteScheduler,
            FluxKontextPipeline,
            FluxTransformer2DModel,
        )
        from transformers import T5Config, T5EncoderModel

        from editthinker_data.backends.editors.tiny_models import (
            byte_clip_tokenizer,
            byte_t5_tokenizer,
            clip_text_encoder,
        )

        torch.manual_seed(0)
        clip_tok, t5_tok = byte_clip_tokenizer(), byte_t5_tokenizer()
        pipe = FluxKontextPipeline(
            scheduler=FlowMatchEulerDiscreteScheduler(),
            vae=AutoencoderKL(
                sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                shift_factor=0.0609, scaling_factor=1.5035,
            ),
            text_encoder=clip_text_encoder(len(clip_tok)),
            tokenizer=clip_tok,
            text_encoder_2=T5EncoderModel(
                T5Config(vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                         relative_attention_num_buckets=8)
            ),
            tokenizer_2=t5_tok,
            transformer=FluxTransformer2DModel(
                patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
                num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
            ),
        )  # fmt: skip
        pipe.save_pretrained(path)  # type: ignore[attr-defined]  # mypy reads diffusers' dummy class, not the pipeline
        return path
