from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from editthinker_data import stages
from editthinker_data.config import BuildConfig
from editthinker_data.release.report import Build
from editthinker_data.release.run import run_exports, write_report


@task(name="release", cache_policy=NONE)
def release_task(cfg: BuildConfig, output: str) -> dict:
    """Trainer exports, figures, gallery and dataset card, from the finished shards."""
    build = Build(stages.output_storage(cfg, output))
    exports = run_exports(build, list(cfg.output.exports))
    report = write_report(build, exports) if cfg.output.report else {}
    # the release adds its files to the manifest: hand back the manifest as it now stands
    return {"exports": exports, **report, "manifest": build.storage.read_json("manifest.json")}
