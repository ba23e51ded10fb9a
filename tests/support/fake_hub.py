"""A Hugging Face Hub on loopback that answers the requests huggingface_hub's upload really
makes (create repo, create branch, validate the card's YAML, preupload, the LFS batch API and
its PUTs, commit) and records them, so a test sees what would have reached the Hub.

It serves the legacy (non-Xet) upload protocol: tests set HF_HUB_DISABLE_XET=1, because the
Xet path hands files to the hf_xet extension, which talks to a separate CAS service. Which
files go is decided before that split (upload_folder's folder listing), so both paths send
the same set. Any request it does not know is answered 404 and recorded as unexpected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from urllib.parse import unquote, urlparse

from tests.support.loopback_http import Handler, LoopbackServer

LFS_SUFFIXES = (".tar", ".parquet", ".png")  # as the Hub's .gitattributes sends binaries to LFS
_REPO = r"(?P<repo>[^/]+/[^/]+)"


class FakeHub:
    def __init__(self, refuse_token: bool = False):
        self.refuse_token = refuse_token  # answer 401 to every API call, as the Hub does a bad token
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Authorization header)
        self.repos: dict[str, dict] = {}  # repo -> create payload
        self.branches: list[tuple[str, str]] = []
        self.blobs: dict[str, bytes] = {}  # LFS oid -> bytes PUT
        self.commits: list[dict] = []  # {repo, revision, summary, files: {path: bytes}}
        self.unexpected: list[str] = []
        self.server = LoopbackServer(self._handler())

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> FakeHub:
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()

    def committed(self) -> dict[str, bytes]:
        """Every file of every commit, by path (later commits win)."""
        out: dict[str, bytes] = {}
        for c in self.commits:
            out.update(c["files"])
        return out

    def _handler(self):
        hub = self

        class FakeHubHandler(Handler):
            def body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.read_body()

            def send_json(self, obj, status: int = 200) -> None:
                self.reply(status, json.dumps(obj).encode())

            def do_GET(self):
                self.route()

            def do_POST(self):
                self.route()

            def do_PUT(self):
                self.route()

            def route(self):
                path = unquote(urlparse(self.path).path)
                data = self.body()
                with hub.lock:
                    hub.requests.append((self.command, path, self.headers.get("Authorization", "")))
                if hub.refuse_token and path.startswith("/api/"):
                    return self.send_json({"error": "Invalid credentials in Authorization header"}, 401)
                for pattern, method in ROUTES:
                    m = re.fullmatch(pattern, path)
                    if m and self.command == method.__name__.split("_")[0].upper():
                        return method(self, data, **m.groupdict())
                with hub.lock:
                    hub.unexpected.append(f"{self.command} {path}")
                self.send_json({"error": f"fake hub: no route for {self.command} {path}"}, 404)

            def post_create(self, data):
                payload = json.loads(data)
                repo = f"{payload['organization']}/{payload['name']}"
                with hub.lock:
                    exists = repo in hub.repos
                    hub.repos.setdefault(repo, payload)
                if exists:
                    return self.send_json({"error": "You already created this dataset repo"}, 409)
                self.send_json({"url": f"{hub.url}/datasets/{repo}", "name": repo})

            def post_validate(self, data):
                self.send_json({"errors": [], "warnings": []})

            def post_branch(self, data, repo, branch):
                with hub.lock:
                    hub.branches.append((repo, branch))
                self.send_json({})

            def post_preupload(self, data, repo, revision):
                files = json.loads(data)["files"]
                modes = [
                    {
                        "path": f["path"],
                        "uploadMode": "lfs" if f["path"].endswith(LFS_SUFFIXES) else "regular",
                        "shouldIgnore": False,
                        "oid": None,
                    }
                    for f in files
                ]
                self.send_json({"files": modes, "commitOid": "0" * 40})

            def post_batch(self, data, repo):
                objects = [
                    {
                        "oid": o["oid"],
                        "size": o["size"],
                        "authenticated": True,
                        "actions": {"upload": {"href": f"{hub.url}/lfs-upload/{o['oid']}"}},
                    }
                    for o in json.loads(data)["objects"]
                ]
                self.send_json({"transfer": "basic", "objects": objects})

            def put_blob(self, data, oid):
                if hashlib.sha256(data).hexdigest() != oid:
                    return self.send_json({"error": "sha256 mismatch"}, 400)
                with hub.lock:
                    hub.blobs[oid] = data
                self.send_json({})

            def post_commit(self, data, repo, revision):
                lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
                files: dict[str, bytes] = {}
                for item in lines[1:]:
                    value = item["value"]
                    if item["key"] == "file":
                        files[value["path"]] = base64.b64decode(value["content"])
                    elif item["key"] == "lfsFile":
                        if value["oid"] not in hub.blobs:
                            return self.send_json({"error": f"LFS object {value['oid']} missing"}, 400)
                        files[value["path"]] = hub.blobs[value["oid"]]
                    else:
                        return self.send_json({"error": f"unexpected {item['key']}"}, 400)
                with hub.lock:
                    hub.commits.append(
                        {
                            "repo": repo,
                            "revision": revision,
                            "summary": lines[0]["value"]["summary"],
                            "files": files,
                        }
                    )
                    oid = hashlib.sha1(str(len(hub.commits)).encode()).hexdigest()
                self.send_json({"commitUrl": f"{hub.url}/datasets/{repo}/commit/{oid}", "commitOid": oid})

        ROUTES = [
            (r"/api/repos/create", FakeHubHandler.post_create),
            (r"/api/validate-yaml", FakeHubHandler.post_validate),
            (rf"/api/datasets/{_REPO}/branch/(?P<branch>.+)", FakeHubHandler.post_branch),
            (rf"/api/datasets/{_REPO}/preupload/(?P<revision>.+)", FakeHubHandler.post_preupload),
            (rf"/datasets/{_REPO}\.git/info/lfs/objects/batch", FakeHubHandler.post_batch),
            (r"/lfs-upload/(?P<oid>[0-9a-f]{64})", FakeHubHandler.put_blob),
            (rf"/api/datasets/{_REPO}/commit/(?P<revision>.+)", FakeHubHandler.post_commit),
        ]
        return FakeHubHandler
