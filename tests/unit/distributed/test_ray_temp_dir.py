"""Ray's socket paths stay within the 107 bytes a Unix socket allows, whatever the length of
the run directory a build's state lives in."""

from __future__ import annotations

from pathlib import Path

from editthinker_data.distributed.runtime import (
    MAX_SOCKET_PATH,
    MAX_TEMP_DIR,
    longest_socket_path,
    ray_temp_dir,
)


def test_socket_paths_fit_for_every_state_dir_length():
    for n in range(8, 160):
        state = Path("/" + "s" * (n - 1))
        temp = ray_temp_dir(state)
        assert longest_socket_path(temp) <= MAX_SOCKET_PATH, (n, temp)
        if n + len("/ray") <= MAX_TEMP_DIR:  # a short one keeps Ray's state under the run directory
            assert temp == state / "ray"


def test_the_path_that_failed():
    """A kill_resume run under a pytest temp dir: 57 bytes, and Ray refused to start."""
    temp = ray_temp_dir(Path("/tmp/etdb-57rac89s/etd-kill-esu5cqrm/reference/_state"))
    assert longest_socket_path(temp) <= MAX_SOCKET_PATH
