"""Tiny random diffusers editors, built from configs and saved like downloaded checkpoints.

The real loading and denoising code runs, on CPU, in well under a second per edit, with
no network and no weights: tokenizers are built in memory from a byte alphabet. The images
are noise-like, which is all the pipeline's plumbing needs.

Each family builds its own tiny pipeline (`save_tiny` in its file) from the shared parts
here; the families are found through `backends.REGISTRY`, so the tests, the tiny-diffusers
build, the CLI and the benchmark pick up a new family from its registry line alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from editthinker_data.backends.editors.diffusers_base import DiffusersEditor

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
        unk_token=None,  # type: ignore[arg-type]  # transformers annotates str; None: no unknown token
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=4096,
    )
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    return tok


def clip_text_encoder(vocab_size: int, hidden: int = 32, layers: int = 2):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size, hidden_size=hidden, intermediate_size=hidden * 2, num_attention_heads=4,
            num_hidden_layers=layers, projection_dim=hidden, max_position_embeddings=77,
            bos_token_id=0, eos_token_id=1, pad_token_id=1,
        )
    )  # fmt: skip


def tiny_name(kind: str) -> str:
    """The folder (and `--name`) of a family's tiny pipeline: its kind with dashes."""
    return kind.replace("_", "-")


def tiny_families() -> dict[str, type[DiffusersEditor]]:
    """kind -> class of every registered diffusers family with a pipeline class of its own,
    in registry order. The generic `diffusers` kind names its pipeline per config, so it
    has no tiny pipeline of its own (its tests use InstructPix2Pix's)."""
    from editthinker_data.backends import REGISTRY
    from editthinker_data.backends.editors.diffusers_base import DiffusersEditor

    out: dict[str, type[DiffusersEditor]] = {}
    for kind, target in REGISTRY["editor"].items():
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, DiffusersEditor) and cls.pipeline_class:
            out[kind] = cls
    return out


def tiny_names() -> list[str]:
    return [tiny_name(kind) for kind in tiny_families()]


def save_tiny_editors(root: Path, names: list[str] | None = None) -> dict[str, Path]:
    """Build and save the tiny pipelines under `root/<name>` (skipping ones already there)."""
    families = {tiny_name(kind): cls for kind, cls in tiny_families().items()}
    out = {}
    for name in names or list(families):
        if name not in families:
            raise ValueError(f"unknown tiny editor {name!r}; choose from {', '.join(families)}")
        path = Path(root) / name
        if not (path / "model_index.json").is_file():
            families[name].save_tiny(path)
        out[name] = path
    return out


def tiny_editor_specs(
    models: Mapping[str, Path | str], *, steps: int = 2, pixels: int = 4096
) -> list[dict[str, Any]]:
    """The `editors` of a tiny-diffusers build: one per family in `models` (name -> saved
    pipeline folder, as `save_tiny_editors` returns), with the family's own tiny params."""
    families = {tiny_name(kind): (kind, cls) for kind, cls in tiny_families().items()}
    specs = []
    for name, model in models.items():
        kind, cls = families[name]
        specs.append(
            {
                "name": name,
                "kind": kind,
                "model": str(model),
                "params": {"steps": steps, "pixels": pixels, **cls.tiny_params(pixels)},
                "resources": {"num_cpus": 0.25},
                "batch_size": 4 if cls.batchable else 2,
            }
        )
    return specs
