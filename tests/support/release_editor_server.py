"""A local server speaking the EditThinker release's editor contract, for tests.

Its request and response models are those of the release's FastAPI apps
(`inference/server/apis/{flux,qwen,qwen_edit_lightning,omnigen2,longcat}_edit_api.py` in
appletea233/EditThinker), field for field with their defaults and bounds, so a setting out
of a model's range gets FastAPI's own 422. Its routes answer as the release's do: `/health`
always (with `gpu_manager_ready`), `/status` and `/edit` 503 "GPU管理器未初始化" while no
model is loaded, and a failed task as HTTP 500 `{"detail": "<model>图像编辑失败: <error>"}`.

The "model" is any editor backend of ours (the demo's procedural editor, so bytes compare
with the same editor run in-process), one request at a time as on one GPU. Faults are
scripted for the next requests:

- `queue_full`, `timeout`: the release's own busy answers (HTTP 500, 任务队列已满 / 任务超时);
- `queue_full_200`: HTTP 200 `{"success": false, "error": "任务队列已满"}` (what a proxy
  or a re-implementation of the contract answers);
- `503`: not loaded; `429`: a rate-limiting proxy in front;
- `failed`: the task's own error (HTTP 500 with a named reason);
- `refused_200`: HTTP 200 `success: false` with a named reason.
"""

import base64
import io
import random
import threading
import time

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, Field

from editthinker_data.backends import BackendError, EditRequest
from tests.support.loopback_http import LoopbackASGI

MAX_SEED = 2**31 - 1


# ---- the release's pydantic models (descriptions left out) --------------------------------
# No `from __future__ import annotations` here: FastAPI reads the route's model at definition.


class FluxImageEditRequest(BaseModel):
    image: str | None = Field(None)
    prompt: str = Field(...)
    seed: int | None = Field(None)
    guidance_scale: float | None = Field(2.5, ge=0.0, le=7.5)
    num_inference_steps: int | None = Field(28, ge=1, le=100)
    enhance_prompt: bool | None = Field(True)


class ImageEditRequest(BaseModel):  # qwen_edit_api.py
    image: str | None = Field(None)
    prompt: str = Field(...)
    negative_prompt: str | None = Field(" ")
    seed: int | None = Field(None)
    guidance_scale: float | None = Field(4.0, ge=0.0, le=7.5)
    num_inference_steps: int | None = Field(50, ge=1, le=100)
    enhance_prompt: bool | None = Field(True)


class LightningImageEditRequest(BaseModel):
    image: str | None = Field(None)
    prompt: str = Field(...)
    negative_prompt: str | None = Field(" ")
    seed: int | None = Field(None)
    guidance_scale: float | None = Field(1.0, ge=0.0, le=7.5)
    num_inference_steps: int | None = Field(8, ge=1, le=50)
    enhance_prompt: bool | None = Field(True)


class OmniGen2ImageEditRequest(BaseModel):
    image: str | None = Field(None)
    prompt: str = Field(...)
    seed: int | None = Field(None)
    text_guidance_scale: float | None = Field(5.0, ge=0.0, le=10.0)
    image_guidance_scale: float | None = Field(2.0, ge=0.0, le=10.0)
    num_inference_steps: int | None = Field(50, ge=1, le=100)
    negative_prompt: str | None = Field("(((deformed))), blurry, over saturation, bad anatomy")
    enhance_prompt: bool | None = Field(False)


class LongCatImageEditRequest(BaseModel):
    image: str | None = Field(None)
    prompt: str = Field(...)
    negative_prompt: str | None = Field("")
    seed: int | None = Field(None)
    guidance_scale: float | None = Field(4.5, ge=0.0, le=10.0)
    num_inference_steps: int | None = Field(50, ge=1, le=100)
    num_images_per_prompt: int | None = Field(1, ge=1, le=4)


class ImageEditResponse(BaseModel):  # the same fields in all five (LongCat: prompt for the two prompts)
    success: bool = Field(...)
    task_id: str | None = None
    original_image: str | None = None
    edited_image: str | None = None
    seed: int | None = None
    original_prompt: str | None = None
    enhanced_prompt: str | None = None
    gpu_id: int | None = None
    processing_time: float | None = None
    error: str | None = None


