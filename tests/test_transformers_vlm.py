"""The local transformers VLM backend on a tiny random Qwen2.5-VL (CPU, no download)."""

import pytest

pytest.importorskip("transformers", reason="the [models] extra is not installed")

from tiny_vlm import save_tiny_qwen25_vl  # noqa: E402

from editthinker_data.backends import BackendError, RefineRequest, ScoreRequest  # noqa: E402
from editthinker_data.experts.transformers_vlm import (  # noqa: E402
    TransformersExpert,
    TransformersScorer,
    TransformersThinker,
)
from editthinker_data.procedural.scene import render_scene  # noqa: E402

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


def test_missing_model_fails_at_setup_with_the_path(tmp_path):
    backend = TransformersExpert(name="x", model_path=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no model at .*nowhere.*no network"):
        backend.setup()


def test_a_build_with_a_gibberish_scorer_finishes_and_accounts_for_every_pair(tiny_model, demo_cfg, tmp_path):
    from editthinker_data import units
    from editthinker_data.config import BuildConfig
    from editthinker_data.local import local_executor
    from editthinker_data.storage import LocalStorage

    data = demo_cfg.model_dump()
    data["scorer"] = {
        "kind": "transformers",
        "name": "tiny",
        "params": {"model_path": str(tiny_model), "max_new_tokens": 8, "parse_retries": 0},
    }
    cfg = BuildConfig.model_validate(data)
    storage = LocalStorage(tmp_path)
    units.run_pool(cfg, storage)
    report = units.run_generate(cfg, storage, 0, local_executor(cfg))
    assert report["stats"]["input"] == 12 and report["stats"]["failed"] == {"first_turn_failed": 12}
    assert all("unusable" in f["detail"] for f in report["failures"])
