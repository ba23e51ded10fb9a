"""An expert outage through the demo build (issue 26): the expert is the local
OpenAI-compatible test server, the editors an HTTP editor service that counts every edit,
both on loopback (threads of this process), and each build is `editthinker-data build`, run
in this process on one local Ray cluster, so start-up is paid once and the walls compare
the builds alone.

1. past the wait (run first, so it also warms up Prefect and Ray): the expert goes away for
   good after its `--after`-th request, with `run.outage_wait_s` at `--wait-s`: exit 75; then,
   the expert back, the same command finishes it, and the edits it makes that the first run
   had made already are counted (the goal is 0: the edit store keeps them);
2. healthy: the expert up throughout;
3. outage: the expert goes away after its `--after`-th request for `--outage-s` seconds
   (default: 4 minutes after the 30th); the build should pause, resume and exit 0 in the same
   run with the healthy shards and no more edits than the healthy build plus its in-flight
   peak.

    python bench/outage.py [--outage-s 240] [--after 30] [--wait-s 20] [--smoke]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from editthinker_data.distributed.runtime import ensure_ray, shutdown  # noqa: E402
from tests.support.editor_server import EditorServer  # noqa: E402
from tests.support.openai_server import ChatServer  # noqa: E402
from tests.support.outage_build import cli_build, outage_config, peak_in_flight, repeated, shards  # noqa: E402


def build(cfg, work: Path, out: Path, state: Path) -> tuple[int, float]:
    """The CLI's build: exit code and wall seconds."""
    started = time.perf_counter()
    code, text = cli_build(cfg, work, out, state)
    wall = time.perf_counter() - started
    if code not in (0, 75):
        sys.exit(f"{out.name}: build exited {code}:\n{text[-4000:]}")
    return code, wall


def set_outage(expert: ChatServer, after: int | None, outage_s: float | None = None) -> None:
    with expert.lock:
        expert.requests, expert.fail_after, expert.outage_s = 0, after, outage_s
        expert.outage_from = expert.outage_until = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outage-s", type=float, default=240.0, help="how long the expert is out")
    ap.add_argument("--after", type=int, default=30, help="the outage starts after this many expert requests")
    ap.add_argument("--wait-s", type=float, default=20.0, help="run.outage_wait_s of the third build")
    ap.add_argument("--quota", type=int, default=None, help="source.per_type_quota (demo: 12, 40 pairs)")
    ap.add_argument("--smoke", action="store_true", help="5 pairs, a 3 s outage after 4 requests")
    if ap.parse_known_args()[0].smoke:
        ap.set_defaults(outage_s=3.0, after=4, wait_s=2.0, quota=1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="etd-out-"))
    state = work / "st"
    for attempt in range(3):  # on a loaded machine Ray's start-up may time out
        try:
            ensure_ray(None, None, state)
            break
        except Exception as err:  # Ray raises a bare Exception for it
            shutdown()
            if attempt == 2:
                raise
            print(f"Ray did not start ({err}); trying again", file=sys.stderr)
    try:
        with EditorServer(scale=1) as editor, ChatServer() as expert:

            def config(**run):
                return outage_config(editor.base_url, expert.base_url, per_type_quota=args.quota, **run)

            # First the build that waits past run.outage_wait_s and its rerun: they also warm up
            # Prefect and Ray, so the healthy and outage builds' walls compare the builds alone.
            set_outage(expert, args.after)  # for good
            n = len(editor.edits)
            code_w, wall_w = build(config(outage_wait_s=args.wait_s), work, work / "waited", state)
            first = editor.edits[n:]
            set_outage(expert, None)
            n = len(editor.edits)
            code_r, wall_r = build(config(outage_wait_s=args.wait_s), work, work / "waited", state)
            again = editor.edits[n:]

            n = editor.requests
            code_h, wall_h = build(config(), work, work / "healthy", state)
            edits_h = editor.requests - n
            if code_h != 0:
                sys.exit("the healthy build did not finish")

            set_outage(expert, args.after, args.outage_s)
            n = editor.requests
            code_o, wall_o = build(config(), work, work / "outage", state)
            edits_o = editor.requests - n
            out_s = (expert.outage_until or 0) - (expert.outage_from or 0)
            peak = peak_in_flight(work / "outage") if code_o == 0 else 0
            same = code_o == 0 and shards(work / "outage") == shards(work / "healthy")
            same_r = code_r == 0 and shards(work / "waited") == shards(work / "healthy")
    finally:
        shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print(f"expert outage of {out_s:.0f} s after its request {args.after}; one Ray cluster for all builds")
    print(f"{'build':<10} {'exit':>4} {'wall s':>8} {'edits':>6}")
    print(f"{'healthy':<10} {code_h:>4} {wall_h:>8.1f} {edits_h:>6}")
    print(f"{'outage':<10} {code_o:>4} {wall_o:>8.1f} {edits_o:>6}")
    print(f"edits outage / healthy: {edits_o / edits_h:.2f}x (allowed: up to +{peak}, the in-flight peak)")
    print(f"wall outage - healthy: {wall_o - wall_h:.1f} s (the outage: {out_s:.1f} s)")
    print(f"shards identical: {'yes' if same else 'no'}")
    print(f"past run.outage_wait_s={args.wait_s:g}: exit {code_w} after {wall_w:.1f} s, {len(first)} edits")
    print(
        f"rerun: exit {code_r} after {wall_r:.1f} s, {len(again)} edits, repeated {repeated(first, again)}; "
        f"shards identical: {'yes' if same_r else 'no'}"
    )


if __name__ == "__main__":
    main()
