"""Pooling at scale: records/s on a first run (every image read, hashed and thumbnailed)
and on a rerun (signatures from the SQLite cache), and the peak RSS of each, over N
synthetic Pico-Banana records (distinct 256 px JPEGs, 2% exact duplicates, 1% unresolvable
sources, the dataset's 35 edit types).

    python bench/pool_scale.py [--records 50000] [--dir /tmp/pool-bench]   # --dir keeps and reuses the data
    python bench/pool_scale.py --records 400000    # the size of Pico-Banana-400K
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from editthinker_data.core.layout import POOL_UNIT  # noqa: E402
from editthinker_data.execution.base import LocalExecutor  # noqa: E402
from editthinker_data.sources.defaults import PICO_BANANA  # noqa: E402
from editthinker_data.stages.pool import PoolStage  # noqa: E402

LABELS = list(PICO_BANANA)  # the dataset's own 35 edit_type strings


def synthesize(root: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        name = f"img/{i // 1000:04d}/{i}.jpg"
        dup = i % 50 == 49  # every 50th record repeats the previous pair exactly
        if not dup:
            small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((256, 256))
            path = root / name
            path.parent.mkdir(exist_ok=True)
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=85)
            path.write_bytes(buf.getvalue())
            text = f"Edit {i}: change the object in the middle to something else."
        src = lines[-1]["local_input_image"] if dup else (None if i % 100 == 7 else name)
        lines.append(
            {
                "open_image_input_url": f"https://farm.example/{i}_o.jpg",
                "text": text, "summarized_text": text, "output_image": f"images/positive-edit/{i}.png",
                "edit_type": LABELS[i % len(LABELS)], "local_input_image": src,
            }
        )  # fmt: skip
    manifest = root / "sft.jsonl"
    manifest.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


def pool_once(manifest: str, out: str, cache: str) -> None:
    from editthinker_data.config import parse_config
    from editthinker_data.io.storage import LocalStorage

    cfg = parse_config(
        {"source": {"inputs": [{"format": "pico_banana", "path": manifest, "name": "pico"}]}}, environ={}
    )
    started = time.perf_counter()
    report = LocalExecutor().run_one(PoolStage(cfg), LocalStorage(out), POOL_UNIT, sig_cache=cache)
    elapsed = time.perf_counter() - started
    s = report.stats
    print(
        json.dumps(
            {
                "records": s["input"], "kept": s["kept"], "failed": sum(s["failed"].values()),
                "duplicates": s["filtered"].get("duplicate", 0) + s["filtered"].get("near_duplicate", 0),
                "seconds": round(elapsed, 2), "records_per_s": round(s["input"] / elapsed),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "cache": report.signature_cache,
            }
        )
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic data")
    ap.add_argument("--pool-once", nargs=3, metavar=("MANIFEST", "OUT", "CACHE"), help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="200 records: checks it runs")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(records=200)
    args = ap.parse_args()
    if args.pool_once:
        pool_once(*args.pool_once)
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="pool-bench-"))
    t = time.perf_counter()
    manifest = root / "data" / "sft.jsonl"
    if manifest.is_file() and manifest.read_bytes().count(b"\n") == args.records:
        print(f"reusing {args.records} synthetic records under {root}")
    else:
        manifest = synthesize(root / "data", args.records)
        print(f"synthesized {args.records} records in {time.perf_counter() - t:.1f}s under {root}")
    (root / "imagesig.sqlite").unlink(missing_ok=True)
    cache = root / "imagesig.sqlite"
    results = {}
    for run in ("first", "rerun"):  # each in its own process, so peak RSS is pooling's own
        out = root / f"out-{run}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, __file__, "--pool-once", str(manifest), str(out), str(cache)]
        results[run] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        r = results[run]
        print(
            f"{run:>5}: {r['records']} records ({r['kept']} kept, {r['duplicates']} duplicates, {r['failed']} unusable) "
            f"in {r['seconds']}s = {r['records_per_s']} records/s, peak RSS {r['peak_rss_mb']} MB, "
            f"cache hits {r['cache']['hits']} misses {r['cache']['misses']}"
        )
    print(
        f"rerun / first speed: {results['rerun']['records_per_s'] / results['first']['records_per_s']:.2f}x"
    )
    if not args.keep and args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
