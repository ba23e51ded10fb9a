"""EasyR1 RL export for the EditThinker release's own EasyR1 fork
(appletea233/EditThinker, train/EasyR1/verl/utils/dataset.py `RLHFDataset`).

That loader reads `origin_prompt`, `rewritten_prompt`, `origin_image_path` and
`edited_image_path` by name (it ignores `data.prompt_key` and `data.image_key`), joins
relative image paths to `data.image_dir`, builds the user turn by plain text replacement of
`{original_instruction}` and `{rewritten_prompt}` in the `data.format_prompt` file (no
Jinja), splitting it at `<image>` tokens, and pops `data.answer_key` as the ground truth
that the release's reward compares with. So the folder ships the format prompt and says
the settings in `export_info.json`."""

from __future__ import annotations

import json
from typing import Any

from editthinker_data.io.manifest import file_entry
from editthinker_data.io.storage import Storage
from editthinker_data.prompts import THINKER_TEMPLATE, load_template
from editthinker_data.release.common import (
    ImageStore,
    images_entry,
    iter_steps,
    publish_export,
)

DATA_FILE = "rl_train.jsonl"
FORMAT_PROMPT_FILE = "format_prompt.txt"
IMAGE_COLUMNS = ["origin_image_path", "edited_image_path"]
ANSWER_KEY = "evaluation"


def format_prompt(version: str = THINKER_TEMPLATE) -> str:
    """Our thinker prompt with the fork's placeholders: the RL prompt is the SFT user turn."""
    return (
        load_template(version)
        .strip()
        .format(source_instruction="{original_instruction}", previous_instruction="{rewritten_prompt}")
        + "\n"
    )


def trainer_settings() -> dict[str, Any]:
    settings = {
        "data.train_files": DATA_FILE,
        "data.val_files": DATA_FILE,
        "data.answer_key": ANSWER_KEY,
        "data.image_dir": "images",
        "data.format_prompt": FORMAT_PROMPT_FILE,
    }
    overrides = " ".join(f"{k}=$EXPORT/{v}" if v != ANSWER_KEY else f"{k}={v}" for k, v in settings.items())
    return {
        "loader": "EditThinker's EasyR1 fork: train/EasyR1/verl/utils/dataset.py (RLHFDataset)",
        "paths_relative_to": "this folder (EXPORT below)",
        "settings": settings,
        "notes": (
            "The fork reads origin_prompt, rewritten_prompt, origin_image_path and edited_image_path "
            "by name; data.prompt_key and data.image_key are not used. evaluation ({semantics, "
            "quality} of edited_image_path) is popped as ground_truth for the reward "
            "(verl/reward_function/edit_thinker_reward.py:compute_score)."
        ),
        "command": (
            "cd EditThinker/train/EasyR1 && python3 -m verl.trainer.main "
            f"config=examples/edit_thinker_config.yaml {overrides} "
            "worker.actor.model.model_path=YOUR_SFT_CHECKPOINT "
            "worker.reward.reward_function=verl/reward_function/edit_thinker_reward.py:compute_score"
        ),
    }


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
                        ANSWER_KEY: {
                            "semantics": meta["scores"]["semantic"],
                            "quality": meta["scores"]["quality"],
                        },
                        "task_type": meta["task_type"],
                        "id": meta["key"],
                    },
                    ensure_ascii=False,
                )
            )
    data = ("\n".join(lines) + "\n" if lines else "").encode()
    prompt = format_prompt().encode()
    info = {
        "format": "easyr1",
        "rows": len(lines),
        "images": len(images.written),
        "prompt_template": THINKER_TEMPLATE,
        "files": {
            DATA_FILE: {**file_entry(data), "rows": len(lines)},
            FORMAT_PROMPT_FILE: file_entry(prompt),
        },
        "image_files": images_entry(images, IMAGE_COLUMNS, "images"),
        "trainer": trainer_settings(),
    }
    files = {DATA_FILE: data, FORMAT_PROMPT_FILE: prompt}
    files["export_info.json"] = (json.dumps(info, indent=2, sort_keys=True) + "\n").encode()
    publish_export(storage, out, files, images)
    return info
