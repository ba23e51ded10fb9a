"""Ray's Unix sockets fit in 107 bytes under any run state folder: Ray adds a session folder
(`session_<date>_<time>_<microseconds>_<pid>`) and `sockets/<name>` to its temp dir, so the
temp dir is `<state>/ray` only when the longest of those fits, else a short folder in /tmp."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest

from editthinker_data.core.runenv import default_state_dir
from editthinker_data.distributed.runtime import (
    MAX_SOCKET_PATH,
    RAY_SESSION_DIR,
    RAY_SOCKET_NAME,
    longest_socket_path,
    ray_temp_dir,
)

URL = "s3://datasets/editthinker/v1"  # the README's S3 output
# The longest session name Ray makes (a 7-digit pid: Linux's pid_max goes up to 4194304) and
# the socket names it puts in the session's sockets/ (raylet, plasma_store with the index it
# adds when one is taken, the dashboard modules' dash_<Module>, the longest below).
WORST_SESSION = "session_2026-12-06_22-00-44_123456_4194304"
SOCKETS = ("raylet", "plasma_store", "plasma_store.12", "dash_TaskEventsHead")


@pytest.fixture(params=["short", "60"])
def home(request):
    """A home like /root, and one whose path is exactly 60 characters."""
    if request.param == "short":
        yield Path("/root")
        return
    base = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))
    path = base / ("x" * (60 - len(str(base)) - 1))
    path.mkdir()
    assert len(str(path)) == 60
    yield path
    shutil.rmtree(base)


def test_the_longest_socket_path_fits_under_the_default_state_folder(home, monkeypatch):
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("EDITTHINKER_STATE_HOME", raising=False)
    state = default_state_dir(URL)
    assert state.parent == home / ".local" / "state" / "editthinker-data"
    temp = ray_temp_dir(state)
    paths = [str(temp / WORST_SESSION / "sockets" / name) for name in SOCKETS]
    longest = max(len(p.encode()) for p in paths)
    assert longest <= longest_socket_path(temp) <= MAX_SOCKET_PATH == 107, paths
    assert temp.parent == Path(tempfile.gettempdir()) and temp == ray_temp_dir(
        state
    )  # the same folder each run
    assert ray_temp_dir(default_state_dir(URL + "-other")) != temp
    if str(home) == "/root":
        # The old rule (a temp dir of up to 60 characters) kept <state>/ray here: 120 bytes
        # to plasma_store with a 7-digit pid, Ray's "AF_UNIX path length cannot exceed 107 bytes".
        kept = state / "ray"
        assert len(str(kept)) <= 60
        assert len(str(kept / WORST_SESSION / "sockets" / "plasma_store")) == 120


def test_a_short_state_folder_keeps_ray_inside_it():
    state = Path("/tmp/etd-test-abcdefgh")  # what the suite's own state folders look like
    assert ray_temp_dir(state) == state / "ray" and longest_socket_path(state / "ray") == 102


def test_the_budget_holds_for_the_sessions_ray_makes(ray_cluster, state_dir):
    """The session Ray started for the suite: its name has the format counted above, and every
    socket it made has a name within the room left for it."""
    import ray

    node = ray._private.worker._global_node
    session = Path(node.get_session_dir_path())
    assert session.parent == ray_temp_dir(state_dir)
    assert re.fullmatch(r"session_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}_\d{1,7}", session.name), session.name
    assert len("/" + session.name) <= RAY_SESSION_DIR
    sockets = [p for p in (session / "sockets").iterdir() if p.is_socket()]
    assert {"raylet", "plasma_store"} <= {p.name for p in sockets}
    assert all(len(p.name) <= RAY_SOCKET_NAME for p in sockets), sockets
    assert max(len(str(p).encode()) for p in sockets) <= longest_socket_path(session.parent)
