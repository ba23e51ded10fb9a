"""The dataset card: a Hugging Face style README.md with YAML front matter, generated from
the build's stats and config."""

from __future__ import annotations

from typing import Any

import yaml

from editthinker_data.core.layout import POOL_IMAGES, SPLITS, shard_glob
from editthinker_data.core.stats import STAGES
from editthinker_data.prompts import THINKER_TEMPLATE
from editthinker_data.release.card_features import shard_features
from editthinker_data.release.card_notes import citation_section, limitations_section


def size_category(n: int) -> str:
    for limit, label in [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ]:
        if n < limit:
            return label
    return "1M<n<10M"


def front_matter(build) -> dict[str, Any]:
    manifest = build.manifest
    total = sum(manifest["totals"].get(k, 0) for k in ("sft", "rl"))
    configs = []
    infos = []
    for kind in (*SPLITS, "trajectories"):  # each a config of one train split; sft the default
        if manifest["shards"].get(kind):
            config = {"config_name": kind, "data_files": [{"split": "train", "path": shard_glob(kind)}]}
            configs.append({**config, "default": True} if kind == "sft" else config)
            urls = [s["url"] for s in manifest["shards"][kind]]
            infos.append({"config_name": kind, "features": shard_features(build.storage, urls)})
    return {
        "license": build.config.output.license,
        "task_categories": ["image-text-to-text", "image-to-image"],
        "size_categories": [size_category(total)],
        "tags": ["image-editing", "editthinker", "think-while-edit", "multimodal-reasoning", "webdataset"],
        "pretty_name": build.config.name,
        "configs": configs,
        "dataset_info": infos,
    }


def _backend(spec) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(spec.params.items()))
    return f"`{spec.name}` ({spec.kind}{'; ' + params if params else ''})"


def _sources_section(stats: dict[str, Any]) -> str:
    """The licences mixed into this build, per source, with their warnings."""
    by_source = stats.get("pool_by_source") or {}
    licences = stats.get("licences") or {}
    if not licences:
        return ""
    rows = "\n".join(
        f"| {name} | {lic or 'not set'} | {by_source.get(name, {}).get('kept', 0)} |"
        for name, lic in sorted(licences.items())
    )
    warnings = "\n".join(f"> **Warning:** {w}" for w in stats.get("licence_warnings", []))
    return f"""
The source pairs come from these datasets; each sample's `provenance` names its source,
original id and label, and licence. Their terms apply to the samples made from them.

| source | licence | pooled pairs |
|---|---|---|
{rows}

{warnings}
"""


def _balance_rule(sel) -> str:
    if not sel.balance.enabled:
        return "off"
    return (
        f"whole trajectories (a trajectory's steps and stop sample are kept or dropped together); "
        f"in each split a (task type, bin of S_1) cell keeps at most {sel.balance.max_cell_ratio:g}x the "
        f"median cell's step samples; bins {sel.balance.score_bins}"
    )


def _selection_section(stats: dict[str, Any], sel) -> str:
    """Before/after balancing and the zero-gain count, when the build recorded them."""
    info = stats.get("selection")
    if not info:
        return ""
    before, after = info["before_balance"], info["after_balance"]
    rows = "\n".join(
        f"| {split} | {before['trajectory_splits'][split]} | {after['trajectory_splits'][split]} | "
        f"{before['splits'][split]} | {after['splits'][split]} |"
        for split in ("sft", "rl")
    )
    kept = sum(after["trajectory_splits"].values())
    return f"""
| split | trajectories before balancing | after | samples before balancing | after |
|---|---|---|---|---|
{rows}

Released trajectories: {kept}; with zero gain (best score equal to S_1, which the paper's rule
keeps; `selection.min_gain` = {sel.min_gain:g}): {after["zero_gain"]}; with a turn that failed
(`selection.failed_turns` = {sel.failed_turns}): {after["failed_turn"]}.
"""


def _changes_section(stats: dict[str, Any]) -> str:
    """A dataset version's changelog: pairs added, removed, rebuilt since the previous one."""
    c = stats.get("changes")
    if not c:
        return ""
    if not c["previous"]:
        return f"\n## Changelog\n\n{c['version']}: the first version, {c['pairs']} pairs.\n"
    examples = "".join(
        f"\n- {kind}: {', '.join(f'`{p}`' for p in ids)}" for kind, ids in c["examples"].items() if ids
    )
    return f"""
## Changelog

{c["version"]}, since {c["previous"]}: {c["pairs"]} pairs; {c["added"]} added, {c["removed"]} removed,
{c["rebuilt"]} rebuilt (content or rollout settings changed), {c["unchanged"]} unchanged (their
trajectories reused, not run again).
{examples}
"""


