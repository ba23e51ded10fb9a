"""The http editor's `editthinker` protocol against a server built from the EditThinker
release's own FastAPI models: images, settings, busy answers retried, named errors final,
several servers with dead ones skipped, the health check, and a demo build through such
servers byte-identical to the same editors run in-process."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from editthinker_data.backends import BackendError, EditRequest, TransientBackendError, create_backend
from editthinker_data.config import BackendSpec, ConfigError, parse_config
from editthinker_data.pipeline.preflight import preflight
from tests.support.release_editor_server import ReleaseEditorServer

FAST = {"protocol": "editthinker", "backoff_s": 0.01, "timeout_s": 5, "health_timeout_s": 2}


def image(seed=0, size=(32, 32)):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype("uint8"))


def procedural(name="careful", skill=0.8):
    return create_backend("editor", BackendSpec(kind="procedural", name=name, params={"skill": skill}))


def client(base_url, name="careful", **params):
    spec = BackendSpec(kind="http", name=name, base_url=base_url, params={**FAST, **params})
    backend = create_backend("editor", spec)
    backend.setup()
    return backend


def dead_url() -> str:
    """An address nothing listens on (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


REQUESTS = [
    EditRequest(image(0), "Turn the red ball blue.", 0),
    EditRequest(image(1), "Remove the small square.", 7),
]


def test_the_test_server_answers_as_the_release_does():
    import httpx

    with (
        ReleaseEditorServer(procedural()) as server,
        ReleaseEditorServer(procedural(), ready=False) as loading,
    ):
        status = httpx.get(f"{server.base_url}/status").json()
        assert status == {"active_workers": 1, "task_queue_size": 0, "result_queue_size": 0,
                          "pending_tasks": 0, "total_gpus": 1, "system_ready": True}  # fmt: skip
        assert httpx.get(f"{server.base_url}/health").json()["gpu_manager_ready"] is True
        no_image = httpx.post(f"{server.base_url}/edit", json={"prompt": "x"})
        assert (no_image.status_code, no_image.json()) == (400, {"detail": "必须提供输入图像"})
        for route in ("/status", "/edit"):
            answer = httpx.request("GET" if route == "/status" else "POST", loading.base_url + route,
                                   json={"prompt": "x", "image": "AA=="})  # fmt: skip
            assert (answer.status_code, answer.json()) == (503, {"detail": "GPU管理器未初始化"})


def test_images_settings_and_seed_follow_the_release_contract():
    with ReleaseEditorServer(procedural(), family="omnigen2") as server:
        ed = client(
            server.base_url, num_inference_steps=30, text_guidance_scale=4.0, negative_prompt="blurry"
        )
        out = ed.run_batch(REQUESTS)
    want = procedural().run_batch(REQUESTS)  # the same editor in this process
    assert all(same(o, w) for o, w in zip(out, want, strict=True))
    assert sorted(b["seed"] for b in server.bodies) == [0, 7]
    body = server.bodies[0]
    assert body["prompt"] in {r.instruction for r in REQUESTS}
    assert (body["num_inference_steps"], body["text_guidance_scale"], body["negative_prompt"]) == (
        30,
        4.0,
        "blurry",
    )
    assert body["image_guidance_scale"] == 2.0  # not set: the server's own default
    assert body["enhance_prompt"] is False  # the instruction reaches the editor as written
    assert ed.stats() == {"requests": 2, "retries": 0, "failures": 0, "edits": 2}


def test_busy_answers_are_retried_not_final():
    busy = ["queue_full", "queue_full_200", "timeout", "503", "429"]
    with ReleaseEditorServer(procedural(), family="flux", script=busy) as server:
        ed = client(server.base_url, max_retries=len(busy))
        out = ed.run_batch(REQUESTS[:1])
    assert same(out[0], procedural().run_batch(REQUESTS[:1])[0])
    assert server.requests == len(busy) + 1 and ed.stats()["retries"] == len(busy)


def test_a_server_that_stays_busy_leaves_the_edit_for_a_rerun():
    with ReleaseEditorServer(procedural(), family="qwen", script=["queue_full"] * 3) as server:
        out = client(server.base_url, max_retries=2).run_batch(REQUESTS[:1])
    assert isinstance(out[0], TransientBackendError)  # not final: a rerun tries it again
    assert "任务队列已满" in str(out[0]) and server.requests == 3


def test_a_422_is_final_and_named():
    with ReleaseEditorServer(procedural(), family="qwen") as server:
        out = client(server.base_url, guidance_scale=9.0).run_batch(REQUESTS[:1])
    err = out[0]
    assert isinstance(err, BackendError) and not isinstance(err, TransientBackendError)
    assert "HTTP 422" in str(err) and "guidance_scale" in str(err) and "7.5" in str(err)
    assert server.requests == 0  # refused by the release's model before the route ran


@pytest.mark.parametrize(
    ("fault", "message"),
    [("failed", "HTTP 500: 图像编辑失败: cannot identify image file"), ("refused_200", "prompt refused")],
)
def test_a_named_error_fails_the_edit_for_good(fault, message):
    with ReleaseEditorServer(procedural(), family="qwen", script=[fault]) as server:
        out = client(server.base_url).run_batch(REQUESTS[:1])
    assert isinstance(out[0], BackendError) and not isinstance(out[0], TransientBackendError)
    assert message in str(out[0]) and server.requests == 1


def test_servers_share_the_work_and_a_dead_one_is_skipped():
    dead = dead_url()
    with (
        ReleaseEditorServer(procedural(), family="omnigen2") as one,
        ReleaseEditorServer(procedural(), family="omnigen2") as two,
    ):
        ed = client([dead, one.base_url, two.base_url], max_concurrency=2)
        out = ed.run_batch([EditRequest(image(k), "Turn the red ball blue.", k) for k in range(6)])
    assert all(isinstance(o, Image.Image) for o in out)
    assert (one.requests, two.requests) == (3, 3)  # round-robin over the live ones
    assert list(ed.down) == [f"{dead}/edit"] and "ConnectError" in ed.down[f"{dead}/edit"]
    assert ed.stats()[f"unreachable {dead}"] == 1 and ed.stats()["retries"] == 0


def test_a_server_lost_mid_run_is_skipped():
    with ReleaseEditorServer(procedural(), family="omnigen2") as stays:
        lost = ReleaseEditorServer(procedural(), family="omnigen2").__enter__()
        ed = client([lost.base_url, stays.base_url], max_concurrency=1)
        lost.__exit__()
        out = ed.run_batch([EditRequest(image(k), "Turn the red ball blue.", k) for k in range(4)])
    assert all(isinstance(o, Image.Image) for o in out) and stays.requests == 4
    assert ed.stats()[f"unreachable {lost.base_url}"] == 1


def test_no_server_answering_fails_preflight_naming_it():
    dead = dead_url()
    cfg = parse_config(
        {"source": {"manifest": "unused.jsonl"},
         "editors": [{"name": "omni", "kind": "http", "base_url": dead, "params": FAST}]},
        environ={},
    )  # fmt: skip
    with pytest.raises(ConfigError, match=rf"editor 'omni': no editor server answered: GET {dead}/health"):
        preflight(cfg)
    with (
        ReleaseEditorServer(procedural(), ready=False) as loading,  # /health says no model yet
        pytest.raises(ValueError, match="not loaded"),
    ):
        client(loading.base_url)


def test_endpoint_file_in_the_release_format(tmp_path):
    with ReleaseEditorServer(procedural()) as server:
        port = server.base_url.rsplit(":", 1)[1]
        listing = tmp_path / "edit_api_endpoints.txt"
        listing.write_text(f"# one server a line\n\n127.0.0.1\n{server.base_url}/\n")
        ed = client("", endpoints_file=str(listing), endpoints_port=int(port))
        assert ed.urls == [f"{server.base_url}/edit"]  # the bare address and the URL are one server
        assert isinstance(ed.run_batch(REQUESTS[:1])[0], Image.Image)


def test_bad_settings_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="settings of protocol editthinker"):
        create_backend(
            "editor", BackendSpec(kind="http", base_url="http://x:1", params={"guidance_scale": 2})
        )
    with pytest.raises(ValueError, match="protocol='release'; use native or editthinker"):
        create_backend(
            "editor", BackendSpec(kind="http", base_url="http://x:1", params={"protocol": "release"})
        )
    with pytest.raises(ValueError, match="lists no server"):
        (tmp_path / "empty.txt").write_text("# nothing\n")
        create_backend(
            "editor", BackendSpec(kind="http", params={"endpoints_file": str(tmp_path / "empty.txt")})
        )
    with pytest.raises(ValueError, match="a list of addresses is for kind http"):
        BackendSpec(kind="openai", base_url=["http://a:1/v1", "http://b:1/v1"])


