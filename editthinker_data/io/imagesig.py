"""Image signatures for pooling: sha256 of the bytes (exact duplicates, and the check that
an image did not change before generation) and a 64-bit perceptual hash (imagehash's pHash)
of a small thumbnail (near duplicates: re-encodes, resizes).

Decoding is the expensive part, so signatures are cached in SQLite: a file by its path, size
and mtime (a rerun neither reads nor decodes it), embedded bytes by their sha256. Only the
thumbnail is decoded: JPEGs are drafted at a reduced scale, and nothing is kept.

Source files are untrusted: the size in the header is checked against `ImageLimits` before
anything is decoded (a 20000x20000 PNG can be a few KB on disk), and whatever a broken file
makes PIL raise becomes an `ImageProblem` that names the file, never a build error.
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import warnings
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

from editthinker_data.io.storage import is_remote, read_url

THUMB = 64  # pHash works on 32x32; decode no larger than twice that

# ImageLimits.max_pixels replaces PIL's bomb warning (its hard error, at twice its limit, is
# caught below): the warning would otherwise print once per large but allowed image.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


class ImageProblem(ValueError):
    """The image is missing or does not decode; `reason` is the counted code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ImageLimits:
    """What a usable source image is (source.max_image_pixels, min_image_side, max_image_bytes)."""

    max_pixels: int = 64_000_000
    min_side: int = 16
    max_bytes: int = 64 * 1024 * 1024

    def check_size(self, width: int, height: int, what: str) -> None:
        if width * height > self.max_pixels:
            raise ImageProblem(
                "image_too_large",
                f"image {what} is {width}x{height} = {width * height} pixels, more than "
                f"source.max_image_pixels={self.max_pixels}",
            )
        if min(width, height) < self.min_side:
            raise ImageProblem(
                "image_too_small",
                f"image {what} is {width}x{height}, narrower than source.min_image_side={self.min_side}",
            )

    def check_bytes(self, size: int, what: str) -> None:
        if size > self.max_bytes:
            raise ImageProblem(
                "image_too_large",
                f"image {what} is {size} bytes, more than source.max_image_bytes={self.max_bytes}",
            )


@dataclass(frozen=True)
class Signature:
    sha256: str
    phash: int  # 64 bits
    ext: str  # file extension of the encoded format
    width: int = 0
    height: int = 0


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# The 8 lowest rows of the unnormalised DCT-II on 32 points (scipy.fftpack.dct's type 2).
_DCT8 = 2 * np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32) + 1) / 64)


def phash(img: Image.Image) -> imagehash.ImageHash:
    """imagehash.phash (hash_size 8, highfreq_factor 4), bit for bit, computing only the 8x8
    low frequencies it keeps: about 4x faster, which is most of pooling's first-run time
    (tests check it against imagehash.phash)."""
    pixels = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = _DCT8 @ pixels @ _DCT8.T
    return imagehash.ImageHash(low > np.median(low))


def compute(data: bytes, what: str, limits: ImageLimits | None = None) -> Signature:
    """The signature of an image's bytes; `ImageProblem` for anything that is not a usable
    image. The header's size is checked before a pixel is decoded."""
    limits = limits or ImageLimits()
    limits.check_bytes(len(data), what)
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only
            width, height = img.size
            limits.check_size(width, height, what)
            fmt = img.format or "PNG"
            img.draft("RGB", (THUMB, THUMB))  # JPEG: decode at 1/2..1/8 scale
            img.thumbnail((THUMB, THUMB))
            ph = phash(img)
    except ImageProblem:
        raise
    except Image.DecompressionBombError as err:  # PIL's own check, at twice its limit
        raise ImageProblem(
            "image_too_large", f"image {what}: {err} (source.max_image_pixels={limits.max_pixels})"
        ) from None
    except UnidentifiedImageError:
        raise ImageProblem(
            "image_unreadable", f"image {what} does not decode: not an image format PIL can identify"
        ) from None
    except Exception as err:  # noqa: BLE001 - hostile bytes make PIL raise anything; one record fails
        raise ImageProblem(
            "image_unreadable", f"image {what} does not decode: {type(err).__name__}: {err}"
        ) from None
    sha = hashlib.sha256(data).hexdigest()
    return Signature(sha, int(str(ph), 16), EXTENSIONS.get(fmt, "png"), width, height)


