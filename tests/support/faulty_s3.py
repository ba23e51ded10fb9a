"""A reverse proxy on loopback in front of the S3 server that fails a share of requests the
ways object stores do: 503 SlowDown, 500 InternalError, and connections dropped mid-request."""

from __future__ import annotations

import http.client
import random
import threading

from tests.support.loopback_http import Handler, LoopbackServer

SLOWDOWN = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'
INTERNAL = b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>'


class FaultyProxy:
    def __init__(self, upstream_host: str, upstream_port: int, fault_rate: float, seed: int = 0):
        self.rng = random.Random(seed)
        self.fault_rate = fault_rate
        self.faults = {"slowdown": 0, "internal": 0, "reset": 0}
        self.requests = 0
        self.lock = threading.Lock()
        proxy = self

        class ProxyHandler(Handler):
            def _handle(self):
                body = self.read_body()
                with proxy.lock:
                    proxy.requests += 1
                    roll = proxy.rng.random()
                    kind = None
                    if roll < proxy.fault_rate:
                        kind = ("slowdown", "internal", "reset")[proxy.rng.randrange(3)]
                        proxy.faults[kind] += 1
                if kind == "reset":
                    return self.drop_connection()
                if kind == "slowdown":
                    return self.reply(503, SLOWDOWN, "application/xml")
                if kind:
                    return self.reply(500, INTERNAL, "application/xml")
                conn = http.client.HTTPConnection(upstream_host, upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"{upstream_host}:{upstream_port}"
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = LoopbackServer(ProxyHandler)

    @property
    def endpoint(self) -> str:
        return self.server.url

    def __enter__(self) -> FaultyProxy:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