class SystemStatus(BaseModel):
    active_workers: int
    task_queue_size: int
    result_queue_size: int
    pending_tasks: int
    total_gpus: int
    system_ready: bool


# family -> (request model, the label its errors start with)
FAMILIES = {
    "flux": (FluxImageEditRequest, "FLUX图像编辑失败"),
    "qwen": (ImageEditRequest, "图像编辑失败"),
    "qwen_lightning": (LightningImageEditRequest, "Lightning图像编辑失败"),
    "omnigen2": (OmniGen2ImageEditRequest, "OmniGen2图像编辑失败"),
    "longcat": (LongCatImageEditRequest, "LongCat图像编辑失败"),
}


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class ReleaseEditorServer:
    def __init__(
        self, editor, *, family: str = "omnigen2", script=(), ready: bool = True, latency_s: float = 0.0
    ):
        model, label = FAMILIES[family]
        self.editor, self.label, self.ready, self.latency_s = editor, label, ready, latency_s
        self.script = list(script)
        self.lock = threading.Lock()
        self.gpu = threading.Lock()  # one task on the model at a time, as on one GPU
        self.requests = 0
        self.bodies: list[dict] = []  # every /edit body that passed validation, without the image
        self.injected: dict[str, int] = {}
        self.pending = 0
        app = FastAPI(title="release-contract editor (tests)")
        server = self

        @app.get("/health")
        async def health():
            return {"status": "健康", "gpu_manager_ready": server.ready, "timestamp": time.time()}

        @app.get("/status", response_model=SystemStatus)
        async def status():
            if not server.ready:
                raise HTTPException(status_code=503, detail="GPU管理器未初始化")
            return SystemStatus(
                active_workers=1, task_queue_size=server.pending, result_queue_size=0,
                pending_tasks=server.pending, total_gpus=1, system_ready=True,
            )  # fmt: skip

        @app.post("/edit", response_model=ImageEditResponse)
        def edit(request: model):  # type: ignore[valid-type]
            return server._edit(request)

        self.app = app
        self.httpd = LoopbackASGI(app)

    def _edit(self, request):
        with self.lock:
            self.requests += 1
            self.bodies.append(request.model_dump(exclude={"image"}))
            fault = self.script.pop(0) if self.script else None
            if fault:
                self.injected[fault] = self.injected.get(fault, 0) + 1
        if not self.ready or fault == "503":
            raise HTTPException(status_code=503, detail="GPU管理器未初始化")
        if fault == "429":
            return JSONResponse(
                {"detail": "Too Many Requests"}, status_code=429, headers={"Retry-After": "0.05"}
            )
        if fault == "queue_full_200":
            return ImageEditResponse(success=False, error="任务队列已满")
        if fault == "refused_200":
            return ImageEditResponse(success=False, error="prompt refused by the safety filter")
        busy = {"queue_full": "任务队列已满", "timeout": "任务超时", "failed": "cannot identify image file"}
        if fault in busy:
            raise HTTPException(status_code=500, detail=f"{self.label}: {busy[fault]}")
        if not request.image:
            raise HTTPException(status_code=400, detail="必须提供输入图像")
        started = time.time()
        source = Image.open(io.BytesIO(base64.b64decode(request.image))).convert("RGB")
        seed = request.seed if request.seed is not None else random.randint(0, MAX_SEED)
        prompt = request.prompt
        if getattr(request, "enhance_prompt", False):  # the release asks an LLM to rewrite it
            prompt = f"{prompt} (enhanced)"
        with self.lock:
            self.pending += 1
        try:
            with self.gpu:
                if self.latency_s:
                    time.sleep(self.latency_s)
                result = self.editor.run_batch([EditRequest(source, prompt, seed)])[0]
        finally:
            with self.lock:
                self.pending -= 1
        if isinstance(result, BackendError):
            raise HTTPException(status_code=500, detail=f"{self.label}: {result}")
        return ImageEditResponse(
            success=True, task_id=f"task_{self.requests}", original_image=request.image,
            edited_image=png_b64(result), seed=seed, original_prompt=request.prompt,
            enhanced_prompt=prompt if prompt != request.prompt else None, gpu_id=0,
            processing_time=time.time() - started,
        )  # fmt: skip

    @property
    def base_url(self) -> str:
        return self.httpd.url

    def __enter__(self) -> "ReleaseEditorServer":
        self.httpd.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.stop()
