"""The only code that parses output locations: local paths, file:// and s3:// (boto3;
MinIO, R2 and other S3-compatible stores through an endpoint URL).

Every write is all-or-nothing: local files are written to a temp name and renamed; S3
objects are uploaded whole (multipart when large) from a local staging file, so a reader
never sees a partial object. Readers that need a file (parquet, tar) ask for
`local_copy(name)`; on S3 that downloads once into a local cache. `write_if` (in
`conditional`) is the one conditional write, which the output lease stands on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from editthinker_data.io.conditional import LocalConditional, S3Conditional, Versioned


class StorageError(ValueError):
    pass


def local_path(location: str | os.PathLike[str]) -> Path:
    """A local path for a location, or a clear error for schemes that need a Storage."""
    text = os.fspath(location)
    if "://" in text:
        parsed = urlparse(text)
        if parsed.scheme == "file":
            return Path(parsed.path)
        raise StorageError(f"{text}: {parsed.scheme}:// is not supported here; use a local path or file://")
    return Path(text)


class Storage(ABC):
    """A build's output root. Names are relative, '/'-separated."""

    url: str

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def read_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, name: str, data: bytes) -> None: ...

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Names under prefix, sorted; hidden staging files excluded."""

    def sizes(self, prefix: str) -> dict[str, int]:
        """Bytes of every object under prefix (what `list` returns), without reading them."""
        return {name: len(self.read_bytes(name)) for name in self.list(prefix)}

    def download_to(self, name: str, dest: Path, size: int | None = None) -> None:
        """A fresh copy of the object at `dest` (never a cached one); `size` if known."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self.read_bytes(name))

    @abstractmethod
    def local_copy(self, name: str) -> Path:
        """A local file with the object's bytes."""

    @abstractmethod
    def staging_path(self, name: str) -> Path:
        """Where a file for `name` is assembled before `commit` publishes it whole."""

    @abstractmethod
    def commit(self, staged: Path, name: str) -> None: ...

    @abstractmethod
    def work_dir(self, prefix: str) -> Path:
        """A local folder whose files `publish_dir(prefix)` makes visible under prefix."""

    @abstractmethod
    def publish_dir(self, prefix: str) -> None: ...

    @abstractmethod
    def read_versioned(self, name: str) -> Versioned | None:
        """The object with its version and age; None when it does not exist."""

    @abstractmethod
    def write_if(self, name: str, data: bytes, version: str | None) -> str | None:
        """Write only if the object is absent (`version` None) or still at `version`: the new
        version, or None when another writer got there first. Atomic on every store."""

    @abstractmethod
    def delete_if(self, name: str, version: str) -> bool:
        """Delete only if the object is still at `version`."""

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def write_json(self, name: str, obj: Any) -> None:
        self.write_bytes(name, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class LocalStorage(LocalConditional, Storage):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = local_path(root).resolve()
        self.url = str(self.root)

    def path(self, name: str) -> Path:
        return self.root / name

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def read_bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def write_bytes(self, name: str, data: bytes) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> None:
        path = self.path(name)
        path.unlink(missing_ok=True)
        for parent in path.parents:  # drop folders the deletion emptied, as object stores do
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            if not parent.exists():  # deleting a name that was never written
                continue
            if any(parent.iterdir()):
                break
            parent.rmdir()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix) if prefix else self.root
        if not base.exists():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def sizes(self, prefix: str) -> dict[str, int]:
        return {name: self.path(name).stat().st_size for name in self.list(prefix)}

    def local_copy(self, name: str) -> Path:
        path = self.path(name)
        if not path.exists():
            raise FileNotFoundError(f"{self.url}/{name} does not exist")
        return path

    def staging_path(self, name: str) -> Path:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.partial")

    def commit(self, staged: Path, name: str) -> None:
        os.replace(staged, self.path(name))

    def work_dir(self, prefix: str) -> Path:
        path = self.path(prefix)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish_dir(self, prefix: str) -> None:
        pass  # already in place


