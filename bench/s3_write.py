"""Shard upload throughput through our storage layer vs. a raw boto3 upload of the same
bytes, against an S3 API server on loopback (moto's server mode), printed as a ratio.

    python bench/s3_write.py [--mb 256] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from editthinker_data.io.storage import S3Storage  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256, help="shard size")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="one shard just above the multipart threshold")
    if ap.parse_known_args()[0].smoke:  # still the multipart path, the one a build's large shards take
        ap.set_defaults(mb=S3Storage.MULTIPART_THRESHOLD // 2**20 + 1, repeat=1)
    args = ap.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="bench")
    payload = os.urandom(args.mb * 1024 * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        storage = S3Storage("s3://bench/ours", endpoint_url=endpoint, cache_dir=tmp)
        ours, raw = [], []
        for i in range(args.repeat):
            staged = storage.staging_path(f"steps/shard-{i}.tar")
            staged.write_bytes(payload)
            t = time.perf_counter()
            storage.commit(staged, f"steps/shard-{i}.tar")
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            client.put_object(Bucket="bench", Key=f"raw/shard-{i}.tar", Body=payload)
            raw.append(time.perf_counter() - t)
    server.stop()
    mb = args.mb
    print(f"shard {mb} MB, best of {args.repeat}, S3 API on loopback (moto)")
    print(f"{'path':<28}{'seconds':>9}{'MB/s':>9}")
    print(f"{'storage.commit (multipart)':<28}{min(ours):>9.2f}{mb / min(ours):>9.1f}")
    print(f"{'raw boto3 put_object':<28}{min(raw):>9.2f}{mb / min(raw):>9.1f}")
    print(f"ratio ours/raw: {min(raw) / min(ours):.2f}")


if __name__ == "__main__":
    main()
