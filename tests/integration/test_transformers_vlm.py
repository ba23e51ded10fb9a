"""The local transformers VLM backend on a tiny random Qwen2.5-VL (CPU, no download)."""

import pytest

pytest.importorskip("transformers", reason="the [models] extra is not installed")

from editthinker_data.backends import BackendError, RefineRequest, ScoreRequest  # noqa: E402
from editthinker_data.backends.experts.transformers_vlm import (  # noqa: E402
    TransformersExpert,
    TransformersScorer,
    TransformersThinker,
)
from editthinker_data.backends.procedural.scene import render_scene  # noqa: E402
from editthinker_data.core.layout import POOL_UNIT, part_name
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.stages.generate import GenerateStage
from editthinker_data.stages.pool import PoolStage
from tests.support.tiny_vlm import save_tiny_qwen3_vl, save_tiny_qwen25_vl  # noqa: E402

SRC = render_scene("sky", [("circle", "red", 0.3, 0.5, 0.12)], 64)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_qwen25_vl(tmp_path_factory.mktemp("tiny-qwen25-vl"))


def test_gibberish_is_rejected_cleanly_by_every_role(tiny_model):
    for cls, req in (
        (TransformersExpert, RefineRequest(SRC, SRC, "Make it blue.", "Make it blue.")),
        (TransformersScorer, ScoreRequest(SRC, SRC, "Make it blue.")),
        (TransformersThinker, RefineRequest(SRC, SRC, "Make it blue.", "Make it blue.")),
    ):
        backend = cls(name="tiny", model_path=str(tiny_model), max_new_tokens=12, parse_retries=1)
        backend.setup()
        [result] = backend.run_batch([req])
        assert isinstance(result, BackendError) and "unusable after 2 tries" in str(result)
        stats = backend.stats()
        assert stats["requests"] == 2 and stats["tokens_out"] > 0 and stats["failures"] == 1


def test_scorer_runs_viescores_two_calls_on_the_model(tiny_model):
    """The real model generates for both calls (its gibberish is then replaced by fixed
    answers, to check the combination): the semantic call with [source, edit] and the
    instruction, the quality call with the edit alone."""
    edit = render_scene("sky", [("circle", "blue", 0.3, 0.5, 0.12)], 64)
    seen = []

    class Recorded(TransformersScorer):
        def _generate(self, text, images, attempt):
            raw = super()._generate(text, images, attempt)
            seen.append((text, images, raw))
            return '{"score": [7, 9], "reasoning": "x"}' if "Editing instruction:" in text else "[8, 6]"

    backend = Recorded(name="tiny", model_path=str(tiny_model), max_new_tokens=4, parse_retries=0)
    assert backend.template_name == "viescore_sc_v1+viescore_pq_v1"
    backend.setup()
    [s] = backend.run_batch([ScoreRequest(SRC, edit, "Make it blue.")])
    assert [len(images) for _, images, _ in seen] == [2, 1]
    (sc_text, sc_images, _), (pq_text, pq_images, _) = seen
    assert sc_text.rstrip().endswith("Editing instruction: Make it blue.") and "Make it blue." not in pq_text
    assert sc_images[0].tobytes() == SRC.tobytes() and sc_images[1].tobytes() == edit.tobytes()
    assert pq_images[0].tobytes() == edit.tobytes()
    assert (s.semantic, s.quality) == (7.0, 6.0) and s.overall == pytest.approx(42**0.5)
    assert backend.stats()["requests"] == 2 and backend.stats()["tokens_out"] > 0


@pytest.mark.parametrize("moe", [False, True], ids=["qwen3_vl", "qwen3_vl_moe"])
def test_qwen3_vl_families_load_see_the_images_and_are_parsed_strictly(tmp_path, moe):
    path = save_tiny_qwen3_vl(tmp_path / "tiny", moe=moe)
    backend = TransformersScorer(name="tiny", model_path=str(path), max_new_tokens=6, parse_retries=0)
    assert backend.preflight() == ("qwen3_vl_moe" if moe else "qwen3_vl")
    backend.setup()
    assert type(backend.model).__name__ == (
        "Qwen3VLMoeForConditionalGeneration" if moe else "Qwen3VLForConditionalGeneration"
    )
    [result] = backend.run_batch([ScoreRequest(SRC, SRC, "Make it blue.")])
    assert isinstance(result, BackendError) and "unusable after 1 tries" in str(result)
    # 64 px images in 16 px patches merged 2x2: 4 placeholder tokens per image reach the model
    inputs = backend.processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[SRC], return_tensors="pt"
    )
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    assert int((inputs["input_ids"] == backend.processor.image_token_id).sum()) == 4


def test_unsupported_model_type_fails_before_any_actor(tiny_model, tmp_path):
    import json
    import shutil

    with pytest.raises(ValueError, match="model_type 'llava' is not supported; use auto or one of"):
        TransformersExpert(name="x", model_path=str(tiny_model), model_type="llava")
    other = tmp_path / "llava"
    shutil.copytree(tiny_model, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "llava"}))
    with pytest.raises(
        ValueError, match="'llava' is not supported by the transformers backend; use one of qwen2_vl"
    ):
        TransformersExpert(name="x", model_path=str(other)).preflight()


def test_missing_model_fails_at_setup_with_the_path(tmp_path):
    backend = TransformersExpert(name="x", model_path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no model at .*nowhere.*no network"):
        backend.setup()


def test_a_build_with_a_gibberish_scorer_finishes_and_accounts_for_every_pair(tiny_model, demo_cfg, tmp_path):
    from editthinker_data.config import BuildConfig
    from editthinker_data.execution.local_rollouts import local_runner
    from editthinker_data.io.storage import LocalStorage

    data = demo_cfg.model_dump()
    data["scorer"] = {
        "kind": "transformers",
        "name": "tiny",
        "params": {"model_path": str(tiny_model), "max_new_tokens": 8, "parse_retries": 0},
    }
    cfg = BuildConfig.model_validate(data)
    storage = LocalStorage(tmp_path)
    LocalExecutor().run_one(PoolStage(cfg), storage, POOL_UNIT)
    report = LocalExecutor().run_one(GenerateStage(cfg), storage, part_name(0), runner=local_runner(cfg))
    assert report.stats["input"] == 12 and report.stats["failed"] == {"scorer_unparseable": 12}
    assert all("unusable" in f["detail"] for f in report.failures)
