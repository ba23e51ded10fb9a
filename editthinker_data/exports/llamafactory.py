"""LLaMA-Factory ShareGPT SFT export: `sft_train.json` + the `dataset_info.json` entry.

The user turn holds two `<image>` tokens (source, previous edit) and both instructions,
through our versioned template; the assistant turn is the thinker's answer
`<think>R_t</think><score>{...}</score><answer>T_t</answer>`."""

from __future__ import annotations

import json
from typing import Any

from editthinker_data.exports.common import TEMPLATE_VERSION, ImageStore, iter_steps, user_turn
from editthinker_data.schema import thinker_output
from editthinker_data.storage import Storage

DATASET_NAME = "editthinker_sft"


def dataset_info(file_name: str = "sft_train.json") -> dict[str, Any]:
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
    storage.write_bytes(f"{out}/sft_train.json", json.dumps(rows, ensure_ascii=False, indent=1).encode())
    storage.write_json(f"{out}/dataset_info.json", dataset_info())
    info = {
        "format": "llamafactory",
        "rows": len(rows),
        "images": len(images.written),
        "template": TEMPLATE_VERSION,
    }
    storage.write_json(f"{out}/export_info.json", info)
    storage.publish_dir(out)
    return info
