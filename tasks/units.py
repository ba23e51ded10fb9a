"""Every unit of a build as a Prefect task named for its stage and unit, with the stage's
retries: a retried unit resumes from its journal, so a retry redoes only unjournaled pairs."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture

from editthinker_data.core.reports import StageReport
from editthinker_data.execution.base import Launch
from editthinker_data.stages.base import Stage


@task(cache_policy=NONE)
def unit_task(call: Callable[[], StageReport]) -> StageReport:
    return call()


def prefect_launch(retries: int = 0, retry_delay_s: float = 5.0) -> Launch:
    """An executor's `Launch` that runs each unit as a Prefect task of the running flow."""

    def launch(
        stage: Stage[Any], unit: str, call: Callable[[], StageReport]
    ) -> concurrent.futures.Future[Any]:
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def settle(future: PrefectFuture[Any]) -> None:
            try:
                done.set_result(future.result())
            except BaseException as err:  # the unit's own error, after its retries
                done.set_exception(err)

        named = unit_task.with_options(
            name=str(stage.name),
            task_run_name=f"{stage.name}-{unit}",
            retries=retries,
            retry_delay_seconds=retry_delay_s,
        )
        named.submit(call).add_done_callback(settle)
        return done

    return launch
