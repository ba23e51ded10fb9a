import pytest

from editthinker_data.config import ConfigError, load_config, parse_config
from editthinker_data.pipeline.preflight import preflight

BASE = {"source": {"manifest": "m.jsonl"}}


def test_demo_config_loads_and_resolves_manifest(demo_cfg):
    assert demo_cfg.source.manifest.endswith("editthinker_data/demo/source/manifest.jsonl")
    assert [e.name for e in demo_cfg.editors] == ["careful", "sloppy"]
    assert demo_cfg.loop.max_turns == 5
    preflight(demo_cfg)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "loop": {"max_turn": 3}}, environ={})
    assert "loop.max_turn: unknown key" in str(err.value)


def test_bad_value_names_key_value_and_range():
    with pytest.raises(ConfigError) as err:
        parse_config({**BASE, "loop": {"max_turns": 0}}, environ={})
    msg = str(err.value)
    assert "loop.max_turns" in msg and "(got 0)" in msg and "greater than or equal to 1" in msg


def test_missing_section_says_how_to_fix():
    with pytest.raises(ConfigError, match="source: required key is missing; add it"):
        parse_config({}, environ={})


def test_literal_secret_is_refused():
    cfg = {**BASE, "expert": {"kind": "procedural", "params": {"api_key": "sk-123"}}}
    with pytest.raises(ConfigError, match="api_key_env"):
        parse_config(cfg, environ={})


def test_duplicate_editor_names_refused():
    with pytest.raises(ConfigError, match="repeat"):
        parse_config({**BASE, "editors": [{"name": "a"}, {"name": "a"}]}, environ={})


def test_bad_score_bins():
    with pytest.raises(ConfigError, match="score_bins"):
        parse_config({**BASE, "selection": {"balance": {"score_bins": [0, 5, 3, 10]}}}, environ={})


def test_env_override():
    cfg = parse_config(
        BASE, environ={"EDITTHINKER__RUN__MAX_IN_FLIGHT": "64", "EDITTHINKER__LOOP__MAX_TURNS": "8"}
    )
    assert cfg.run.max_in_flight == 64 and cfg.loop.max_turns == 8


def test_env_override_yaml_cannot_read_names_the_variable():
    """A control character is a YAML reader error, which carries no `problem` (it raised an
    AttributeError before mypy found it)."""
    with pytest.raises(
        ConfigError, match=r"EDITTHINKER__LOOP__MAX_TURNS: .*not valid YAML \(unacceptable character"
    ):
        parse_config(BASE, environ={"EDITTHINKER__LOOP__MAX_TURNS": "8\x01"})


def test_fingerprint_ignores_run_tuning_and_output_dir():
    a = parse_config(BASE, environ={})
    b = parse_config({**BASE, "run": {"max_in_flight": 3}, "output": {"dir": "elsewhere"}}, environ={})
    c = parse_config({**BASE, "seed": 1}, environ={})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_unknown_backend_kind_fails_preflight(tmp_path):
    (tmp_path / "m.jsonl").write_text("")
    cfg = parse_config({**BASE, "editors": [{"kind": "nonesuch"}]}, base_dir=tmp_path, environ={})
    with pytest.raises(ConfigError, match="unknown kind 'nonesuch'; available kinds: .*") as err:
        preflight(cfg)
    for kind in ("procedural", "flux_kontext", "qwen_image_edit", "instruct_pix2pix", "diffusers", "http"):
        assert kind in str(err.value)


def test_bad_backend_params_fail_preflight(tmp_path):
    (tmp_path / "m.jsonl").write_text("")
    cfg = parse_config({**BASE, "editors": [{"params": {"skill": 3}}]}, base_dir=tmp_path, environ={})
    with pytest.raises(ConfigError, match="skill=3 must lie in 0-1"):
        preflight(cfg)
    cfg = parse_config({**BASE, "editors": [{"params": {"skil": 0.3}}]}, base_dir=tmp_path, environ={})
    with pytest.raises(ConfigError, match="bad params"):
        preflight(cfg)


