"""The card's Limitations and Citation sections: what a reader of a published dataset must
know before training on it, derived from the build's config and stats, never hand-written."""

from __future__ import annotations

from typing import Any

CITATION = """\
@article{li2025editthinker,
  title   = {EditThinker: Unlocking Iterative Reasoning for Any Image Editor},
  author  = {Li, Hongyu and Zhang, Manyuan and Zheng, Dian and Guo, Ziyu and Jia, Yimeng and
             Feng, Kaituo and Yu, Hao and Liu, Yexin and Feng, Yan and Pei, Peng and Cai, Xunliang
             and Huang, Linjiang and Li, Hongsheng and Liu, Si},
  journal = {arXiv preprint arXiv:2512.05965},
  year    = {2025},
  url     = {https://arxiv.org/abs/2512.05965}
}"""

# Below these an editor runs at test scale: the paper's editors use 28-50 steps at 1024^2.
TEST_SCALE_STEPS = 10
TEST_SCALE_PIXELS = 256 * 256


def test_scale_backends(cfg) -> list[str]:
    """One line per backend that makes this data unfit for training a real thinker: the
    procedural demo backends, and editors run with tiny models or test-scale settings."""
    found = []
    for role, spec in cfg.backend_specs():
        label = f"{role} `{spec.name or spec.kind}`"
        if spec.kind == "procedural":
            found.append(
                f"{label} is the procedural demo backend: "
                + {
                    "editor": "its images are synthetic scenes edited by rules, not by a diffusion model",
                    "expert": "its critiques and refined instructions are templates, not a model's reasoning",
                    "scorer": "its scores are computed from the scene, not judged by a model",
                    "thinker": "its answers are templates and computed scores, not a model's",
                }.get(role, "not a model")
            )
            continue
        if spec.kind == "simulated":
            found.append(f"{label} is the simulated editor: its edits are the source, faintly tinted")
            continue
        reasons = []
        if spec.model and "tiny" in str(spec.model).lower():
            reasons.append(f"its model `{spec.model}` is named tiny")
        steps, pixels = spec.params.get("steps"), spec.params.get("pixels")
        if isinstance(steps, int) and steps < TEST_SCALE_STEPS:
            reasons.append(f"{steps} denoising steps")
        if isinstance(pixels, int) and pixels < TEST_SCALE_PIXELS:
            reasons.append(f"{pixels} pixels per image")
        if reasons:
            found.append(f"{label} runs at test scale ({', '.join(reasons)})")
    return found


def limitations_section(cfg, stats: dict[str, Any], has_pool_images: bool) -> str:
    items = [f"- {line}." for line in test_scale_backends(cfg)]
    if items:
        items.append(
            "- Data made this way tests the pipeline and the trainers' loading code; do not "
            "train a thinker on it and expect the paper's results."
        )
    judge = cfg.thinker or cfg.scorer
    items.append(
        f"- Scores come from an automatic judge (`{judge.name or judge.kind}`, {judge.kind}), not from "
        "human raters; the filter, split and balancing inherit its errors and biases."
    )
    licences = stats.get("licences") or {}
    unset = sorted(name for name, lic in licences.items() if not lic)
    listed = ", ".join(f"{name}: {lic or 'not set'}" for name, lic in sorted(licences.items()))
    items.append(
        f"- Source licences ({listed or 'none recorded'}) apply to every sample made from a source, "
        "beside this card's licence; each sample's `provenance` names its source."
        + (
            f" No licence is recorded for {', '.join(unset)}: check it before redistributing."
            if unset
            else ""
        )
    )
    items.extend(f"- {w}" for w in stats.get("licence_warnings", []))
    if not has_pool_images:
        items.append(
            "- Trajectory shards hold the edited images only; their source images are referenced by "
            "`source_sha256` and were read from local files, which are not part of this release "
            "(step samples carry theirs as `src.png`)."
        )
    return "\n## Limitations\n\n" + "\n".join(items) + "\n"


def citation_section() -> str:
    return (
        "\n## Citation\n\nThe method and data recipe are from EditThinker (arXiv 2512.05965):\n\n"
        f"```bibtex\n{CITATION}\n```\n"
    )
