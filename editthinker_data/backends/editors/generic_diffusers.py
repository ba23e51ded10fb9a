"""Any diffusers image-to-image pipeline, named by its class (`pipeline_class`), for
editors without a family file of their own (OmniGen2 where diffusers ships it, Step1X,
img2img baselines). Arguments its `__call__` does not take are left out; `call_kwargs`
passes the ones it needs.
"""

from __future__ import annotations

import re
from typing import Any

from editthinker_data.backends.editors.diffusers_base import DiffusersEditor


class GenericDiffusersEditor(DiffusersEditor):
    defaults = {"pixels": 1024 * 1024, "resize": "max_pixels", "multiple_of": 16, "steps": 28}

    def __init__(self, *args: Any, pipeline_class: str = "", batchable: bool = True, **kwargs: Any):
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]*Pipeline", pipeline_class or ""):
            raise ValueError(
                f"pipeline_class={pipeline_class!r}; name a diffusers pipeline class, "
                f"e.g. StableDiffusionImg2ImgPipeline"
            )
        self.pipeline_class = pipeline_class
        self.batchable = batchable
        super().__init__(*args, **kwargs)
