"""Hostile and broken source files: each is a per-record error that names the record and the
file (never a build error, never an object's repr), the good records beside them are kept,
and what is a configuration problem (a UTF-16 manifest, an empty source) fails with the fix.
Every file is made here; URLs reach only a server on 127.0.0.1 or are refused unresolved."""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from editthinker_data.config import ConfigError, parse_config
from editthinker_data.core.layout import POOL_UNIT
from editthinker_data.execution.base import LocalExecutor
from editthinker_data.io.storage import LocalStorage
from editthinker_data.pipeline.preflight import check_sources
from editthinker_data.sources import read_input
from editthinker_data.sources.base import SourceRecord
from editthinker_data.sources.guard import ImagePolicy, Refused, check
from editthinker_data.stages.pool import PoolStage
from tests.support.loopback_http import Handler, LoopbackServer
from tests.support.source_fixtures import png

SIDE = 20000  # 400M pixels: PIL itself refuses it at Image.open


def bomb_png(width: int = SIDE, height: int = SIDE) -> bytes:
    """A real, decodable 1-bit PNG of width x height, a few tens of KB on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def manifest(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    return write(
        path, "".join(json.dumps({"id": i, "image": im, "instruction": text}) + "\n" for i, im, text in rows)
    )


class ImageServer(Handler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/good.png":
            self.reply(200, png(40), "image/png")
        elif self.path == "/redirect":  # to the cloud metadata address
            self.reply(302, b"", headers=[("Location", "http://169.254.169.254/latest/meta-data/")])
        else:
            self.reply(404, b"not found", "text/plain")


@pytest.fixture
def server():
    srv = LoopbackServer(ImageServer)
    srv.start()
    yield srv
    srv.stop()


def hostile_corpus(root: Path, server_url: str) -> tuple[list[dict], dict, set[str]]:
    """(inputs, {record: (reason, text its detail must hold)}, ids that must be kept)."""
    src, outside = root / "src", root / "outside"
    images = src / "images"
    for i in range(1, 4):
        write(images / f"good{i}.png", png(i))
    os.symlink(images / "good3.png", images / "alias.png")  # a symlink inside: fine
    bomb = write(images / "bomb.png", bomb_png())
    assert len(bomb.read_bytes()) < 100_000  # small on disk
    write(images / "truncated.png", png(5)[: len(png(5)) // 2])
    write(images / "text.png", "hello, I am not an image\n")
    write(images / "tiny.png", tiny_png())
    secret = write(outside / "secret.png", png(6))
    write(outside / "shared.png", png(7))
    os.symlink(secret, images / "escape.png")
    main = manifest(
        src / "main.jsonl",
        [
            ("good1", "images/good1.png", "Make the sky purple."),
            ("alias", "images/alias.png", "Add a red balloon."),
            ("bomb", "images/bomb.png", "Make it brighter."),
            ("truncated", "images/truncated.png", "Make it brighter."),
            ("notimage", "images/text.png", "Make it brighter."),
            ("tiny", "images/tiny.png", "Make it brighter."),
            ("traversal", "../outside/secret.png", "Make it brighter."),
            ("absolute", str(secret), "Make it brighter."),
            ("symlink", "images/escape.png", "Make it brighter."),
            ("passwd-allowed", "file:///etc/passwd", "Make it brighter."),
            ("private", "http://10.0.0.7/cat.png", "Make it brighter."),
            ("metadata", "http://169.254.169.254/latest/meta-data/", "Make it brighter."),
            ("loopback", f"{server_url}/good.png", "Make it brighter."),
            ("nul", "images/good1.png\x00.txt", "Make it brighter."),
            ("badport", "http://example.com:99999/a.png", "Make it brighter."),
        ],
    )
    strict = manifest(
        src / "strict" / "strict.jsonl",
        [
            ("good2", "../images/good2.png", "Turn it into a watercolour."),  # ../ but inside allowed_roots
            ("shared", str(outside / "shared.png"), "Add a small boat."),
            ("passwd", "file:///etc/passwd", "Make it brighter."),
            ("web", "https://example.com/a.png", "Make it brighter."),
        ],
    )
    web = manifest(
        src / "web.jsonl",
        [
            ("fetched", f"{server_url}/good.png", "Give it a pencil sketch style."),
            ("redirect", f"{server_url}/redirect", "Make it brighter."),
            ("gone", f"{server_url}/missing.png", "Make it brighter."),
        ],
    )
    latin = write(
        src / "latin.jsonl",
        json.dumps(
            {"id": "ascii", "image": "images/good2.png", "instruction": "Add a tree on the left."}
        ).encode()
        + b"\n"
        + b'{"id": "cafe", "image": "images/good1.png", "instruction": "Make it caf\xe9 brown."}\n',
    )
    shard = src / "wds" / "shard-000000.tar"
    shard.parent.mkdir(parents=True)
    with tarfile.open(shard, "w") as tar:
        for key, image in (("fine", png(8)), ("bomb", bomb.read_bytes()), ("junk", b"GIF89a broken")):
            for ext, data in (("png", image), ("json", json.dumps({"instruction": "Add snow."}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    table = src / "table" / "t.parquet"
    table.parent.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "id": ["row0", "row1"],
                "image": [png(9), tiny_png()],
                "instruction": ["Remove the cloud.", "Remove the cloud."],
            }
        ),
        table,
    )
    inputs = [
        {"format": "jsonl", "path": str(main), "name": "main", "allow_urls": True},
        {
            "format": "jsonl",
            "path": str(strict),
            "name": "strict",
            "allowed_roots": [str(images), str(outside)],
        },
        {"format": "jsonl", "path": str(web), "name": "web", "allow_urls": True, "allow_loopback": True},
        {"format": "jsonl", "path": str(latin), "name": "latin"},
        {"format": "webdataset", "path": str(shard.parent), "name": "wds"},
        {"format": "parquet", "path": str(table.parent), "name": "table"},
    ]
    expected = {
        "main:bomb": ("image_too_large", str(images / "bomb.png")),
        "main:truncated": ("image_unreadable", str(images / "truncated.png")),
        "main:notimage": ("image_unreadable", str(images / "text.png")),
        "main:tiny": ("image_too_small", str(images / "tiny.png")),
        "main:traversal": ("path_outside_source", "../outside/secret.png"),
        "main:absolute": ("path_outside_source", str(secret)),
        "main:symlink": ("path_outside_source", f"resolves to {secret}"),
        "main:passwd-allowed": ("path_outside_source", "/etc/passwd"),
        "main:private": ("url_private_address", "10.0.0.7"),
        "main:metadata": ("url_private_address", "169.254.169.254, a link-local address"),
        "main:loopback": ("url_private_address", "allow_loopback"),
        "main:nul": ("bad_image_reference", "embedded null byte"),
        "main:badport": ("bad_image_reference", "http://example.com:99999/a.png"),
        "strict:passwd": ("url_not_allowed", "file:///etc/passwd"),
        "strict:web": ("url_not_allowed", "https://example.com/a.png"),
        "web:redirect": ("url_private_address", "169.254.169.254"),
        "web:gone": ("image_missing", f"{server_url}/missing.png: HTTP 404"),
        "latin.jsonl:2": ("bad_encoding", "latin.jsonl line 2: byte 0xe9 at offset"),
        "wds:bomb": ("image_too_large", "shard-000000.tar:bomb"),
        "wds:junk": ("image_unreadable", "shard-000000.tar:junk"),
        "table:row1": ("image_too_small", "t.parquet#1"),
    }
    kept = {"main:good1", "main:alias", "strict:good2", "strict:shared", "web:fetched", "latin:ascii"}
    kept |= {"wds:fine", "table:row0"}
    return inputs, expected, kept


def config(inputs: list[dict], **source) -> object:
    return parse_config({"source": {"inputs": inputs, **source}, "run": {"partition_size": 4}}, environ={})


def test_a_hostile_corpus_gives_named_per_record_errors_and_keeps_every_good_record(tmp_path, server):
    inputs, expected, kept = hostile_corpus(tmp_path, server.url)
    cfg = config(inputs)
    check_sources(cfg)  # nothing here is a configuration problem
    out = LocalStorage(tmp_path / "out")
    report = LocalExecutor().run_one(PoolStage(cfg), out, POOL_UNIT, sig_cache=tmp_path / "sig.sqlite")

    failures = {f["record"]: f for f in report.failures}
    for record, (reason, where) in expected.items():
        assert record in failures, record
        f = failures[record]
        assert (f["reason"], f["stage"]) == (reason, "pool"), f
        assert where in f["detail"], f
        assert "object at 0x" not in f["detail"] and "BytesIO" not in f["detail"]
    assert set(failures) == set(expected)

    pairs = pq.read_table(out.path("pool/pairs.parquet")).to_pylist()
    assert {p["id"] for p in pairs} == kept
    allowed = (str(tmp_path / "src"), str(out.root / "pool/images"), str(tmp_path / "outside/shared.png"))
    for p in pairs:  # nothing but the sources' folders and the listed root was published
        assert os.path.realpath(p["image_path"]).startswith(allowed), p
    fetched = next(p for p in pairs if p["id"] == "web:fetched")
    assert fetched["image_path"].startswith(str(out.root / "pool/images"))  # stored, never re-fetched
    assert Path(fetched["image_path"]).read_bytes() == png(40)

    kinds = {reason for reason, _ in expected.values()}
    assert kinds == {
        "image_too_large", "image_unreadable", "image_too_small", "path_outside_source",
        "url_private_address", "url_not_allowed", "image_missing", "bad_encoding", "bad_image_reference",
    }  # fmt: skip
    assert sum(sum(s["unusable"].values()) for s in report.by_source.values()) == len(expected)
    print(f"hostile corpus: {len(expected)} records rejected in {len(kinds)} kinds, {len(pairs)} kept")


def test_image_limits_are_settings_and_apply_to_cached_signatures(tmp_path):
    write(tmp_path / "img" / "a.png", png(1))  # 128x128
    m = manifest(tmp_path / "m.jsonl", [("a", "img/a.png", "Make the sky purple.")])
    inputs = [{"format": "jsonl", "path": str(m), "name": "m"}]
    sig = tmp_path / "sig.sqlite"
    assert (
        LocalExecutor()
        .run_one(PoolStage(config(inputs)), LocalStorage(tmp_path / "o1"), POOL_UNIT, sig_cache=sig)
        .pairs
        == 1
    )
    small = LocalExecutor().run_one(
        PoolStage(config(inputs, max_image_pixels=10_000)),
        LocalStorage(tmp_path / "o2"),
        POOL_UNIT,
        sig_cache=sig,
    )
    assert small.pairs == 0 and small.signature_cache["hits"] == 1  # cached, and still checked
    assert small.failures[0]["reason"] == "image_too_large"
    assert "128x128 = 16384 pixels, more than source.max_image_pixels=10000" in small.failures[0]["detail"]
    wide = LocalExecutor().run_one(
        PoolStage(config(inputs, min_image_side=200)), LocalStorage(tmp_path / "o3"), POOL_UNIT, sig_cache=sig
    )
    assert wide.failures[0]["reason"] == "image_too_small"
    heavy = LocalExecutor().run_one(
        PoolStage(config(inputs, max_image_bytes=1024)), LocalStorage(tmp_path / "o4"), POOL_UNIT
    )
    assert (
        heavy.failures[0]["reason"] == "image_too_large" and "bytes, more than" in heavy.failures[0]["detail"]
    )
    with pytest.raises(ConfigError, match="max_image_pixels"):
        config(inputs, max_image_pixels=400_000_000)  # PIL could not open what it lets through


def test_containment_of_s3_and_mapped_ipv6_references():
    policy = ImagePolicy.of(["s3://bucket/data"], allow_urls=True)
    assert check("s3://bucket/data/img/a.png", policy) == "s3://bucket/data/img/a.png"
    for bad in ("s3://bucket/data/../private/a.png", "s3://bucket/database/a.png", "s3://other/data/a.png"):
        with pytest.raises(Refused) as err:
            check(bad, policy)
        assert err.value.reason == "path_outside_source" and bad in str(err.value)
    from editthinker_data.sources.guard import fetch

    with pytest.raises(Refused) as err:  # the metadata address written as IPv4-mapped IPv6
        fetch("http://[::ffff:169.254.169.254]/latest/", policy)
    assert err.value.reason == "url_private_address"
    with pytest.raises(Refused) as err:
        check("gopher://example.com/a.png", policy)
    assert err.value.reason == "url_not_allowed"


def test_pico_banana_paths_from_its_mapping_script_stay_usable(tmp_path):
    """apple/pico-banana-400k's map_openimage_url_to_local.py writes `local_input_image` as
    os.path.join(<its image_root>, train_*/<ImageID>.jpg): relative to where it ran, or
    absolute. Both resolve inside the folders the input names, and nowhere else."""
    images = tmp_path / "openimages" / "openimage_source_images" / "train_0"
    write(images / "0001abc.jpg", png(11))
    row = {"summarized_text": "Make the sky purple.", "output_image": "images/positive-edit/1.png"}
    lines = {
        "relative": {**row, "local_input_image": "openimages/openimage_source_images/train_0/0001abc.jpg"},
        "absolute": {**row, "local_input_image": str(images / "0001abc.jpg")},
    }
    data = tmp_path / "data"
    for name, obj in lines.items():
        write(data / f"{name}.jsonl", json.dumps(obj) + "\n")
    base = {"format": "pico_banana", "name": "pico"}
    relative = {**base, "path": str(data / "relative.jsonl"), "options": {"image_root": str(tmp_path)}}
    absolute = {**base, "path": str(data / "absolute.jsonl")}
    (rec,) = read_input(config([relative]).source.inputs[0], False)
    assert isinstance(rec, SourceRecord), rec
    (err,) = read_input(config([absolute]).source.inputs[0], False)
    assert err.reason == "path_outside_source" and str(images / "0001abc.jpg") in err.detail
    for fix in (
        {"options": {"openimages_dir": str(tmp_path / "openimages")}},
        {"allowed_roots": [str(tmp_path)]},
    ):
        (rec,) = read_input(config([{**absolute, **fix}]).source.inputs[0], False)
        assert isinstance(rec, SourceRecord) and rec.image_path == str(images / "0001abc.jpg")


@pytest.mark.slow
def test_a_build_beside_a_bomb_and_an_escape_finishes_and_names_them(
    ray_cluster, state_dir, demo_cfg, tmp_path
):
    """The issue's report: one 20000x20000 PNG aborted the whole build. Now the demo's pairs
    are built and the bomb (in a manifest and in a tar) and a `../` escape are named."""
    from flows.build_dataset import build_dataset

    bad = tmp_path / "bad"
    write(bad / "bomb.png", bomb_png())
    write(tmp_path / "secret.png", png(12))
    m = manifest(
        bad / "bad.jsonl",
        [("bomb", "bomb.png", "Make it brighter."), ("escape", "../secret.png", "Make it brighter.")],
    )
    with tarfile.open(bad / "shard-000000.tar", "w") as tar:
        for name, data in (("bomb.png", bomb_png()), ("bomb.json", b'{"instruction": "Add snow."}')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = demo_cfg.model_dump()
    data["source"]["inputs"] = [
        {"format": "jsonl", "path": str(m), "name": "bad"},
        {"format": "webdataset", "path": str(bad / "shard-000000.tar"), "name": "tar"},
    ]
    cfg = parse_config(data, environ={})
    out = tmp_path / "out"
    result = build_dataset(cfg.model_dump(), str(out), str(state_dir))
    assert result.manifest["totals"]["sft"] + result.manifest["totals"]["rl"] > 0
    failures = {f["record"]: f for f in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    assert (
        failures["bad:bomb"]["reason"] == "image_too_large"
        and str(bad / "bomb.png") in failures["bad:bomb"]["detail"]
    )
    assert (
        failures["tar:bomb"]["reason"] == "image_too_large"
        and "shard-000000.tar:bomb" in failures["tar:bomb"]["detail"]
    )
    assert failures["bad:escape"]["reason"] == "path_outside_source"
    pairs = pq.read_table(out / "pool/pairs.parquet").to_pylist()
    assert pairs and not any(p["source"] in ("bad", "tar") for p in pairs)