def render_card(build, figures: list[str], exports: dict[str, Any] | None = None) -> str:
    cfg, stats, manifest = build.config, build.stats, build.manifest
    sel = cfg.selection
    stage_rows = "\n".join(
        f"| {name} | {s['input']} | {s['kept']} | "
        f"{', '.join(f'{k} {v}' for k, v in s['filtered'].items()) or 0} | "
        f"{', '.join(f'{k} {v}' for k, v in s['failed'].items()) or 0} |"
        for name, s in ((n, stats["stages"][n]) for n in STAGES if n in stats["stages"])
    )
    figs = "\n\n".join(f"![{f}]({f})" for f in figures)
    editors = ", ".join(_backend(e) + f" x{e.ratio:g}" for e in cfg.editors)
    exports_text = ""
    if exports:
        exports_text = "\n".join(
            f"- `{k}`: {v['rows']} rows, {v['images']} images" for k, v in exports.items()
        )
    body = f"""
# {cfg.name}

Training data for *think-while-edit* image editing (EditThinker, arXiv 2512.05965): each
sample shows a thinker the source image, the editor's previous result and both instructions,
and teaches it to critique the result, score it and write a refined instruction.

Built with editthinker-data (config fingerprint `{cfg.fingerprint()}`).

## Splits

| split | samples | trajectories |
|---|---|---|
| sft | {manifest["totals"].get("sft", 0)} | {stats["trajectory_splits"]["sft"]} |
| rl | {manifest["totals"].get("rl", 0)} | {stats["trajectory_splits"]["rl"]} |

Trajectories whose score variance over the kept turns exceeds theta = {sel.rl_variance_threshold:g} form
the RL split; the rest form SFT. Every trajectory's samples are in one split, whole.
{_selection_section(stats, sel)}
## How it was built

- Editors: {editors}
- Expert: {_backend(cfg.expert)}; scorer: {_backend(cfg.scorer)} (VIEScore style, overall = sqrt(semantic x quality))
- Loop: up to {cfg.loop.max_turns} turns, seed {cfg.seed} ({cfg.loop.seed_policy}); the editor always edits the source image
- Trajectory filter: keep if max over t>1 of S_t >= S_1 + {sel.min_gain:g} (min_gain; score: {sel.score}), truncate at the best turn;
  single-turn trajectories {"kept" if sel.keep_single_turn else "dropped"}; stop samples {"included" if sel.include_stop_steps else "left out"};
  trajectories with a failed turn {"dropped (turn_failed)" if sel.failed_turns == "drop" else "judged on the turns stored before the failure"}
- Balancing: {_balance_rule(sel)}
- Thinker prompt template: `{THINKER_TEMPLATE}`

| stage | input | kept | filtered | failed |
|---|---|---|---|---|
{stage_rows}

Stop reasons: {", ".join(f"{k} {v}" for k, v in stats["stop_reasons"].items())}.

## Figures

{figs}

## Format

WebDataset shards under `steps/sft/` and `steps/rl/`; every sample has `json`, `src.png`
(source image) and `prev.png` (the edit the thinker judges). `json` holds
`source_instruction`, `previous_instruction`, `reasoning`, `scores` (of `prev.png`),
`instruction` (the refinement), `stop`, `result_scores` (what the refinement earned),
`task_type`, `editor`, and `target`, the thinker's answer:
`<think>...</think><score>{{"semantic": s, "quality": q}}</score><answer>...</answer>`.

Trajectory shards under `trajectories/` hold one sample per turn (`json` and `png`, the
edit of that turn), every trajectory the build ran, kept or not (`selection/decisions.parquet`
says which and why).

```python
from datasets import load_dataset
sft = load_dataset(REPO_OR_FOLDER, "sft", split="train")  # or "rl", "trajectories"
```

Trainer exports:
{exports_text or "- run `editthinker-data export OUTPUT --format all`"}

- LLaMA-Factory: `exports/llamafactory/` holds `sft_train.json` (ShareGPT) and `dataset_info.json`;
  use the folder as `dataset_dir`.
- EasyR1 (the EditThinker release's fork): `exports/easyr1/rl_train.jsonl`, image paths relative
  to `exports/easyr1/images/`, and `format_prompt.txt` for `data.format_prompt`; train with
  `data.answer_key=evaluation`.
- Each folder's `export_info.json` gives the exact trainer settings and command, row counts
  and sha256 of its files; `manifest.json` lists every file with its sha256
  (`editthinker-data verify` re-checks them).

## License

{cfg.output.license}
{_sources_section(stats)}{_changes_section(stats)}{limitations_section(cfg, stats, bool(build.storage.list(POOL_IMAGES)))}{citation_section()}"""
    return "---\n" + yaml.safe_dump(front_matter(build), sort_keys=False) + "---\n" + body
