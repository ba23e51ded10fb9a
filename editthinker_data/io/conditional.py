"""Conditional writes, the one primitive the output lease needs: create an object only if it
is absent, replace or delete it only if nobody changed it since we read it. Local disk uses
an atomic link for creation and an advisory lock for compare-and-replace; S3 uses PutObject
with If-None-Match: * and If-Match: <etag> (and DeleteObject with If-Match), which S3,
MinIO, R2 and moto's server honour. `storage.LocalStorage` and `storage.S3Storage` mix these
in; every write is still all-or-nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Versioned:
    """An object's bytes, the version a conditional write compares against (the ETag on S3,
    the sha256 locally) and its age by the store's own clock, so two hosts' clocks never
    have to agree."""

    data: bytes
    version: str
    age_s: float


class LocalConditional:
    """For LocalStorage (needs `self.path(name)`)."""

    path: Callable[[str], Path]  # declared for the type checker; LocalStorage defines it

    @contextlib.contextmanager
    def _exclusive(self, target: Path):
        """Compare-and-replace under an advisory lock on a hidden sibling (POSIX locks hold
        across processes, and on NFSv4 across hosts)."""
        import fcntl

        with open(target.with_name(f".{target.name}.lock"), "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def read_versioned(self, name: str) -> Versioned | None:
        path = self.path(name)
        try:
            data = path.read_bytes()
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None
        return Versioned(data, hashlib.sha256(data).hexdigest(), max(age, 0.0))

    def write_if(self, name: str, data: bytes, version: str | None) -> str | None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            with self._exclusive(target):
                if version is None:
                    try:
                        os.link(tmp, target)  # atomic create: refuses a name that exists
                    except FileExistsError:
                        return None
                else:
                    current = self.read_versioned(name)
                    if current is None or current.version != version:
                        return None
                    os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return hashlib.sha256(data).hexdigest()

    def delete_if(self, name: str, version: str) -> bool:
        path = self.path(name)
        with self._exclusive(path):
            current = self.read_versioned(name)
            if current is None or current.version != version:
                return False
            path.unlink()
        return True


class S3Conditional:
    """For S3Storage (needs `self.client`, `self.bucket`, `self.key(name)`, `self.cache`)."""

    # declared for the type checker; S3Storage sets them
    client: Any  # a boto3 S3 client
    bucket: str
    key: Callable[[str], str]
    cache: Path

    def read_versioned(self, name: str) -> Versioned | None:
        from botocore.exceptions import ClientError

        try:
            r = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise
        data = r["Body"].read()
        now = parsedate_to_datetime(r["ResponseMetadata"]["HTTPHeaders"]["date"])  # the server's clock
        return Versioned(data, r["ETag"], max((now - r["LastModified"]).total_seconds(), 0.0))

    def write_if(self, name: str, data: bytes, version: str | None) -> str | None:
        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            r = self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data, **condition)
        except Exception as err:
            if lost_race(err):
                return None
            raise
        (self.cache / name).unlink(missing_ok=True)
        return r["ETag"]

    def delete_if(self, name: str, version: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name), IfMatch=version)
        except ClientError as err:
            if lost_race(err):
                return False
            if err.response.get("Error", {}).get("Code") not in ("NotImplemented", "501"):
                raise
            # A store without conditional deletes: compare, then delete (a narrow window only
            # at the very end of a build, when nobody else may take the lease anyway).
            current = self.read_versioned(name)
            if current is None or current.version != version:
                return False
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        return True


def lost_race(err: Exception) -> bool:
    """A conditional request the store refused: 412 (the condition failed), 409 (a
    concurrent conditional write won) or 404 (If-Match on an object deleted meanwhile)."""
    from botocore.exceptions import ClientError

    code = err.response.get("Error", {}).get("Code") if isinstance(err, ClientError) else None
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404")
