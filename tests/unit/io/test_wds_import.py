"""The build's processes import webdataset without torch; other processes get it whole."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
from editthinker_data.io.shards import ShardSink
from editthinker_data.io.storage import LocalStorage
from editthinker_data.io.wds import WebDataset
import webdataset
sink = ShardSink(LocalStorage(sys.argv[1]), "steps/sft/x", 10, 10**6)
sink.write({"__key__": "a", "json": {"k": 1}, "png": b"\\x89PNG"})
[info] = sink.close()
[sample] = list(WebDataset(sys.argv[1] + "/" + info.url, shardshuffle=False, empty_check=False))
assert sample["__key__"] == "a" and sample["png"] == b"\\x89PNG"
import torch  # still importable afterwards
print("torch-before" if getattr(webdataset.pytorch.IterableDataset, "__module__", "").startswith("torch") else "lean")
"""


def _run(tmp_path, lean):
    env = {k: v for k, v in os.environ.items() if k != "EDITTHINKER_LEAN_IMPORTS"}
    if lean:
        env["EDITTHINKER_LEAN_IMPORTS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_command_lines_processes_write_and_read_shards_without_loading_torch(tmp_path):
    assert _run(tmp_path / "a", lean=True) == "lean"


def test_elsewhere_webdataset_keeps_its_torch_datasets(tmp_path):
    assert _run(tmp_path / "b", lean=False) == "torch-before"


def test_the_command_line_sets_the_flag_before_anything_imports_webdataset():
    probe = "import sys, editthinker_data.cli; print('torch' in sys.modules, 'webdataset' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "EDITTHINKER_LEAN_IMPORTS"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    probe = "import os, editthinker_data.cli; print(os.environ['EDITTHINKER_LEAN_IMPORTS'])"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"
