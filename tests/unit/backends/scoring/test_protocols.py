"""The VIEScore scorer protocol (the default of the model scorers) against the local
OpenAI-compatible server: which calls go out, with which images and prompt, how the two
answers combine, the cache and the accounting. VIEScore's tie task (TIGER-AI-Lab/VIEScore
viescore/__init__.py) sends the semantic prompt with [source, edited] and the quality prompt
with the edited image alone, text before images in its OpenAI client."""

import base64
import io
import math
from importlib import resources

import numpy as np
import pytest
from PIL import Image

from editthinker_data.backends import BackendError, ScoreRequest, prompt_templates
from editthinker_data.backends.experts.openai_compat import OpenAIScorer
from editthinker_data.backends.procedural.judge import judge
from editthinker_data.backends.procedural.scene import render_scene
from editthinker_data.config import ConfigError, load_config, parse_config
from editthinker_data.core.stats import llm_usage
from editthinker_data.pipeline.preflight import preflight
from tests.support.openai_server import ChatServer, quality_of

SRC = render_scene("sky", [("circle", "red", 0.3, 0.5, 0.12), ("square", "green", 0.72, 0.45, 0.1)])
GOOD = render_scene("sky", [("circle", "blue", 0.3, 0.5, 0.12), ("square", "green", 0.72, 0.45, 0.1)])
INSTRUCTION = "Make the red circle blue."
PROMPTS = resources.files("editthinker_data.prompts")


def make(server, tmp_path, **kw):
    scorer = OpenAIScorer(name="t", base_url=server.base_url, model="test-vlm", cache_dir=str(tmp_path), **kw)
    scorer.setup()
    return scorer


def parts(body):
    """A request's user content as (kinds, text, images)."""
    content = body["messages"][-1]["content"]
    images = [
        Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1]))).convert("RGB")
        for p in content
        if p["type"] == "image_url"
    ]
    return [p["type"] for p in content], next(p["text"] for p in content if p["type"] == "text"), images


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


def test_two_calls_with_viescores_inputs_combined_by_min_and_sqrt(tmp_path):
    with ChatServer() as server:
        scorer = make(server, tmp_path)
        [s] = scorer.run_batch([ScoreRequest(SRC, GOOD, INSTRUCTION)])
        assert server.requests == 2
        sc, pq = sorted(server.bodies, key=lambda b: len(b["messages"][-1]["content"]), reverse=True)
    kinds, text, images = parts(sc)
    assert kinds == ["text", "image_url", "image_url"]  # text first, then source, then edit
    assert same(images[0], SRC) and same(images[1], GOOD)
    assert text == (PROMPTS / "viescore_sc_v1.txt").read_text().replace("{{", "{").replace("}}", "}").replace(
        "{instruction}", INSTRUCTION
    )
    kinds, text, images = parts(pq)
    assert kinds == ["text", "image_url"] and same(images[0], GOOD)  # the edit alone
    assert INSTRUCTION not in text and "naturalness" in text and "artifacts" in text
    assert text == (PROMPTS / "viescore_pq_v1.txt").read_text().replace("{{", "{").replace("}}", "}")
    # the server's answers: [success, no over-editing] by the judge, [naturalness, artifacts] by noise
    _, _, d = judge(SRC, GOOD, INSTRUCTION).scores()
    success, no_over = round(d["success"], 2), round(d["no_over_editing"], 2)
    natural, no_art = quality_of(GOOD)
    assert (s.semantic, s.quality) == (min(success, no_over), min(natural, no_art))
    assert s.details == {
        "success": success,
        "no_over_editing": no_over,
        "naturalness": natural,
        "no_artifacts": no_art,
    }
    assert s.overall == pytest.approx(math.sqrt(s.semantic * s.quality))


def test_answers_are_cached_and_every_call_is_counted(tmp_path):
    noisy = Image.fromarray(
        np.clip(np.asarray(GOOD, dtype=np.int16) + np.random.default_rng(0).integers(-40, 40, (*GOOD.size[::-1], 3)), 0, 255).astype(np.uint8)
    )  # fmt: skip
    reqs = [
        ScoreRequest(SRC, GOOD, INSTRUCTION),
        ScoreRequest(SRC, noisy, INSTRUCTION),
        ScoreRequest(SRC, SRC, "x"),
    ]
    with ChatServer() as server:
        first = make(server, tmp_path)
        scores = first.run_batch(reqs)
        stats = first.stats()
        assert server.requests == 6 and stats["requests"] == 6 and stats["tokens_in"] == 6000  # 2 per score
        assert scores[1].quality < scores[0].quality  # the quality call saw the noise
        again = make(server, tmp_path)
        assert [s.to_dict() for s in again.run_batch(reqs)] == [s.to_dict() for s in scores]
        assert server.requests == 6 and again.stats()["requests"] == 0 and again.stats()["cache_hits"] == 6
    cfg = parse_config(
        {"source": {"manifest": "m.jsonl"},
         "scorer": {"kind": "openai", "name": "t", "base_url": "http://127.0.0.1:1/v1", "model": "m",
                    "price": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}},
        environ={},
    )  # fmt: skip
    usage = llm_usage(cfg, [{"role": "scorer", "name": "t", "counters": stats}])["scorer"]
    assert usage["requests"] == 6
    assert usage["cost_usd"] == pytest.approx(6000 * 2e-6 + stats["tokens_out"] * 8e-6, abs=1e-4)


