"""Tiny random Qwen2.5-VL and Qwen3-VL(-MoE), built from a config with a byte-alphabet tokenizer and saved
to a folder like a downloaded checkpoint: the real loading and generation code runs, no
network, no weights. Its answers are gibberish."""

from __future__ import annotations

from pathlib import Path


def _byte_tokenizer():
    """The tiny Qwen editors' byte-alphabet tokenizer, and the ids of its special tokens."""
    from editthinker_data.backends.editors.tiny_models import QWEN_SPECIALS, byte_qwen_tokenizer

    tok = byte_qwen_tokenizer()
    return tok, {s: tok.convert_tokens_to_ids(s) for s in QWEN_SPECIALS}


def _save(model, tok, ids, path: Path, image_processor) -> None:
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    image_processor.save_pretrained(path)


def save_tiny_qwen25_vl(path: Path) -> Path:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    tok, ids = _byte_tokenizer()
    cfg = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"], rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
        ),
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1], in_channels=3,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    _save(model, tok, ids, path, Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=64 * 64))
    return path


def save_tiny_qwen3_vl(path: Path, moe: bool = False) -> Path:
    """A tiny random Qwen3-VL (or Qwen3-VL-MoE): 16 px patches, deepstack, interleaved mrope."""
    import torch
    from transformers import Qwen2VLImageProcessorPil

    tok, ids = _byte_tokenizer()
    text = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        rope_parameters={"rope_type": "default", "rope_theta": 5e5, "mrope_section": [2, 3, 3], "mrope_interleaved": True},
    )  # fmt: skip
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
        spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0],
    )  # fmt: skip
    tokens = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    if moe:
        from transformers import Qwen3VLMoeConfig as Config
        from transformers import Qwen3VLMoeForConditionalGeneration as Model

        text.update(moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, decoder_sparse_step=1)
    else:
        from transformers import Qwen3VLConfig as Config
        from transformers import Qwen3VLForConditionalGeneration as Model
    torch.manual_seed(0)
    model = Model(Config(text_config=text, vision_config=vision, **tokens)).eval()
    _save(
        model,
        tok,
        ids,
        path,
        Qwen2VLImageProcessorPil(patch_size=16, min_pixels=32 * 32 * 4, max_pixels=64 * 64),
    )
    return path
