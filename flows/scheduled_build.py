"""Scheduled builds: the deployment's flow and its registration.

A deployment run gets only a config location (a path or URL), never an inline config, and
goes through the CLI's own preparation (`execution.prepare`): the config is read when the run
starts (an edited config takes effect at the next run), environment overrides and preflight
apply, and the run claims the output's lease before `build_dataset` writes anything. The
deployment allows one run at a time (later ones wait in AwaitingConcurrencySlot); the lease
refuses any other build of the same output, whichever deployment or terminal started it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, runtime

from editthinker_data.execution.prepare import claim_output, prepare_build
from editthinker_data.stages import check_output, output_storage

FLOW_NAME = "scheduled-build"
ENTRYPOINT = "flows.scheduled_build.scheduled_build"  # a module path: the installed package, no pull step
POOL_TYPE = "process"


@flow(name=FLOW_NAME, log_prints=True)
def scheduled_build(config: str, output: str | None = None, state_dir: str | None = None) -> dict[str, Any]:
    """Build `config` (a path or s3:// URL) into `output` (default: the config's output.dir)."""
    prepared = prepare_build(config, output, state_dir)  # before Ray is imported: it sets Ray's environment
    from flows.build_dataset import build_dataset

    cfg = prepared.cfg
    storage = output_storage(cfg, prepared.output)
    with claim_output(
        cfg, storage, f"deployment run {runtime.flow_run.name} ({runtime.flow_run.id})"
    ) as lease:
        log = get_run_logger()
        if lease.took_over:
            log.warning("took over the lease of a build that stopped beating: %s", lease.took_over)
        check_output(cfg, storage)
        log.info("building %s (fingerprint %s) into %s", prepared.config, cfg.fingerprint(), prepared.output)
        result = build_dataset(cfg.model_dump(), prepared.output, str(prepared.state_dir))
    if lease.lost:
        log.warning("%s while this run built; check the output before using it", lease.lost)
    return {
        "output": prepared.output,
        "fingerprint": cfg.fingerprint(),
        "totals": result.manifest["totals"],
    }


def ensure_work_pool(name: str) -> bool:
    """Create the work pool (type process: the worker runs each flow run in a subprocess of
    its own host or container) when it does not exist; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=name, type=POOL_TYPE, base_job_template=template))
            return True
    if pool.type != POOL_TYPE:
        raise ValueError(
            f"work pool {name!r} is of type {pool.type!r}; scheduled builds run in a {POOL_TYPE!r} pool: "
            "choose another --work-pool name (it is created) or delete that pool"
        )
    return False


def cron_schedule(cron: str, timezone: str) -> Any:
    """The schedule, checked: a ValueError names a bad cron expression or time zone."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as err:
        problem = "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise ValueError(
            f"--cron {cron!r} --timezone {timezone!r}: {problem}; use five cron fields, e.g. "
            '"0 2 * * *" for 02:00 daily, and an IANA time zone such as UTC or Europe/Paris'
        ) from None


def register(
    name: str, config: str, output: str, state_dir: str | None, schedule: Any, work_pool: str
) -> str:
    """Create or update the deployment `scheduled-build/<name>`; its id."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import RunnerDeployment, deploy
    from prefect.types.entrypoint import EntrypointType

    deployment = scheduled_build.to_deployment(
        name=name,
        schedules=[schedule],
        parameters={"config": config, "output": output, "state_dir": state_dir},
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
        ),
        entrypoint_type=EntrypointType.MODULE_PATH,
        work_pool_name=work_pool,
        tags=["editthinker-data"],
        description=f"editthinker-data build of {config} into {output}, cron {schedule.cron!r} ({schedule.timezone})",
    )
    assert isinstance(deployment, RunnerDeployment)  # called from sync code: a value, not a coroutine
    ids = deploy(
        deployment,
        work_pool_name=work_pool,
        build=False,
        push=False,
        print_next_steps_message=False,
        ignore_warnings=True,
    )
    assert isinstance(ids, list)  # called from sync code: a value, not a coroutine
    return str(ids[0])
