"""EasyR1 RL export: JSONL rows in the released RL data's shape, with image paths relative
to the image folder."""

from __future__ import annotations

import json
from typing import Any

from editthinker_data.exports.common import ImageStore, iter_steps
from editthinker_data.storage import Storage


def export_easyr1(storage: Storage, out: str = "exports/easyr1", splits=("rl",)) -> dict[str, Any]:
    root = storage.work_dir(out)
    images = ImageStore(root / "images")
    lines = []
    for split in splits:
        for sample in iter_steps(storage, split):
            meta = sample["json"]
            lines.append(
                json.dumps(
                    {
                        "origin_prompt": meta["source_instruction"],
                        "rewritten_prompt": meta["previous_instruction"],
                        "origin_image_path": images.put(sample["src.png"]),
                        "edited_image_path": images.put(sample["prev.png"]),
                        "evaluation": {
                            "semantics": meta["scores"]["semantic"],
                            "quality": meta["scores"]["quality"],
                        },
                        "task_type": meta["task_type"],
                        "id": meta["key"],
                    },
                    ensure_ascii=False,
                )
            )
    storage.write_bytes(f"{out}/rl_train.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())
    info = {"format": "easyr1", "rows": len(lines), "images": len(images.written), "image_dir": "images"}
    storage.write_json(f"{out}/export_info.json", info)
    storage.publish_dir(out)
    return info