@pytest.mark.slow
def test_demo_build_through_release_servers_matches_in_process(demo_build, demo_cfg, tmp_path, state_dir):
    """The demo's procedural editors behind release-contract servers (a dead address listed
    first, busy answers scripted): the build finishes and writes the same shard bytes as the
    build that ran those editors in its own actors."""
    from editthinker_data.cli.tables import print_unreachable
    from editthinker_data.cli.term import console
    from flows.build_dataset import build_dataset

    out, first = demo_build
    dead = dead_url()
    cfg = demo_cfg.model_dump()
    servers = [
        ReleaseEditorServer(
            create_backend("editor", spec, demo_cfg.seed), family="omnigen2",
            script=["queue_full", "queue_full_200", "timeout", "503"],
        )
        for spec in demo_cfg.editors
    ]  # fmt: skip
    with servers[0], servers[1]:
        for entry, server in zip(cfg["editors"], servers, strict=True):
            entry.update(
                kind="http", base_url=[dead, server.base_url],
                params={**FAST, "max_retries": 6, "max_concurrency": 4},
            )  # fmt: skip
        result = build_dataset(parse_config(cfg, environ={}).model_dump(), str(tmp_path), str(state_dir))
    strip = lambda m: {k: [(s["url"], s["sha256"]) for s in v] for k, v in m["shards"].items()}  # noqa: E731
    assert strip(result.manifest) == strip(first.manifest)
    for server in servers:
        assert server.injected == {"queue_full": 1, "queue_full_200": 1, "timeout": 1, "503": 1}
    stats = result.stats
    for spec in demo_cfg.editors:
        counters = stats["backends"][f"editor/{spec.name}"]["counters"]
        assert counters[f"unreachable {dead}"] >= 1 and counters["retries"] >= 4
    with console.capture() as printed:  # named in the build's summary
        print_unreachable(stats)
    assert f"editor/careful: {dead} did not answer" in " ".join(printed.get().split())
