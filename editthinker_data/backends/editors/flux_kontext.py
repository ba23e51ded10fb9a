"""FLUX.1 Kontext [dev] (diffusers `FluxKontextPipeline`), one of the paper's three editors.

Defaults are the released settings: 28 steps, guidance 2.5, about 1024^2 pixels. The
resolution policy is ours (`pixels`, `resize`, `multiple_of`), so Kontext's own snapping to
its preferred resolutions is turned off: the working size is what the config says.
"""

from __future__ import annotations

from typing import Any

from editthinker_data.backends.editors.diffusers_base import DiffusersEditor


class FluxKontextEditor(DiffusersEditor):
    pipeline_class = "FluxKontextPipeline"
    defaults = {
        "steps": 28,
        "guidance_scale": 2.5,
        "pixels": 1024 * 1024,
        "resize": "area",
        "multiple_of": 16,
    }

    def family_kwargs(self, size: tuple[int, int]) -> dict[str, Any]:
        return {"max_area": size[0] * size[1], "_auto_resize": False}
