"""Imported first by the command line: its process, and the Ray workers it starts, import
webdataset without torch where nothing needs torch (`io/wds.py`)."""

import os

os.environ.setdefault("EDITTHINKER_LEAN_IMPORTS", "1")
