"""Qwen-VL processors without a video processor, for the local VLM experts and for the
Qwen-Image-Edit editors' text encoder.

transformers' Qwen-VL processors insist on a video processor, which needs torchvision;
the data pipeline sends images only, so the family's processor is built without one.
"""

from __future__ import annotations

# model_type -> the transformers processor class of that family.
FAMILIES = {
    "qwen2_vl": "Qwen2VLProcessor",
    "qwen2_5_vl": "Qwen2_5_VLProcessor",
    "qwen3_vl": "Qwen3VLProcessor",
    "qwen3_vl_moe": "Qwen3VLProcessor",
}

SPECIAL_TOKENS = {
    "image": "<|image_pad|>",
    "video": "<|video_pad|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
}


def images_only_processor(family: str, tokenizer, image_processor, chat_template: str | None = None):
    import transformers
    from transformers.processing_utils import ProcessorMixin

    base = getattr(transformers, FAMILIES[family])

    class ImagesOnlyProcessor(base):  # type: ignore[misc,valid-type]  # the family's class, known at run time
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            for attr, token in SPECIAL_TOKENS.items():
                setattr(self, f"{attr}_token", token)
                setattr(self, f"{attr}_token_id", tokenizer.convert_tokens_to_ids(token))
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return ImagesOnlyProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template
    )
