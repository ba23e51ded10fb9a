"""Diffusers editor families, each a tiny random pipeline saved like a checkpoint and run
for 2 steps on CPU through the real backend class and through the Ray actor pool. The
families come from `backends.REGISTRY` (each builds its own tiny pipeline), so a new
family is tested here from its registry line alone."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")  # the [models] extra; .ci/run installs it

from editthinker_data.backends import BackendError, BackendFatal, EditRequest, create_backend  # noqa: E402
from editthinker_data.backends.editors.diffusers_base import plan_size, resolve_model  # noqa: E402
from editthinker_data.backends.editors.tiny_models import (  # noqa: E402
    save_tiny_editors,
    tiny_editor_specs,
    tiny_families,
    tiny_name,
)
from editthinker_data.config import BackendSpec, ConfigError, parse_config  # noqa: E402

FAMILIES = tiny_families()  # kind -> class, from the registry
PIXELS = 48 * 48


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny_editors(tmp_path_factory.mktemp("tiny-editors"))


def source(w=56, h=40, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8"))


def editor(tiny, kind, **params):
    # the generic `diffusers` kind runs InstructPix2Pix's pipeline, named by its params
    folder = tiny_name(kind) if kind in FAMILIES else "instruct-pix2pix"
    family = FAMILIES[kind].tiny_params(PIXELS) if kind in FAMILIES else {}
    spec = BackendSpec(
        kind=kind, model=str(tiny[folder]), params={"steps": 2, "pixels": PIXELS, **family, **params}
    )
    backend = create_backend("editor", spec)
    backend.setup()
    return backend


def pixels(img):
    return np.asarray(img, dtype=np.int16)


@pytest.mark.parametrize(
    ("size", "mode", "want"),
    [
        ((1000, 500), "area", (1440, 720)),  # scaled up to about 1024^2, multiples of 16
        ((4000, 3000), "area", (1168, 880)),
        ((300, 200), "max_pixels", (288, 192)),  # never scaled up, only rounded down
        ((4000, 3000), "max_pixels", (1168, 880)),
        ((300, 203), "source", (288, 192)),
        ((10, 10), "area", (1024, 1024)),
        ((5000, 10), "max_pixels", (4992, 16)),  # an extreme aspect keeps at least one block
    ],
)
def test_resolution_policy(size, mode, want):
    w, h = plan_size(*size, pixels=1024 * 1024, multiple_of=16, mode=mode)
    assert (w, h) == want
    assert w % 16 == 0 and h % 16 == 0 and w * h <= 1024 * 1024 + 16 * max(w, h)


def test_families_come_from_the_registry():
    from editthinker_data.backends import REGISTRY
    from editthinker_data.backends.editors.diffusers_base import DiffusersEditor

    assert {"flux_kontext", "qwen_image_edit", "qwen_image_edit_plus", "instruct_pix2pix"} <= set(FAMILIES)
    assert set(FAMILIES) < set(REGISTRY["editor"]) and "diffusers" not in FAMILIES
    for kind, cls in FAMILIES.items():
        assert issubclass(cls, DiffusersEditor) and cls.pipeline_class, kind
        own = cls.save_tiny.__func__ is not DiffusersEditor.save_tiny.__func__
        assert own, f"{kind}: {cls.__name__} needs a save_tiny classmethod"


def test_tiny_config_file_matches_the_registry_specs():
    """The editors written out in configs/tiny-diffusers.yaml are what `tiny_editor_specs`
    gives their families (the end-to-end test builds every family from the latter)."""
    import yaml

    from tests.support.paths import ROOT

    data = yaml.safe_load((ROOT / "configs" / "tiny-diffusers.yaml").read_text())
    listed = {e["name"]: e for e in data["editors"]}
    assert listed and set(listed) <= {tiny_name(k) for k in FAMILIES}
    for spec in tiny_editor_specs({name: e["model"] for name, e in listed.items()}):
        assert listed[spec["name"]] == spec, spec["name"]


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_family_edits_are_seeded_and_batch_independent(tiny, kind):
    ed = editor(tiny, kind)
    img = source()
    reqs = [
        EditRequest(img, "make the square blue", 0),
        EditRequest(img, "add a cat", 1),
        EditRequest(img, "make the square blue", 0),
    ]
    out = ed.run_batch(reqs)
    assert all(isinstance(o, Image.Image) and o.size == img.size for o in out)  # back at the source size
    assert np.array_equal(pixels(out[0]), pixels(out[2]))  # same seed and instruction: same image
    assert not np.array_equal(pixels(out[0]), pixels(out[1]))
    alone = ed.run_batch([reqs[1]])[0]
    assert np.abs(pixels(alone) - pixels(out[1])).max() <= 2  # a request's image does not depend on its batch
    other_seed = ed.run_batch([EditRequest(img, "make the square blue", 7)])[0]
    assert not np.array_equal(pixels(other_seed), pixels(out[0]))
    stats = ed.stats()
    assert stats["loads"] == 1 and stats["edits"] == 5 and stats["failures"] == 0


def test_same_config_gives_the_same_images_in_a_new_process_state(tiny):
    img = source(seed=3)
    first = editor(tiny, "flux_kontext").run_batch([EditRequest(img, "turn it red", 5)])[0]
    again = editor(tiny, "flux_kontext").run_batch([EditRequest(img, "turn it red", 5)])[0]
    assert np.array_equal(pixels(first), pixels(again))


def test_model_size_output_and_working_size(tiny):
    ed = editor(tiny, "instruct_pix2pix", output_size="model", pixels=32 * 32, resize="area")
    out = ed.run_batch([EditRequest(source(64, 32), "make it blue", 0)])[0]
    assert out.size == (40, 16)  # at most 32*32 pixels at 2:1 (45x22), rounded down to multiples of 8


def test_qwen_condition_area_is_a_setting_and_restored(tiny):
    mod = importlib.import_module("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit")
    original = mod.calculate_dimensions
    img = source()
    small = editor(tiny, "qwen_image_edit", condition_pixels=32 * 32).run_batch(
        [EditRequest(img, "add a hat", 0)]
    )[0]
    large = editor(tiny, "qwen_image_edit", condition_pixels=64 * 64).run_batch(
        [EditRequest(img, "add a hat", 0)]
    )[0]
    assert not np.array_equal(pixels(small), pixels(large))
    assert mod.calculate_dimensions is original
    plus = importlib.import_module("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus")
    editor(tiny, "qwen_image_edit_plus").run_batch([EditRequest(img, "add a hat", 0)])
    assert (plus.CONDITION_IMAGE_SIZE, plus.VAE_IMAGE_SIZE) == (384 * 384, 1024 * 1024)


def test_generic_family_by_pipeline_class(tiny):
    ed = editor(
        tiny,
        "diffusers",
        pipeline_class="StableDiffusionInstructPix2PixPipeline",
        call_kwargs={"image_guidance_scale": 1.2},
    )
    out = ed.run_batch([EditRequest(source(), "make it blue", 0)])
    assert isinstance(out[0], Image.Image)
    with pytest.raises(ValueError, match=r"call_kwargs \['no_such_arg'\] are not arguments"):
        editor(
            tiny,
            "diffusers",
            pipeline_class="StableDiffusionInstructPix2PixPipeline",
            call_kwargs={"no_such_arg": 1},
        )
    with pytest.raises(ValueError, match="name a diffusers pipeline class"):
        create_backend(
            "editor", BackendSpec(kind="diffusers", model="x/y", params={"pipeline_class": "os.system"})
        )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"dtype": "float8"}, "dtype='float8'; use one of"),
        ({"resize": "stretch"}, "resize='stretch'; use one of"),
        ({"steps": 0}, "steps=0 must be at least 1"),
        ({"pixels": 10}, "must hold at least one"),
        ({"guidance": 3}, "unexpected"),
    ],
)
def test_bad_settings_fail_at_config_time(params, match):
    with pytest.raises((ValueError, TypeError, ConfigError), match=match):
        create_backend(
            "editor",
            BackendSpec(kind="flux_kontext", model="black-forest-labs/FLUX.1-Kontext-dev", params=params),
        )


def test_missing_model_fails_fast_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"not in the local Hugging Face cache .*`hf download"):
        resolve_model(
            "black-forest-labs/FLUX.1-Kontext-dev",
            cache_dir=str(tmp_path / "hub"),
            revision=None,
            download=False,
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model_index.json"):
        resolve_model(str(tmp_path / "empty"), cache_dir=None, revision=None, download=False)
    cfg = parse_config(
        {
            "source": {"manifest": "unused.jsonl"},
            "editors": [{"name": "k", "kind": "flux_kontext", "model": str(tmp_path / "empty")}],
        },
        environ={},
    )
    from editthinker_data.pipeline.preflight import preflight

    with pytest.raises(ConfigError, match="editor 'k': model folder .* holds no model_index.json"):
        preflight(cfg)


def test_hub_cache_layout_is_found_offline(tiny, tmp_path):
    """A repo id resolves from a Hugging Face cache folder without the network."""
    import shutil

    repo = tmp_path / "hub" / "models--acme--tiny-kontext"
    snap = repo / "snapshots" / ("a" * 40)
    shutil.copytree(tiny["flux-kontext"], snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    path = resolve_model("acme/tiny-kontext", cache_dir=str(tmp_path / "hub"), revision=None, download=False)
    assert path == str(snap)
    ed = create_backend(
        "editor",
        BackendSpec(
            kind="flux_kontext",
            model="acme/tiny-kontext",
            params={"steps": 1, "pixels": 1024, "cache_dir": str(tmp_path / "hub")},
        ),
    )
    ed.setup()
    assert isinstance(ed.run_batch([EditRequest(source(), "make it red", 0)])[0], Image.Image)


def test_oom_splits_the_batch_and_cuda_errors_end_the_actor(tiny, monkeypatch):
    import torch

    ed = editor(tiny, "instruct_pix2pix")
    real = ed.pipe.__call__
    calls = []

    def flaky(*args, **kwargs):
        calls.append(len(kwargs["prompt"]))
        if len(kwargs["prompt"]) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        if kwargs["prompt"] == ["poison"]:
            raise RuntimeError("cannot handle this prompt")
        return real(*args, **kwargs)

    monkeypatch.setattr(type(ed.pipe), "__call__", lambda self, *a, **k: flaky(*a, **k))
    img = source()
    out = ed.run_batch([EditRequest(img, "a", 0), EditRequest(img, "poison", 0), EditRequest(img, "b", 1)])
    assert calls == [3, 1, 1, 1]
    assert isinstance(out[0], Image.Image) and isinstance(out[2], Image.Image)
    assert isinstance(out[1], BackendError) and "cannot handle this prompt" in str(out[1])
    assert ed.stats()["oom_splits"] == 1 and ed.stats()["failures"] == 1

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(type(ed.pipe), "__call__", lambda self, *a, **k: broken())
    with pytest.raises(BackendFatal, match="illegal memory access"):
        ed.run_batch([EditRequest(img, "a", 0)])


@pytest.mark.slow(seconds=90)
def test_actor_pool_loads_weights_once_per_actor(tiny, ray_cluster):
    from editthinker_data.core.schema import SourcePair
    from editthinker_data.distributed.drive import run_rollouts
    from editthinker_data.distributed.pools import Workers
    from editthinker_data.pipeline.loop import Names, rollout

    cfg = parse_config(
        {
            "source": {"manifest": "unused.jsonl"},
            "editors": [
                {"name": "kontext", "kind": "flux_kontext", "model": str(tiny["flux-kontext"]), "num_actors": 2,
                 "batch_size": 2, "params": {"steps": 2, "pixels": 1024}},
            ],
        },
        environ={},
    )  # fmt: skip
    workers = Workers(cfg)
    workers.start()
    img = source(48, 48)
    pairs = [
        SourcePair(f"p{i}", "Turn the red ball blue.", img, "other", "sha", editor="kontext")
        for i in range(8)
    ]
    done = {}
    try:
        run_rollouts(
            workers, pairs, lambda p: rollout(p, Names("procedural", "procedural"), max_turns=2, seed=0),
            lambda i, t: done.__setitem__(i, t), max_in_flight=8, retries=1,
        )  # fmt: skip
        info = [a for a in workers.info() if a["role"] == "editor"]
    finally:
        workers.stop()
    assert sorted(done) == list(range(8)) and all(t.turns for t in done.values())
    assert len(info) == 2 and {a["pid"] for a in info}.__len__() == 2
    assert sum(a["counters"]["edits"] for a in info) >= 8
    for a in info:  # many batches per actor, one model load each
        assert a["setups"] == 1 and a["counters"]["loads"] == 1 and a["calls"] >= 2


@pytest.mark.slow(seconds=100)
def test_tiny_diffusers_build_end_to_end(tiny, ray_cluster, state_dir, tmp_path):
    """configs/tiny-diffusers.yaml through Prefect and Ray, with every registered family's
    tiny model saved here."""
    import json

    import yaml

    from editthinker_data.config import load_config
    from editthinker_data.io.storage import open_storage
    from editthinker_data.release.report import verify
    from flows.build_dataset import build_dataset
    from tests.support.paths import ROOT

    data = yaml.safe_load((ROOT / "configs" / "tiny-diffusers.yaml").read_text())
    data["editors"] = tiny_editor_specs(tiny)  # every registered family, not only the file's
    folders = set(tiny)
    # Pairs go round robin over the editors within each of the 5 task types: a quota of at
    # least one pair per editor gives every family pairs (the demo holds at least 6 a type).
    quota = max(data["source"]["per_type_quota"], len(folders))
    assert 4 <= len(folders) <= 6, "the demo source has pairs for at most 6 editors; raise its size"
    data["source"]["per_type_quota"] = quota
    data["source"]["manifest"] = str(ROOT / "editthinker_data" / "demo" / "source" / "manifest.jsonl")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    cfg = load_config(tmp_path / "cfg.yaml")
    out = tmp_path / "build"
    result = build_dataset(cfg.model_dump(), str(out), str(state_dir))
    stats = json.loads((out / "stats.json").read_text())
    for name, s in stats["stages"].items():
        assert s["input"] == s["kept"] + sum(s["filtered"].values()) + sum(s["failed"].values()), name
    gen = stats["stages"]["generate"]
    assert gen["input"] == stats["stages"]["pool"]["kept"] == 5 * quota and gen["kept"] == 5 * quota
    editors = {a["name"]: a for a in result.stats["actors"] if a["role"] == "editor"}
    assert set(editors) == folders
    for a in editors.values():  # several batches each, the weights loaded once
        assert (
            a["setups"] == 1
            and a["counters"]["loads"] == 1
            and a["calls"] >= 2
            and a["counters"]["edits"] >= 5
        )
    turns = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines() if '"generate"' in x]
    assert not turns
    assert verify(open_storage(str(out)))["mismatched"] == []
