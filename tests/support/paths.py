"""Where the repository and its demo config are, and the test bucket's name: shared by the
conftest fixtures and the tests, which import them from here rather than from conftest.py
(pytest loads conftest itself; importing it again would run its set-up twice)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "etd-test"
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