def test_missing_manifest_fails_preflight(tmp_path):
    cfg = parse_config(BASE, base_dir=tmp_path, environ={})
    with pytest.raises(ConfigError, match="not found"):
        preflight(cfg)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_fingerprint_survives_a_dump_and_reload(demo_cfg):
    from editthinker_data.config import BuildConfig

    assert BuildConfig.model_validate(demo_cfg.model_dump()).fingerprint() == demo_cfg.fingerprint()
    assert BuildConfig.model_validate_json(demo_cfg.model_dump_json()).fingerprint() == demo_cfg.fingerprint()


def test_prompt_template_versions_per_role():
    from editthinker_data.backends import prompt_templates

    cfg = parse_config(
        {**BASE, "expert": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"},
         "scorer": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m",
                    "params": {"protocol": "merged", "template": "scorer_v1"}}},
        environ={},
    )  # fmt: skip
    assert prompt_templates(cfg.backend_specs()) == {"expert": "expert_v1", "scorer": "scorer_v1"}
    for kind, where in (
        ("openai", {"base_url": "http://127.0.0.1:1/v1", "model": "m"}),
        ("transformers", {"model": "/m"}),
    ):
        # by default, a model scorer asks with VIEScore's two prompts
        default = parse_config({**BASE, "scorer": {"kind": kind, **where}}, environ={})
        assert prompt_templates(default.backend_specs())["scorer"] == "viescore_sc_v1+viescore_pq_v1"
    thinker = parse_config(
        {**BASE, "thinker": {"kind": "openai", "base_url": "http://x/v1", "model": "m"}}, environ={}
    )
    assert prompt_templates(thinker.backend_specs()) == {"thinker": "thinker_user_v1"}


def test_model_service_limits_and_answer_cache_do_not_change_the_data():
    remote = {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    a = parse_config({**BASE, "expert": remote}, environ={})
    b = parse_config(
        {**BASE, "expert": {**remote, "requests_per_minute": 50, "tokens_per_minute": 90_000, "max_concurrency": 64,
                            "timeout_s": 9, "price": {"input_per_mtok": 3}, "num_actors": 3},
         "run": {"llm_cache": "s3://bucket/llm"}},
        environ={},
    )  # fmt: skip
    c = parse_config({**BASE, "expert": {**remote, "model": "m2"}}, environ={})
    d = parse_config({**BASE, "expert": {**remote, "temperature": 0.7}}, environ={})
    assert a.fingerprint() == b.fingerprint()
    assert len({a.fingerprint(), c.fingerprint(), d.fingerprint()}) == 3
    assert a.run.llm_cache == "output"
    with pytest.raises(ConfigError, match="tokens_per_minute"):
        parse_config({**BASE, "expert": {**remote, "tokens_per_minute": 0}}, environ={})
    with pytest.raises(ConfigError, match="llm_cache is empty"):
        parse_config({**BASE, "run": {"llm_cache": " "}}, environ={})


def test_transformers_expert_takes_the_shared_model_field_and_resolves_relative_paths(tmp_path):
    from editthinker_data.backends import create_backend

    (tmp_path / "m.jsonl").write_text("")
    (tmp_path / "c.yaml").write_text(
        "source: {manifest: m.jsonl}\n"
        "expert: {kind: transformers, model: ./models/qwen, max_tokens: 64, resources: {num_gpus: 1}}\n"
        "scorer: {kind: transformers, params: {model_path: ../elsewhere/vl}}\n"
    )
    cfg = load_config(tmp_path / "c.yaml", environ={})
    expert = create_backend("expert", cfg.expert)
    assert expert.model_path == str(tmp_path / "models" / "qwen") and expert.max_new_tokens == 64
    assert create_backend("scorer", cfg.scorer).model_path == str(
        (tmp_path / ".." / "elsewhere" / "vl").resolve()
    )
    with pytest.raises(ConfigError, match="expert 'transformers'.*no model at .*models/qwen"):
        preflight(cfg)