def _read(url: str, limits: ImageLimits) -> bytes:
    try:
        if not is_remote(url):
            limits.check_bytes(os.path.getsize(url), url)  # before reading a huge file
        return read_url(url)
    except FileNotFoundError:
        raise ImageProblem("image_missing", f"image {url} not found") from None
    except IsADirectoryError:
        raise ImageProblem("image_unreadable", f"image {url} is a folder") from None
    except (OSError, ValueError) as err:
        if isinstance(err, ImageProblem):
            raise
        raise ImageProblem("image_unreadable", f"image {url}: {err}") from None


class SignatureCache:
    """Signatures by file identity (path, size, mtime_ns) or content (sha256); `path=None`
    keeps them in memory only."""

    def __init__(self, path: str | os.PathLike[str] | None = None, threads: int = 4):
        self.threads = threads
        self._executor = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) if path is not None else ":memory:")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        # sig2: with the image's size, so limits are checked on cache hits too
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS sig2 (k TEXT PRIMARY KEY, sha256 TEXT, phash INTEGER, ext TEXT, "
            "width INTEGER, height INTEGER)"
        )
        self.hits = self.misses = 0
        self._pending = 0

    def _get(self, key: str) -> Signature | None:
        row = self.db.execute(
            "SELECT sha256, phash, ext, width, height FROM sig2 WHERE k = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        self.hits += 1
        return Signature(row[0], row[1] & (2**64 - 1), row[2], row[3], row[4])

    def _put(self, key: str, sig: Signature) -> None:
        self.misses += 1
        # SQLite integers are signed 64-bit: store the hash in that range.
        signed = sig.phash - 2**64 if sig.phash >= 2**63 else sig.phash
        self.db.execute(
            "INSERT OR REPLACE INTO sig2 VALUES (?, ?, ?, ?, ?, ?)",
            (key, sig.sha256, signed, sig.ext, sig.width, sig.height),
        )
        self._pending += 1
        if self._pending >= 1000:
            self.flush()

    def flush(self) -> None:
        self.db.commit()
        self._pending = 0

    def close(self) -> None:
        self.flush()
        self.db.close()
        if self._executor is not None:
            self._executor.shutdown()

    def many(
        self, items: list[tuple[str | None, bytes | None, str]], limits: ImageLimits | None = None
    ) -> list[Signature | ImageProblem]:
        """Signatures of (path, bytes, what) items, in order: cache lookups here, reads and
        decodes of the misses on a few threads (PIL and numpy release the GIL). `what` names
        the image in errors (its path, or where embedded bytes came from)."""
        limits = limits or ImageLimits()
        out: list[Signature | ImageProblem | None] = [None] * len(items)
        todo: list[tuple[int, str, str | None, bytes | None, str]] = []
        for i, (path, data, what) in enumerate(items):
            try:
                key = self._key(path, data)
            except ImageProblem as err:
                out[i] = err
                continue
            cached = self._get(key) if key else None
            if cached is not None:
                try:  # limits may have changed since it was cached
                    limits.check_size(cached.width, cached.height, what)
                    out[i] = cached
                except ImageProblem as err:
                    out[i] = err
            else:
                todo.append((i, key, path, data, what))

        def work(job: tuple[int, str, str | None, bytes | None, str]) -> Signature | ImageProblem:
            _, _, path, data, what = job
            try:
                if data is None:
                    assert path is not None  # an item is a path or its bytes
                    data = _read(path, limits)
                return compute(data, what, limits)
            except ImageProblem as err:
                return err

        for job, sig in zip(todo, self._pool().map(work, todo), strict=True):
            out[job[0]] = sig
            if isinstance(sig, Signature):
                self._put(job[1] or "b:" + sig.sha256, sig)
        return out  # type: ignore[return-value]

    def _pool(self):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(self.threads)
        return self._executor

    def _key(self, path: str | None, data: bytes | None) -> str:
        """The cache key of an item; "" for remote files (keyed by content once read)."""
        if data is not None:
            return "b:" + hashlib.sha256(data).hexdigest()
        assert path is not None  # an item is a path or its bytes
        if is_remote(path):
            return ""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise ImageProblem("image_missing", f"image {path} not found") from None
        except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
            raise ImageProblem("image_unreadable", f"image {path!r}: {err}") from None
        return f"f:{path}:{st.st_size}:{st.st_mtime_ns}"

    def of_file(self, url: str) -> Signature:
        return self._one(url, None, url)

    def of_bytes(self, data: bytes, what: str) -> Signature:
        return self._one(None, data, what)

    def _one(self, path: str | None, data: bytes | None, what: str) -> Signature:
        sig = self.many([(path, data, what)])[0]
        if isinstance(sig, ImageProblem):
            raise sig
        return sig
