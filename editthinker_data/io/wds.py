"""webdataset, as the build's own processes import it: without its torch glue.

webdataset imports torch when it can, only to base `WebDataset` on torch's
`IterableDataset` and to convert tensors. The build reads and writes shards as bytes and
never hands them to a DataLoader, yet every unit worker paid for torch: 1.0 CPU s and 185 MB
of RSS per process (`import` of the unit's modules: 1.5 s and 328 MB with torch, 0.5 s and
144 MB without), in the driver and in every Ray worker that ran a unit.

So where the build's command line set EDITTHINKER_LEAN_IMPORTS=1 (inherited by the local
Ray cluster's workers, forwarded to a remote cluster's with the units) and torch is not
loaded yet, webdataset is imported with torch hidden. Anywhere else (a trainer that imports
this package and then feeds `wds.WebDataset` to a DataLoader, a process that already loaded
torch for an editor) it is imported as it is.
"""

from __future__ import annotations

import os
import sys

LEAN_ENV = "EDITTHINKER_LEAN_IMPORTS"


def _import_webdataset() -> None:
    if "webdataset" in sys.modules or "torch" in sys.modules or os.environ.get(LEAN_ENV) != "1":
        return  # imported below as it is
    sys.modules["torch"] = None  # type: ignore[assignment]  # then `import torch` raises ModuleNotFoundError
    try:
        import webdataset  # noqa: F401
    finally:
        del sys.modules["torch"]  # torch itself stays importable


_import_webdataset()

from webdataset import ShardWriter, WebDataset, handle_extension  # noqa: E402  (as loaded above)

__all__ = ["LEAN_ENV", "ShardWriter", "WebDataset", "handle_extension"]
