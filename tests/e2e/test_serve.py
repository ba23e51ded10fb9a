"""`serve` on the local test cluster: the demo's editors (and a slow one to kill mid-request)
behind one ingress. The release's RL reward gets images through its own request; a build
whose editors are `kind: http` against the served ones writes the same trajectory shards as
the demo build that ran them in its own actors; a replica killed mid-request is retried by
the http editor and the answer is still the seed's image."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from editthinker_data.backends import EditRequest, ScoreRequest, create_backend
from editthinker_data.config import load_config
from tests.support.paths import DEMO_CONFIG, ROOT

IMAGES = sorted((ROOT / "editthinker_data" / "demo" / "source" / "images").glob("*.png"))
SLOW = {"name": "slow", "kind": "procedural", "params": {"skill": 0.7, "latency_s": 2.0}, "batch_size": 2}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_config():
    """The demo config plus a slow editor: the demo's editors are served exactly as built."""
    cfg = load_config(DEMO_CONFIG)
    data = cfg.model_dump()
    data["editors"].append({**SLOW, "resources": {"num_cpus": 0}})  # the cluster keeps its CPUs for a build
    return type(cfg).model_validate(data)


@pytest.fixture(scope="module")
def server(ray_cluster):
    from editthinker_data.distributed import serve as served

    cfg = served_config()
    url = served.start(cfg, "127.0.0.1", free_port(), scorer=True)
    yield url, cfg
    served.stop(shutdown_serve=True)


