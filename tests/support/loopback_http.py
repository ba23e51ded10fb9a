"""What the tests' loopback HTTP servers share: a threaded server that behaves like a
production one under concurrency, and a handler that replies in one send.

The standard library's defaults are wrong for a benchmark: a listen backlog of 5 drops
the SYNs of a burst of 32 connections (the client retries after a second), and headers
and body sent in two writes with Nagle on meet the client's delayed ACK (40 ms a call on
loopback). Real servers (uvicorn under vLLM, nginx) set a deep backlog and TCP_NODELAY.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackServer(ThreadingHTTPServer):
    request_queue_size = 256
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 16  # a reply leaves in one send, when the request is done

    def log_message(self, *args) -> None:
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(self, status: int, payload: bytes, content_type: str = "application/json", headers=()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def drop_connection(self) -> None:
        self.close_connection = True
        self.connection.shutdown(2)


class LoopbackASGI:
    """An ASGI app (FastAPI) served by uvicorn on 127.0.0.1 at a free port, from a thread:
    for servers whose contract is written as pydantic models (the EditThinker release's)."""

    def __init__(self, app):
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", backlog=256
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

        self.url = ""  # known once started, kept after the stop

    def start(self, timeout_s: float = 10.0) -> None:
        import time

        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the loopback uvicorn server did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
