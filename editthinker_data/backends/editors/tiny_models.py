"""Tiny random diffusers editors, built from configs and saved like downloaded checkpoints.

The real loading and denoising code runs, on CPU, in well under a second per edit, with
no network and no weights: tokenizers are built in memory from a byte alphabet. The images
are noise-like, which is all the pipeline's plumbing needs. `sd` size builds an
InstructPix2Pix with Stable Diffusion 1.5's shapes (random weights) for GPU benchmarks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _byte_alphabet() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def byte_clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in _byte_alphabet():
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def byte_t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(chr(c), -2.0) for c in range(33, 127)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def byte_qwen_tokenizer():
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(_byte_alphabet())}
    for s in QWEN_SPECIALS:
        vocab[s] = len(vocab)
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    return tok


def _clip_text_encoder(vocab_size: int, hidden: int = 32, layers: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=4,
            num_hidden_layers=layers, projection_dim=hidden, max_position_embeddings=77,
            bos_token_id=0, eos_token_id=1, pad_token_id=1,
        )
    )  # fmt: skip


def save_flux_kontext(path: Path) -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    clip_tok, t5_tok = byte_clip_tokenizer(), byte_t5_tokenizer()
    pipe = FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=AutoencoderKL(
            sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
            latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
            shift_factor=0.0609, scaling_factor=1.5035,
        ),
        text_encoder=_clip_text_encoder(len(clip_tok)),
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
    pipe.save_pretrained(path)
    return path


def save_qwen_image_edit(path: Path, plus: bool = False) -> Path:
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from editthinker_data.backends.qwen_vl import images_only_processor

    torch.manual_seed(0)
    tok = byte_qwen_tokenizer()
    ids = {s: tok.convert_tokens_to_ids(s) for s in QWEN_SPECIALS}
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, rope_theta=1e6, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
            rope_scaling={"type": "default", "rope_type": "default", "mrope_section": [1, 1, 2]},
        ),
        vision_config=dict(
            depth=2, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=16, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], hidden_size=16,
    )  # fmt: skip
    z = 4
    cls = QwenImageEditPlusPipeline if plus else QwenImageEditPipeline
    pipe = cls(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=AutoencoderKLQwenImage(
            base_dim=z * 6, z_dim=z, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
            latents_mean=[0.0] * z, latents_std=[1.0] * z,
        ),
        text_encoder=Qwen2_5_VLForConditionalGeneration(config),
        tokenizer=tok,
        processor=images_only_processor("qwen2_vl", tok, Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=64 * 64)),
        transformer=QwenImageTransformer2DModel(
            patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=3,
            joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
        ),
    )  # fmt: skip
    pipe.save_pretrained(path)
    # The processor was saved from our images-only subclass; record the public class, as a
    # downloaded checkpoint does (the editor builds its own processor when loading).
    index_file = path / "model_index.json"
    index = json.loads(index_file.read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True))
    return path


def save_instruct_pix2pix(path: Path, size: str = "tiny") -> Path:
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        UNet2DConditionModel,
    )

    if size not in ("tiny", "sd"):
        raise ValueError(f"size={size!r}; use tiny or sd")
    torch.manual_seed(0)
    tok = byte_clip_tokenizer()
    if size == "tiny":
        unet = UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=8, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
        )  # fmt: skip
        vae = AutoencoderKL(
            block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32,
        )  # fmt: skip
        text_encoder = _clip_text_encoder(len(tok))
    else:  # Stable Diffusion 1.5 shapes, random weights (about 1B parameters)
        unet = UNet2DConditionModel(in_channels=8, out_channels=4, cross_attention_dim=768, sample_size=64)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), latent_channels=4, sample_size=512,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2,
        )  # fmt: skip
        text_encoder = _clip_text_encoder(len(tok), hidden=768, layers=12)
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
        pipe = pipe.to(torch.float16)
    pipe.save_pretrained(path)
    return path


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "flux-kontext": save_flux_kontext,
    "qwen-image-edit": save_qwen_image_edit,
    "qwen-image-edit-plus": lambda p: save_qwen_image_edit(p, plus=True),
    "instruct-pix2pix": save_instruct_pix2pix,
}


def save_tiny_editors(root: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Build and save the tiny pipelines under `root/<name>` (skipping ones already there)."""
    out = {}
    for name in names or list(BUILDERS):
        if name not in BUILDERS:
            raise ValueError(f"unknown tiny editor {name!r}; choose from {', '.join(BUILDERS)}")
        path = Path(root) / name
        if not (path / "model_index.json").is_file():
            BUILDERS[name](path)
        out[name] = path
    return out
