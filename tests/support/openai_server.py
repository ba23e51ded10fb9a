"""A local OpenAI-compatible chat completions server for tests and benchmarks.

Its "model" is the procedural expert and scorer: it decodes the images from the data URLs,
reads the instructions from our prompt templates, and answers in the released JSON formats
(VIEScore's two calls: the semantic one by the procedural judge, the quality one, on the
edited image alone, from its residual noise). Latency and faults are injectable: 429 with Retry-After, 500, dropped
connections, a hang longer than the client's timeout, a body cut off mid-JSON, malformed
answers, answers truncated at max_tokens. `fail_after=N` is an outage: every request after
the N-th loses its connection until `fail_after` is set back to None, or, with `outage_s`, for
that many seconds from the first request it refused (`outage_from`, `outage_until`: wall clock). `babble` stands in for a
tiny random model at temperature 0: every answer is gibberish that depends on the request
alone (the same request, the same answer), finished with `babble` ("stop" or "length").
`max_concurrency` caps the requests it serves at once, as a hosted API's limit does: a request
beyond the cap waits for a slot (`over_capacity="wait"`) or is answered 429 with Retry-After
(`"429"`); `in_flight_peak` and `rejected` count what the cap did.

It answers the conversation's first user turn (the question with its images); the turns a
client adds when it asks again (its earlier answer, a correction) change nothing here."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import threading
import time

import numpy as np
from PIL import Image

from editthinker_data.backends import RefineRequest
from editthinker_data.backends.experts.procedural import ProceduralExpert
from editthinker_data.backends.procedural.judge import _residual_noise, judge
from tests.support.loopback_http import Handler, LoopbackServer

FAULTS = ("429", "500", "reset", "timeout", "badjson", "malformed", "truncated")


def _images(message) -> list[Image.Image]:
    out = []
    for part in message["content"]:
        if part.get("type") == "image_url":
            data = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            out.append(Image.open(io.BytesIO(data)).convert("RGB"))
    return out


def _text(message) -> str:
    return next(p["text"] for p in message["content"] if p.get("type") == "text")


REFINE = " Keep everything else unchanged."
VIE_DELIMITER = "||V^=^V||"


def quality_of(image: Image.Image) -> tuple[float, float]:
    """The server's [naturalness, artifacts] for one image: both fall with its residual
    noise (as the procedural judge measures it), artifacts twice as fast."""
    noise = _residual_noise(np.asarray(image, dtype=np.float32))
    return round(10 * max(0.0, 1 - noise / 24), 2), round(10 * max(0.0, 1 - noise / 12), 2)


def babble_answer(body: dict) -> str:
    """Gibberish that is a function of the whole request (messages, seed, sampling)."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return " ".join(digest[i : i + 6] for i in range(0, 48, 6))


def answer(body: dict, canned: bool = False, canned_turns: int = 1) -> str:
    message = body["messages"][0]
    if canned:  # no model work at all: the server costs its latency only
        text = _text(message)
        if (
            "image-editing critic" in text
        ):  # satisfied once the instruction was refined canned_turns - 1 times
            previous = re.search(r"Instruction the editor was given: (.*)\n", text).group(1)
            done = previous.count(REFINE) + 1 >= canned_turns
            return json.dumps({"is_satisfied": done, "reason": "fine" if done else "not yet",
                               "new_rewritten_prompt": previous if done else previous + REFINE})  # fmt: skip
        if "Editing instruction:" in text:  # VIEScore's semantic call (ours or its own wording)
            return json.dumps({"score": [8, 9], "reasoning": "fine"})
        if sum(p.get("type") == "image_url" for p in message["content"]) == 1:  # its quality call
            return json.dumps({"score": [9, 7], "reasoning": "fine"})
        return json.dumps({"reasoning": "fine", "score": [8, 9, 9, 9]})
    text, images = _text(message), _images(message)
    if len(images) == 1:  # VIEScore's quality call sees the edited image alone
        return (
            VIE_DELIMITER
            + "\n"
            + json.dumps({"score": list(quality_of(images[0])), "reasoning": "seen"})
            + "\n"
            + VIE_DELIMITER
        )
    source, edited = images
    semantic = re.search(r"Editing instruction: (.*)", text)
    if semantic:
        _, _, d = judge(source, edited, semantic.group(1)).scores()
        scores = [round(d["success"], 2), round(d["no_over_editing"], 2)]
        return (
            "Here is my rating.\n```json\n" + json.dumps({"score": scores, "reasoning": "measured"}) + "\n```"
        )
    if "thinker of an image-editing loop" in text:
        original = re.search(r"Original instruction: (.*)\n", text).group(1)
        previous = re.search(r"Previous instruction: (.*)\n", text).group(1)
        r = ProceduralExpert().refine(RefineRequest(source, edited, original, previous))
        semantic, quality, _ = judge(source, edited, original).scores()
        score = json.dumps({"semantic": round(semantic, 2), "quality": round(quality, 2)})
        return f"<think>{r.reasoning}</think><score>{score}</score><answer>{previous if r.stop else r.instruction}</answer>"
    if "image-editing critic" in text:
        original = re.search(r"Original instruction: (.*)\n", text).group(1)
        previous = re.search(r"Instruction the editor was given: (.*)\n", text).group(1)
        r = ProceduralExpert().refine(RefineRequest(source, edited, original, previous))
        return json.dumps(
            {"is_satisfied": r.stop, "reason": r.reasoning, "new_rewritten_prompt": r.instruction}
        )
    instruction = re.search(r"Instruction: (.*)\n", text).group(1)
    _, _, d = judge(source, edited, instruction).scores()
    scores = [round(d[k], 2) for k in ("success", "no_over_editing", "naturalness", "no_artifacts")]
    return "```json\n" + json.dumps({"reasoning": "measured against the intent", "score": scores}) + "\n```"