def test_an_edit_of_another_size_is_scored_at_the_sources_size(tmp_path):
    big = GOOD.resize((GOOD.width * 2, GOOD.height * 2))
    with ChatServer() as server:
        make(server, tmp_path).run_batch([ScoreRequest(SRC, big, INSTRUCTION)])
        sent = [parts(b)[2] for b in server.bodies]
    assert all(im.size == SRC.size for images in sent for im in images)  # as GEdit-Bench and the RL reward do
    assert any(same(images[-1], big.resize(SRC.size)) for images in sent)


def test_one_unusable_call_fails_the_score_and_names_it(tmp_path):
    with ChatServer(fault_rate=1.0, faults=["malformed"]) as server:
        [r] = make(server, tmp_path, parse_retries=1).run_batch([ScoreRequest(SRC, GOOD, INSTRUCTION)])
        assert isinstance(r, BackendError) and str(r).startswith(
            "semantic call: scorer answer unusable after 2 tries"
        )


def test_merged_protocol_asks_once_for_four_numbers(tmp_path):
    with ChatServer() as server:
        scorer = make(server, tmp_path, protocol="merged")
        [s] = scorer.run_batch([ScoreRequest(SRC, GOOD, INSTRUCTION)])
        [body] = server.bodies
    kinds, text, images = parts(body)
    assert kinds == ["image_url", "image_url", "text"] and "four scores" in text
    assert same(images[0], SRC) and same(images[1], GOOD)
    assert s.semantic > 9 and set(s.details) == {"success", "no_over_editing", "naturalness", "no_artifacts"}
    assert scorer.stats()["requests"] == 1


def write_viescore_prompts(root):
    """Stand-ins for the four files of VIEScore's viescore/prompts_raw its tie task reads."""
    (root / "prompts_0shot").mkdir(parents=True)
    (root / "context_no_delimit.txt").write_text('CONTEXT {\n"score" : [...]\n}')
    (root / "prompts_0shot/two_image_edit_rule.txt").write_text("RULES: two images\n")
    (root / "prompts_0shot/tie_rule_SC.txt").write_text("\nSC RUBRIC\nEditing instruction: <instruction>\n")
    (root / "prompts_0shot/rule_PQ.txt").write_text("RULES: one image\nPQ RUBRIC [naturalness, artifacts]\n")
    return root


def test_prompt_dir_sends_viescores_own_files_joined_as_it_joins_them(tmp_path):
    prompts = write_viescore_prompts(tmp_path / "prompts_raw")
    with ChatServer() as server:
        scorer = make(server, tmp_path / "cache", prompt_dir=str(prompts))
        [s] = scorer.run_batch([ScoreRequest(SRC, GOOD, INSTRUCTION)])
        texts = sorted(parts(b)[1] for b in server.bodies)
    context = 'CONTEXT {\n"score" : [...]\n}'
    assert texts == [
        f"{context}\nRULES: one image\nPQ RUBRIC [naturalness, artifacts]\n",
        f"{context}\nRULES: two images\n\n\nSC RUBRIC\nEditing instruction: {INSTRUCTION}\n",
    ]
    assert s.semantic > 9
    assert scorer.template_name.startswith("viescore_sc@") and "+viescore_pq@" in scorer.template_name


def test_prompt_dir_resolves_against_the_config_and_is_recorded(tmp_path):
    write_viescore_prompts(tmp_path / "vie")
    (tmp_path / "m.jsonl").write_text('{"id": "a", "image": "a.png", "instruction": "x"}\n')
    (tmp_path / "c.yaml").write_text(
        "source: {manifest: m.jsonl}\n"
        "scorer: {kind: openai, base_url: 'http://127.0.0.1:1/v1', model: m, params: {prompt_dir: ./vie}}\n"
    )
    cfg = load_config(tmp_path / "c.yaml", environ={})
    assert cfg.scorer.params["prompt_dir"] == str((tmp_path / "vie").resolve())
    preflight(cfg)
    recorded = prompt_templates(cfg.backend_specs())["scorer"]
    assert recorded.startswith("viescore_sc@")
    (tmp_path / "vie/prompts_0shot/tie_rule_SC.txt").write_text("Editing instruction: <instruction> (v2)\n")
    assert prompt_templates(cfg.backend_specs())["scorer"] != recorded  # other wording, other version


@pytest.mark.parametrize(
    "params,message",
    [
        ({"protocol": "vie"}, "params.protocol 'vie' is unknown; use viescore"),
        ({"template": "scorer_v1"}, "set params.protocol: merged to use it"),
        ({"protocol": "merged", "prompt_dir": "/x"}, "needs params.protocol: viescore"),
        (
            {"prompt_dir": "/nowhere"},
            r"lacks context_no_delimit.txt, prompts_0shot/two_image_edit_rule.txt.*prompts_raw",
        ),
    ],
)
def test_bad_protocol_settings_fail_before_the_build(tmp_path, params, message):
    scorer = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m", "params": params}
    cfg = parse_config({"source": {"manifest": str(tmp_path / "m.jsonl")}, "scorer": scorer}, environ={})
    with pytest.raises(ConfigError, match="^scorer 'openai': .*" + message):
        preflight(cfg)


def test_every_remote_and_local_role_gets_the_builds_context(tmp_path):
    """The scorers wrap their base's __init__; the build's context (answer cache beside the
    output, shared by every node) must still reach them, not a per-machine default."""
    from editthinker_data.backends import BackendContext, create_backend
    from editthinker_data.config import BackendSpec

    context = BackendContext(output_url=str(tmp_path / "out"), llm_cache="output")
    for role in ("expert", "scorer", "thinker"):
        spec = BackendSpec(kind="openai", name=f"x-{role}", base_url="http://127.0.0.1:9/v1", model="m")
        assert create_backend(role, spec, 0, context).context is context
