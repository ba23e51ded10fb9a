"""InstructPix2Pix (diffusers `StableDiffusionInstructPix2PixPipeline`): a small, fast
baseline editor, and the model of the GPU benchmark (SD-sized, random weights).

Its output follows the input size, so the working size is set by resizing the input;
`image_guidance_scale` weighs how close the edit stays to the source.
"""

from __future__ import annotations

from typing import Any

from editthinker_data.backends.editors.diffusers_base import DiffusersEditor


class InstructPix2PixEditor(DiffusersEditor):
    pipeline_class = "StableDiffusionInstructPix2PixPipeline"
    defaults = {
        "steps": 20,
        "guidance_scale": 7.5,
        "image_guidance_scale": 1.5,
        "pixels": 512 * 512,
        "resize": "max_pixels",
        "multiple_of": 8,
    }

    def family_kwargs(self, size: tuple[int, int]) -> dict[str, Any]:
        return {"image_guidance_scale": float(self.settings["image_guidance_scale"])}
