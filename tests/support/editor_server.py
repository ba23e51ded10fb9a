"""A local editor service speaking the HTTP editor contract, for tests and benchmarks.

Its "edit" inverts the colours, at `scale` times the size (so the client's resize back shows).
Faults are scripted for the first requests, or drawn at a rate: 429 with Retry-After,
500, 400, a dropped connection, a reply slower than the client's timeout, a body that is
not JSON, a truncated image, JSON without an image. Each request's arrival time (`started`,
wall clock) and what decides its edit (`edits`: source image hash, instruction, seed) are
kept, so a test counts the edits a build made, and when, at the editor itself."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import threading
import time

from PIL import Image, ImageOps

from tests.support.loopback_http import Handler, LoopbackServer

FAULTS = ("429", "500", "reset", "timeout", "malformed", "truncated")


class EditorServer:
    def __init__(
        self,
        *,
        raw=False,
        script=(),
        fault_rate=0.0,
        faults=FAULTS,
        latency_s=0.0,
        timeout_sleep_s=1.0,
        seed=0,
        scale=2,
    ):
        self.raw, self.script, self.fault_rate, self.faults = raw, list(script), fault_rate, tuple(faults)
        self.latency_s, self.timeout_sleep_s, self.scale = latency_s, timeout_sleep_s, scale
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.requests, self.in_flight, self.max_in_flight = 0, 0, 0
        self.bodies: list[dict] = []
        self.started: list[float] = []  # each request's arrival, time.time()
        self.edits: list[tuple[str, str, int]] = []  # (source sha256, instruction, seed) per request
        self.headers: list[dict] = []
        self.peers: set[tuple] = set()  # client (host, port) pairs: one per connection opened
        self.injected: dict[str, int] = {}
        server = self

        class EditHandler(Handler):
            def do_POST(self):
                body = json.loads(self.read_body())
                arrived = time.time()
                source = hashlib.sha256(body.get("image", "").encode()).hexdigest()
                with server.lock:
                    server.requests += 1
                    server.started.append(arrived)
                    server.edits.append((source, body.get("instruction", ""), body.get("seed", -1)))
                    server.peers.add(self.client_address)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.bodies.append({k: v for k, v in body.items() if k != "image"})
                    server.headers.append(dict(self.headers))
                    if server.script:
                        fault = server.script.pop(0)
                    elif server.rng.random() < server.fault_rate:
                        fault = server.faults[sum(server.injected.values()) % len(server.faults)]
                    else:
                        fault = None
                    if fault:
                        server.injected[fault] = server.injected.get(fault, 0) + 1
                try:
                    self._answer(body, fault)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _answer(self, body, fault):
                if server.latency_s:
                    time.sleep(server.latency_s)
                if fault == "reset":
                    return self.drop_connection()
                if fault == "timeout":
                    time.sleep(server.timeout_sleep_s)
                if fault in ("429", "500", "400"):
                    extra = [("Retry-After", "0.05")] if fault == "429" else []
                    return self.reply(int(fault), b'{"error": "not now"}', headers=extra)
                if fault == "malformed":
                    return self.reply(200, b"<html>gateway hiccup</html>", "text/html")
                if fault == "noimage":
                    return self.reply(200, b'{"error": "prompt refused by the safety filter"}')
                src = Image.open(io.BytesIO(base64.b64decode(body["image"]))).convert("RGB")
                out = ImageOps.invert(src).resize(
                    (src.width * server.scale, src.height * server.scale), Image.Resampling.NEAREST
                )
                buf = io.BytesIO()
                out.save(buf, format="PNG")
                png = buf.getvalue()
                if fault == "truncated":
                    png = png[: len(png) // 2]
                if server.raw:
                    return self.reply(200, png, "image/png")
                return self.reply(200, json.dumps({"image": base64.b64encode(png).decode()}).encode())

        self.httpd = LoopbackServer(EditHandler)

    @property
    def base_url(self) -> str:
        return self.httpd.url

    def __enter__(self) -> EditorServer:
        self.httpd.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.stop()
