"""LLaMA-Factory ShareGPT SFT export: `sft_train.json` + the `dataset_info.json` entry.

The user turn holds two `<image>` tokens (source, previous edit) and both instructions,
through our versioned template; the assistant turn is the thinker's answer
`<think>R_t</think><score>{...}</score><answer>T_t</answer>`."""

from __future__ import annotations

import json
from typing import Any

from editthinker_data.core.schema import thinker_output
from editthinker_data.io.manifest import file_entry
from editthinker_data.io.storage import Storage
from editthinker_data.prompts import THINKER_TEMPLATE, user_turn
from editthinker_data.release.common import (
    ImageStore,
    images_entry,
    iter_steps,
    publish_export,
)

DATASET_NAME = "editthinker_sft"
DATA_FILE = "sft_train.json"


def dataset_info(file_name: str = DATA_FILE) -> dict[str, Any]:
    return {
        DATASET_NAME: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        }
    }


def trainer_settings() -> dict[str, Any]:
    """LLaMA-Factory resolves `file_name` against `dataset_dir` and image paths against
    `media_dir`, which defaults to `dataset_dir`: pointing both at this folder is enough."""
    settings = {"dataset_dir": ".", "dataset": DATASET_NAME, "template": "qwen3_vl"}
    return {
        "loader": "LLaMA-Factory, formatting sharegpt (data/dataset_info.json entry in this folder)",
        "paths_relative_to": "this folder (EXPORT below)",
        "settings": settings,
        "notes": (
            "template: qwen3_vl for Qwen3-VL (the EditThinker release's SFT), qwen2_vl for "
            "Qwen2-VL and Qwen2.5-VL. Image paths are relative to dataset_dir (media_dir defaults "
            "to it); each user turn has as many <image> tokens as the row has images."
        ),
        "command": (
            "llamafactory-cli train --stage sft --do_train true "
            "--model_name_or_path Qwen/Qwen3-VL-8B-Instruct --finetuning_type full "
            f"--dataset_dir $EXPORT --dataset {DATASET_NAME} --template qwen3_vl "
            "--cutoff_len 16384 --bf16 true --output_dir saves/editthinker-sft"
        ),
    }


def assistant_turn(meta: dict[str, Any]) -> str:
    s = meta["scores"]
    return thinker_output(meta["reasoning"], s["semantic"], s["quality"], meta["instruction"])


def export_llamafactory(
    storage: Storage, out: str = "exports/llamafactory", splits=("sft",)
) -> dict[str, Any]:
    root = storage.work_dir(out)
    images = ImageStore(root / "images")
    rows = []
    for split in splits:
        for sample in iter_steps(storage, split):
            meta = sample["json"]
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": user_turn(meta)},
                        {"role": "assistant", "content": assistant_turn(meta)},
                    ],
                    "images": [
                        f"images/{images.put(sample['src.png'])}",
                        f"images/{images.put(sample['prev.png'])}",
                    ],
                }
            )
    data = json.dumps(rows, ensure_ascii=False, indent=1).encode()
    registry = (json.dumps(dataset_info(), indent=2, sort_keys=True) + "\n").encode()
    info = {
        "format": "llamafactory",
        "rows": len(rows),
        "images": len(images.written),
        "prompt_template": THINKER_TEMPLATE,
        "files": {
            DATA_FILE: {**file_entry(data), "rows": len(rows)},
            "dataset_info.json": file_entry(registry),
        },
        "image_files": images_entry(images, ["images"], "."),
        "trainer": trainer_settings(),
    }
    files = {DATA_FILE: data, "dataset_info.json": registry}
    files["export_info.json"] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    publish_export(storage, out, files, images)
    return info
