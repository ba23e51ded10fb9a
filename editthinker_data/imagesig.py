"""Image signatures for pooling: sha256 of the bytes (exact duplicates, and the check that
an image did not change before generation) and a 64-bit perceptual hash (imagehash's pHash)
of a small thumbnail (near duplicates: re-encodes, resizes).

Decoding is the expensive part, so signatures are cached in SQLite: a file by its path, size
and mtime (a rerun neither reads nor decodes it), embedded bytes by their sha256. Only the
thumbnail is decoded: JPEGs are drafted at a reduced scale, and nothing is kept.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import imagehash
from PIL import Image, UnidentifiedImageError

from editthinker_data.storage import is_remote, read_url

THUMB = 64  # pHash works on 32x32; decode no larger than twice that

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class ImageProblem(ValueError):
    """The image is missing or does not decode; `reason` is the counted code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Signature:
    sha256: str
    phash: int  # 64 bits
    ext: str  # file extension of the encoded format


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def compute(data: bytes, what: str) -> Signature:
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or "PNG"
            img.draft("RGB", (THUMB, THUMB))  # JPEG: decode at 1/2..1/8 scale
            img.thumbnail((THUMB, THUMB))
            ph = imagehash.phash(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageProblem("image_unreadable", f"image {what} does not decode: {err}") from None
    return Signature(hashlib.sha256(data).hexdigest(), int(str(ph), 16), EXTENSIONS.get(fmt, "png"))


class SignatureCache:
    """Signatures by file identity (path, size, mtime_ns) or content (sha256); `path=None`
    keeps them in memory only."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) if path is not None else ":memory:")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sig (k TEXT PRIMARY KEY, sha256 TEXT, phash INTEGER, ext TEXT)"
        )
        self.hits = self.misses = 0
        self._pending = 0

    def _get(self, key: str) -> Signature | None:
        row = self.db.execute("SELECT sha256, phash, ext FROM sig WHERE k = ?", (key,)).fetchone()
        if row is None:
            return None
        self.hits += 1
        return Signature(row[0], row[1] & (2**64 - 1), row[2])

    def _put(self, key: str, sig: Signature) -> None:
        self.misses += 1
        # SQLite integers are signed 64-bit: store the hash in that range.
        signed = sig.phash - 2**64 if sig.phash >= 2**63 else sig.phash
        self.db.execute("INSERT OR REPLACE INTO sig VALUES (?, ?, ?, ?)", (key, sig.sha256, signed, sig.ext))
        self._pending += 1
        if self._pending >= 1000:
            self.flush()

    def flush(self) -> None:
        self.db.commit()
        self._pending = 0

    def close(self) -> None:
        self.flush()
        self.db.close()

    def of_file(self, url: str) -> Signature:
        if not is_remote(url):
            try:
                st = os.stat(url)
            except FileNotFoundError:
                raise ImageProblem("image_missing", f"image {url} not found") from None
            except OSError as err:
                raise ImageProblem("image_unreadable", f"image {url}: {err}") from None
            key = f"f:{url}:{st.st_size}:{st.st_mtime_ns}"
            cached = self._get(key)
            if cached is not None:
                return cached
        try:
            data = read_url(url)
        except FileNotFoundError:
            raise ImageProblem("image_missing", f"image {url} not found") from None
        except (OSError, ValueError) as err:
            raise ImageProblem("image_unreadable", f"image {url}: {err}") from None
        if is_remote(url):
            return self.of_bytes(data, url)
        sig = compute(data, url)
        self._put(key, sig)
        return sig

    def of_bytes(self, data: bytes, what: str) -> Signature:
        key = "b:" + hashlib.sha256(data).hexdigest()
        cached = self._get(key)
        if cached is not None:
            return cached
        sig = compute(data, what)
        self._put(key, sig)
        return sig
