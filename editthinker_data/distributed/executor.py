"""The Ray executor: a stage's units as Ray tasks on the cluster, with the resources the
stage declares. Each task opens the output from its URL, reads its inputs there and writes
its outputs there (markers last, through `run_unit`), so images never pass through the
driver, which gets back only the units' small reports."""

from __future__ import annotations

import os
from typing import Any

import ray

from editthinker_data.execution.base import Executor, run_unit_at

# Where the output and the sources live is not a secret; credentials stay with each node.
_FORWARDED_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "EDITTHINKER_CACHE_DIR")


class RayExecutor(Executor):
    def _map(self, stage, output, units, inputs) -> list[dict[str, Any] | BaseException]:
        env = {k: os.environ[k] for k in _FORWARDED_ENV if os.environ.get(k)}
        task = ray.remote(run_unit_at).options(
            num_cpus=stage.resources.num_cpus,
            num_gpus=stage.resources.num_gpus,
            max_retries=0,  # a unit is retried by the flow (and resumes from its journal)
            runtime_env={"env_vars": env} if env else None,
            name=f"{stage.name}-unit",
        )
        refs = [task.remote(stage, output, unit, inputs(unit)) for unit in units]
        out: list[dict[str, Any] | BaseException] = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayTaskError as err:  # the unit's own exception, as raised
                out.append(err.as_instanceof_cause())
            except ray.exceptions.RayError as err:  # the worker or its node died
                out.append(err)
        return out
