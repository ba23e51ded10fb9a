"""The simulated editor stands in for a GPU in benchmarks: it must be busy for its batch's
time, and its edits must be the same on every run (resumed builds compare bytes)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from editthinker_data.backends import EditRequest, create_backend
from editthinker_data.backends.editors.simulated import SimulatedEditor
from editthinker_data.config import BackendSpec
from editthinker_data.core.schema import Role


def _requests(n: int) -> list[EditRequest]:
    rng = np.random.default_rng(0)
    return [
        EditRequest(Image.fromarray(rng.integers(0, 250, (64, 64, 3), dtype=np.uint8)), f"edit {i}", seed=0)
        for i in range(n)
    ]


def test_edits_are_deterministic_and_differ_from_the_source():
    requests = _requests(3)
    first = SimulatedEditor(edit_seconds=0).run_batch(requests)
    again = SimulatedEditor(edit_seconds=0).run_batch(list(reversed(requests)))[::-1]
    for req, a, b in zip(requests, first, again, strict=True):
        assert isinstance(a, Image.Image) and isinstance(b, Image.Image)
        assert a.tobytes() == b.tobytes()  # the batch it shared changes nothing
        diff = np.asarray(a, np.int16) - np.asarray(req.image, np.int16)
        assert diff.min() >= 1 and diff.max() <= 4 and a.size == req.image.size
    # another instruction, seed or editor gives another edit
    other = [
        SimulatedEditor(edit_seconds=0).edit(EditRequest(requests[0].image, "edit 0", seed=1)),
        SimulatedEditor(name="b", edit_seconds=0).edit(requests[0]),
    ]
    assert len({first[0].tobytes(), *(o.tobytes() for o in other)}) == 3


def test_a_batch_sleeps_its_edits_time():
    editor = SimulatedEditor(edit_seconds=0.05, batch_seconds=0.02)
    started = time.perf_counter()
    out = editor.run_batch(_requests(4))
    elapsed = time.perf_counter() - started
    assert len(out) == 4
    assert elapsed >= 0.22  # 4 x 0.05 + 0.02
    assert editor.batch_time(0) == 0.0


def test_created_from_a_config_and_bad_params_fail_fast():
    spec = BackendSpec(kind="simulated", name="flux", params={"edit_seconds": 0.01})
    editor = create_backend(Role.EDITOR, spec)
    assert isinstance(editor, SimulatedEditor) and editor.edit_seconds == 0.01
    with pytest.raises(ValueError, match="edit_seconds"):
        create_backend(Role.EDITOR, BackendSpec(kind="simulated", params={"edit_seconds": -1}))


def test_a_dataset_card_says_its_edits_are_simulated():
    from editthinker_data.config import load_config, parse_config
    from editthinker_data.release.card_notes import test_scale_backends
    from tests.support.paths import ROOT

    data = load_config(ROOT / "configs" / "demo.yaml").model_dump()
    data["editors"][0].update(kind="simulated", params={"edit_seconds": 0.01})
    notes = test_scale_backends(parse_config(data, environ={}))
    assert any("`careful` is the simulated editor" in line for line in notes), notes