def b64(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def release_reward_request(endpoint: str, instruction: str, image: Image.Image, model_config: dict):
    """What the release's `call_edit_model_api` (train/EasyR1/verl/reward_function/
    edit_thinker_reward.py) sends and reads, step for step; its caller adds the item's seed
    (0 for every item) to the model's config."""
    request_data = {"image": b64(image), "prompt": instruction, **model_config}
    response = requests.post(f"{endpoint}/edit", json=request_data, timeout=65)
    result = response.json()
    if result.get("success"):
        return Image.open(io.BytesIO(base64.b64decode(result["edited_image"]))), result
    return None, result


# The release reward's `get_model_config`, all three models (note its `num_inference_step`).
MODEL_CONFIGS = {
    "omnigen2": {"num_inference_step": 50, "text_guidance_scale": 5.0, "image_guidance_scale": 1.5,
                 "width": 1024, "height": 1024, "negative_prompt": "", "enhance_prompt": False},
    "flux-kontext-dev": {"num_inference_step": 28, "guidance_scale": 2.5, "width": 1024, "height": 1024,
                         "enhance_prompt": False},
    "qwen-image-edit": {"num_inference_step": 50, "guidance_scale": 5.0, "width": 1024, "height": 1024,
                        "enhance_prompt": False},
}  # fmt: skip


def test_the_release_reward_gets_images_and_the_seed_decides_them(server):
    url, cfg = server
    source = Image.open(IMAGES[3]).convert("RGB")
    careful = next(e for e in cfg.editors if e.name == "careful")
    built = create_backend("editor", careful, cfg.seed).run_batch(
        [EditRequest(source, "make the circle blue", 0), EditRequest(source, "make the circle blue", 7)]
    )  # what a build's actor makes of the same request
    for model, model_config in MODEL_CONFIGS.items():
        edited, result = release_reward_request(
            f"{url}/careful", "make the circle blue", source, {**model_config, "seed": 0}
        )
        assert result["success"] is True, (model, result)
        assert edited.size == source.size and result["error"] is None and result["seed"] == 0
        assert np.array_equal(np.asarray(edited.convert("RGB")), np.asarray(built[0]))
    _, unseeded = release_reward_request(f"{url}/careful", "make the circle blue", source, {})
    assert unseeded["success"] is True and isinstance(unseeded["seed"], int)  # drawn and said, as there
    # Our contract: the same.
    answer = requests.post(
        f"{url}/careful/v1/edit", json={"image": b64(source), "instruction": "make the circle blue", "seed": 7},
        timeout=60,
    ).json()  # fmt: skip
    got = Image.open(io.BytesIO(base64.b64decode(answer["image"])))
    assert np.array_equal(np.asarray(got.convert("RGB")), np.asarray(built[1]))
    # Several editors: the root has no default one, and bad requests are named.
    root = requests.post(f"{url}/edit", json={"image": b64(source), "prompt": "x"}, timeout=30)
    assert root.status_code == 404 and "careful" in root.json()["detail"]
    bad = requests.post(f"{url}/careful/edit", json={"image": "not base64!", "prompt": "x"}, timeout=30)
    assert bad.status_code == 400 and "base64" in bad.json()["detail"]
    missing = requests.post(f"{url}/careful/edit", json={"image": b64(source)}, timeout=30)
    assert missing.status_code == 422 and "prompt" in missing.text


def test_health_and_status_report_replicas_and_batches(server):
    url, _ = server
    health = requests.get(f"{url}/health", timeout=30)
    assert health.status_code == 200 and health.json()["ready"] is True
    assert health.json()["replicas"] == {"careful": 1, "sloppy": 1, "slow": 1}
    assert requests.get(f"{url}/sloppy/health", timeout=30).json()["replicas"] == {"sloppy": 1}
    # Eight requests at once on a batch_size-4 editor: they arrive as full batches.
    source = b64(Image.open(IMAGES[5]))
    before = requests.get(f"{url}/sloppy/status", timeout=30).json()["editors"]["sloppy"]
    results = [None] * 8

    def post(i):
        body = {"image": source, "instruction": f"make the square red {i}", "seed": i}
        results[i] = requests.post(f"{url}/sloppy/v1/edit", json=body, timeout=60).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 8
    status = requests.get(f"{url}/status", timeout=30).json()
    sloppy = status["editors"]["sloppy"]
    assert sloppy["replicas"] == {"RUNNING": 1} and sloppy["batch_size"] == 4
    assert sloppy["edits"] - before["edits"] == 8
    assert sloppy["batches"] - before["batches"] < 8  # grouped, not one by one
    assert status["active_workers"] == 3 and status["system_ready"] is True


def test_the_scorer_scores_as_in_a_build(server):
    url, cfg = server
    source, edited = Image.open(IMAGES[2]).convert("RGB"), Image.open(IMAGES[4]).convert("RGB")
    body = {"source": b64(source), "edited": b64(edited), "instruction": "make the circle blue"}
    got = requests.post(f"{url}/score", json=body, timeout=60).json()
    want = create_backend("scorer", cfg.scorer, cfg.seed).run_batch(
        [ScoreRequest(source, edited, "make the circle blue")]
    )[0]
    assert got == {"semantic": want.semantic, "quality": want.quality, "overall": want.overall,
                   "details": want.details}  # fmt: skip


@pytest.mark.slow(seconds=40)
def test_a_replica_killed_mid_request_is_retried_by_the_client(server):
    import ray

    url, cfg = server
    source = Image.open(IMAGES[7]).convert("RGB")
    client = create_backend(
        "editor",
        type(cfg.editors[0]).model_validate(
            {"name": "slow", "kind": "http", "base_url": f"{url}/slow",
             "params": {"path": "/v1/edit", "max_retries": 12, "backoff_s": 0.5, "timeout_s": 60}}
        ),
    )  # fmt: skip
    client.setup()
    out = []
    worker = threading.Thread(
        target=lambda: out.extend(client.run_batch([EditRequest(source, "move the circle left", 11)]))
    )
    worker.start()
    deadline = time.monotonic() + 30
    while requests.get(f"{url}/slow/status", timeout=30).json()["editors"]["slow"]["in_flight"] < 1:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.05)
    time.sleep(0.5)  # inside the replica's 2 s batch
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "#slow#" in a["name"]]
    assert len(replicas) == 1, replicas
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert client.stats()["retries"] >= 1 and client.stats()["edits"] == 1
    slow = next(e for e in cfg.editors if e.name == "slow")
    direct = create_backend("editor", slow, cfg.seed).run_batch(
        [EditRequest(source, "move the circle left", 11)]
    )
    assert np.array_equal(np.asarray(out[0]), np.asarray(direct[0]))


@pytest.mark.slow(seconds=40)
def test_a_build_through_serve_equals_the_direct_build(server, demo_build, tmp_path, state_dir):
    """The second config's editors are `kind: http` at the served ones (same names): its
    trajectory shards are byte for byte the demo build's, whose editors ran in its actors."""
    from flows.build_dataset import build_dataset

    url, _ = server
    _, clean = demo_build
    data = load_config(DEMO_CONFIG).model_dump()
    data["editors"] = [
        {"name": e["name"], "kind": "http", "ratio": e["ratio"], "base_url": f"{url}/{e['name']}",
         "batch_size": e["batch_size"], "resources": e["resources"], "params": {"path": "/v1/edit"}}
        for e in data["editors"]
    ]  # fmt: skip
    result = build_dataset(data, str(tmp_path / "via-serve"), str(state_dir))
    strip = lambda m: [(s["url"].rsplit("/", 1)[-1], s["sha256"]) for s in m["shards"]["trajectories"]]  # noqa: E731
    assert strip(result.manifest) == strip(clean.manifest)
    assert result.manifest["totals"]["trajectories"] == clean.manifest["totals"]["trajectories"] > 0