class S3Storage(S3Conditional, Storage):
    """s3://bucket/prefix. Credentials come from the environment (AWS_ACCESS_KEY_ID, ...,
    or a profile), never from the config; throttling, 5xx and dropped connections are
    retried by botocore's adaptive retry mode."""

    MULTIPART_THRESHOLD = 64 * 1024 * 1024
    MULTIPART_CHUNK = 16 * 1024 * 1024  # parts upload in parallel: measured faster than one PUT

    def __init__(
        self,
        url: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        max_attempts: int = 10,
    ):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"{url}: expected s3://bucket/prefix")
        self.url = url.rstrip("/")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        config = Config(
            retries={"max_attempts": max_attempts, "mode": "adaptive"}, connect_timeout=10, read_timeout=120
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3"),
            region_name=region,
            config=config,
        )
        self.transfer = TransferConfig(
            multipart_threshold=self.MULTIPART_THRESHOLD, multipart_chunksize=self.MULTIPART_CHUNK
        )
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        base = Path(
            cache_dir
            or os.environ.get("EDITTHINKER_CACHE_DIR")
            or Path(tempfile.gettempdir()) / "etd-s3-cache"
        )
        self.cache = base / digest

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(name))
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read_bytes(self, name: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise FileNotFoundError(f"{self.url}/{name} does not exist") from None
            raise

    def write_bytes(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data)
        cached = self.cache / name
        if cached.exists():
            cached.unlink()

    def delete(self, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        (self.cache / name).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        return sorted(self.sizes(prefix))

    def sizes(self, prefix: str) -> dict[str, int]:
        base = self.key(prefix).rstrip("/") + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        start = len(self.prefix) + 1 if self.prefix else 0
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                name = obj["Key"][start:]
                if not name.rsplit("/", 1)[-1].startswith("."):
                    found[name] = obj["Size"]
        return dict(sorted(found.items()))

    def local_copy(self, name: str) -> Path:
        from botocore.exceptions import ClientError

        target = self.cache / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                self.client.download_file(self.bucket, self.key(name), str(tmp), Config=self.transfer)
            except ClientError as err:
                tmp.unlink(missing_ok=True)
                if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    raise FileNotFoundError(f"{self.url}/{name} does not exist") from None
                raise
            os.replace(tmp, target)
        return target

    def download_to(self, name: str, dest: Path, size: int | None = None) -> None:
        """One streamed GET for small objects (a transfer manager's HEAD and threads cost more
        than the bytes); parallel ranged GETs above the multipart threshold."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if size is not None and size < self.MULTIPART_THRESHOLD:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
            with open(dest, "wb") as fh:
                for chunk in body.iter_chunks(1 << 20):
                    fh.write(chunk)
        else:
            self.client.download_file(self.bucket, self.key(name), str(dest), Config=self.transfer)

    def staging_path(self, name: str) -> Path:
        target = self.cache / ".staging" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self, staged: Path, name: str) -> None:
        """Upload whole (multipart above the threshold); the staged file becomes the cache."""
        self.client.upload_file(str(staged), self.bucket, self.key(name), Config=self.transfer)
        cached = self.cache / name
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, cached)

    def work_dir(self, prefix: str) -> Path:
        path = self.cache / ".work" / prefix
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def publish_dir(self, prefix: str) -> None:
        root = self.cache / ".work" / prefix
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            self.client.upload_file(str(path), self.bucket, self.key(f"{prefix}/{rel}"), Config=self.transfer)


def read_url(url: str | os.PathLike[str]) -> bytes:
    """Bytes of one object by full location: a local path, file:// or s3://bucket/key (the
    endpoint from AWS_ENDPOINT_URL_S3). Missing objects raise FileNotFoundError."""
    text = os.fspath(url)
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
        return _bucket(bucket, os.environ.get("AWS_ENDPOINT_URL_S3")).read_bytes(key)
    return local_path(text).read_bytes()


def remote_objects(url: str) -> list[tuple[str, int, str]]:
    """(key, size, ETag) of the object at an s3:// URL, or of every object under it when it
    names a prefix: enough to tell changed content without downloading it."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    client = _bucket(bucket, os.environ.get("AWS_ENDPOINT_URL_S3")).client
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
        return [(key, int(head["ContentLength"]), head["ETag"].strip('"'))]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    prefix = key.rstrip("/") + "/" if key else ""
    return [
        (obj["Key"], int(obj["Size"]), obj["ETag"].strip('"'))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for obj in page.get("Contents", [])
    ]


@functools.lru_cache(maxsize=32)
def _bucket(bucket: str, endpoint_url: str | None) -> S3Storage:
    """One client per bucket and endpoint: creating boto3 clients per image is slow."""
    return S3Storage(f"s3://{bucket}", endpoint_url=endpoint_url)


def is_remote(location: str | os.PathLike[str]) -> bool:
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def split_url(location: str) -> tuple[str, str]:
    """(folder, file name) of a path or URL."""
    base, _, name = location.rpartition("/")
    return base or ".", name


def join_url(base: str, relative: str) -> str:
    """`relative` resolved against the folder `base` (a path or an s3:// prefix)."""
    if "://" in relative or relative.startswith("/"):
        return relative
    if base.startswith("s3://"):
        return f"{base.rstrip('/')}/{relative}"
    return str(local_path(base) / relative)


def open_storage(
    url: str | os.PathLike[str], endpoint_url: str | None = None, region: str | None = None, cache_dir=None
) -> Storage:
    text = os.fspath(url)
    if text.startswith("s3://"):
        return S3Storage(text, endpoint_url=endpoint_url, region=region, cache_dir=cache_dir)
    return LocalStorage(text)