class ChatServer:
    def __init__(
        self,
        latency_s: float = 0.0,
        fault_rate: float = 0.0,
        faults=FAULTS,
        seed: int = 0,
        canned: bool = False,
        hang_s: float = 2.0,
        canned_turns: int = 1,
        fail_after: int | None = None,
        babble: str | None = None,
        outage_s: float | None = None,
        max_concurrency: int | None = None,
        over_capacity: str = "wait",
        retry_after_s: float = 0.05,
        keep_bodies: bool = True,
    ):
        self.keep_bodies = keep_bodies  # off for long benchmarks: every body holds its images
        if over_capacity not in ("wait", "429"):
            raise ValueError(f"over_capacity={over_capacity!r}: use 'wait' or '429'")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency={max_concurrency} must be 1 or more")
        self.max_concurrency = max_concurrency
        self.over_capacity = over_capacity
        self.retry_after_s = retry_after_s
        self.slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self.in_flight = 0
        self.in_flight_peak = 0
        self.rejected = 0
        self.fail_after = fail_after
        self.outage_s = outage_s
        self.outage_from: float | None = None
        self.outage_until: float | None = None
        self.babble = babble
        self.canned = canned
        self.canned_turns = canned_turns
        self.hang_s = hang_s  # the "timeout" fault: longer than the client waits
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests = 0
        self.bodies: list[dict] = []  # every request's JSON body, in arrival order
        self.auth: list[str] = []
        self.peers: set[tuple] = set()  # client (host, port) pairs: one per connection opened
        self.injected = dict.fromkeys(FAULTS, 0)
        server = self

        class ChatHandler(Handler):
            def do_POST(self):
                body = json.loads(self.read_body())
                if server.slots is None:
                    return self.serve(body)
                if not server.slots.acquire(blocking=server.over_capacity == "wait"):
                    with server.lock:
                        server.rejected += 1
                    retry = [("Retry-After", f"{server.retry_after_s:g}")]
                    return self.reply(429, b'{"error": {"message": "too many requests"}}', headers=retry)
                with server.lock:
                    server.in_flight += 1
                    server.in_flight_peak = max(server.in_flight_peak, server.in_flight)
                try:
                    self.serve(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                    server.slots.release()

            def serve(self, body: dict) -> None:
                if self.path != "/v1/chat/completions":
                    return self.reply(404, b"")
                with server.lock:
                    server.requests += 1
                    if server.keep_bodies:
                        server.bodies.append(body)
                    server.peers.add(self.client_address)
                    if "Authorization" in self.headers:
                        server.auth.append(self.headers["Authorization"])
                    fault = None
                    down = server.fail_after is not None and server.requests > server.fail_after
                    if down:
                        now = time.time()
                        if server.outage_from is None:
                            server.outage_from = now
                            if server.outage_s is not None:
                                server.outage_until = now + server.outage_s
                        down = server.outage_until is None or now < server.outage_until
                    if down:
                        fault = "reset"
                    elif server.rng.random() < server.fault_rate:  # kinds in turn, so every kind shows up
                        fault = server.faults[sum(server.injected.values()) % len(server.faults)]
                        server.injected[fault] += 1
                if server.latency_s:
                    time.sleep(server.latency_s)
                if fault == "reset":
                    return self.drop_connection()
                if fault == "timeout":
                    time.sleep(server.hang_s)
                    self.close_connection = True
                    return
                if fault in ("429", "500"):
                    retry = [("Retry-After", "0.05")] if fault == "429" else []
                    return self.reply(int(fault), b'{"error": {"message": "try later"}}', headers=retry)
                if server.babble:
                    content, finish = babble_answer(body), server.babble
                else:
                    content = answer(body, server.canned, server.canned_turns)
                    finish = "length" if fault == "truncated" else "stop"
                if fault == "malformed":
                    content = "I think the edit is mostly fine, but " + content[:10]
                elif fault == "truncated":
                    content = content[: len(content) // 2]
                payload = json.dumps(
                    {
                        "id": "cmpl-test",
                        "object": "chat.completion",
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": finish,
                            }
                        ],
                        "usage": {"prompt_tokens": 1000, "completion_tokens": len(content) // 4},
                    }
                ).encode()
                if fault == "badjson":  # a 200 whose body stops mid-JSON
                    payload = payload[: len(payload) // 2]
                self.reply(200, payload)

        self.httpd = LoopbackServer(ChatHandler)

    @property
    def base_url(self) -> str:
        return f"{self.httpd.url}/v1"

    def __enter__(self) -> ChatServer:
        self.httpd.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.stop()

    def counters(self) -> dict[str, int]:
        with self.lock:
            return {
                "requests": self.requests,
                "rejected": self.rejected,
                "in_flight_peak": self.in_flight_peak,
            }


def _serve(conn, kwargs) -> None:
    with ChatServer(**kwargs) as server:
        conn.send(server.base_url)
        conn.recv()  # until the parent says stop
        conn.send(server.counters())


class ChatServerProcess:
    """The same server in a child process, so that its work does not share the caller's
    GIL (benchmarks: the client's concurrency is measured, not the server's threads)."""

    def __init__(self, **kwargs):
        import multiprocessing as mp

        self.conn, child = mp.get_context("spawn").Pipe()
        self.process = mp.get_context("spawn").Process(target=_serve, args=(child, kwargs), daemon=True)

    def __enter__(self) -> ChatServerProcess:
        self.process.start()
        self.base_url = self.conn.recv()
        return self

    def __exit__(self, *exc) -> None:
        self.conn.send("stop")
        self.counters = self.conn.recv() if self.conn.poll(10) else {}
        self.process.join(10)