@pytest.mark.slow(seconds=40)
def test_the_command_serves_one_editor_at_the_root_behind_a_token(tmp_path):
    """`editthinker-data serve` as a user runs it: a readiness line with the URL, /health
    open, every other route behind the bearer token, Ctrl-C stops it cleanly."""
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PREFECT_"))}
    env.update(SERVE_TOKEN="s3cret", COLUMNS="200")
    args = [sys.executable, "-m", "editthinker_data.cli", "serve", str(DEMO_CONFIG), "--editor", "careful",
            "--port", str(port), "--token-env", "SERVE_TOKEN", "--state-dir", str(tmp_path / "st")]  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        # Started with SIGINT ignored, as a shell without job control starts a background job:
        # Ctrl-C must still stop it (Python raises no KeyboardInterrupt then).
        ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, preexec_fn=ignore_sigint
        )
    try:
        deadline = time.monotonic() + 240
        while "ready: EDIT_API_ENDPOINT=" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        assert f"EDIT_API_ENDPOINT={url} " in log.read_text()
        assert requests.get(f"{url}/health", timeout=30).status_code == 200
        assert requests.get(f"{url}/status", timeout=30).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.get(f"{url}/status", headers=wrong, timeout=30).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert requests.get(f"{url}/status", headers=auth, timeout=30).json()["system_ready"] is True
        source = Image.open(IMAGES[0])
        body = {"image": b64(source), "prompt": "make it darker", "seed": 1, "width": 1024}
        assert requests.post(f"{url}/edit", json=body, timeout=60).status_code == 401
        answer = requests.post(f"{url}/edit", json=body, headers=auth, timeout=60).json()
        assert answer["success"] is True and answer["seed"] == 1 and answer["editor"] == "careful"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    assert code == 0, log.read_text()[-3000:]
    assert "stopped" in log.read_text()


def test_deployments_take_the_build_s_replicas_resources_and_batches():
    from editthinker_data.config import BackendSpec, ConfigError, parse_config
    from editthinker_data.distributed.serve import deployment_options

    fixed = BackendSpec(kind="procedural", name="e", num_actors=3, batch_size=16,
                        resources={"num_cpus": 2, "num_gpus": 1})  # fmt: skip
    options = deployment_options("editor", fixed)
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    assert options["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 1}
    assert options["max_ongoing_requests"] >= 2 * 16  # a running batch and a full one behind it
    scaled = deployment_options("editor", fixed.model_copy(update={"min_replicas": 1}))
    assert scaled["num_replicas"] == "auto"
    assert (
        scaled["autoscaling_config"]["min_replicas"] == 1
        and scaled["autoscaling_config"]["max_replicas"] == 3
    )
    with pytest.raises(ConfigError, match="min_replicas=4 is above num_actors=3"):
        parse_config({"source": {"manifest": "x.jsonl"},
                      "editors": [{"name": "e", "num_actors": 3, "min_replicas": 4}]}, environ={})  # fmt: skip


@pytest.mark.slow(seconds=40)
def test_a_tiny_diffusers_editor_answers_the_release_reward(server, tmp_path):
    """FLUX Kontext (the release reward's default editor), tiny and random on CPU, as a
    second application beside the demo's: the reward's request gets the image a build's
    actor makes for that seed, at the input's size. (Against a build's actor, not this
    process: Ray gives both one CPU thread, and a float sum over more threads differs in
    its last bits.)"""
    import ray
    from ray import serve

    from editthinker_data.backends.editors.tiny_models import save_tiny_editors
    from editthinker_data.config import parse_config
    from editthinker_data.distributed.pools import Pool
    from editthinker_data.distributed.serve import application

    models = save_tiny_editors(tmp_path, ["flux-kontext"])
    cfg = parse_config(
        {"source": {"manifest": "unused.jsonl"},
         "editors": [
             {"name": "flux-kontext", "kind": "flux_kontext", "model": str(models["flux-kontext"]),
              "params": {"steps": 2, "pixels": 4096, "dtype": "float32"}, "batch_size": 2},
         ]},
        environ={},
    )  # fmt: skip
    url, _ = server
    serve.run(application(cfg), name="tiny", route_prefix="/tiny")
    try:
        source = Image.open(IMAGES[9]).convert("RGB").resize((56, 40))
        for spec, model in zip(cfg.editors, ("flux-kontext-dev",), strict=True):
            edited, result = release_reward_request(
                f"{url}/tiny/{spec.name}", "make the sky red", source, {**MODEL_CONFIGS[model], "seed": 0}
            )
            assert result["success"] is True, result
            assert edited.size == source.size
            pool = Pool("editor", spec.name, spec, cfg.seed)  # a build's actor, as the build starts it
            pool.start()
            try:
                built = ray.get(
                    pool.actors[0].run_counted.remote([EditRequest(source, "make the sky red", 0)])
                )[0][0]
            finally:
                pool.stop()
            assert np.array_equal(np.asarray(edited.convert("RGB")), np.asarray(built)), spec.name
    finally:
        serve.delete("tiny")
