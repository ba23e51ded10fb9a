"""The infra files agree with each other and with the code: the Prefect deployment file names
the flow `editthinker-data deploy` registers and its parameters, runs where the container
puts the code, points at a config the image carries (with real backends), and the Ray
cluster runs that image instead of installing from somewhere else."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml

from editthinker_data.config import parse_config
from tests.support.paths import ROOT

INFRA = ROOT / "infra"


def _workdir() -> str:
    text = (INFRA / "container" / "Containerfile").read_text()
    return re.search(r"^WORKDIR (\S+)$", text, re.M).group(1)


def test_prefect_file_matches_the_flow_the_container_and_the_deploy_command():
    from flows.scheduled_build import ENTRYPOINT, scheduled_build

    spec = yaml.safe_load((INFRA / "prefect" / "prefect.yaml").read_text())
    (pull,) = spec["pull"]
    code_dir = pull["prefect.deployments.steps.set_working_directory"]["directory"]
    assert code_dir == _workdir()
    (deployment,) = spec["deployments"]
    assert deployment["entrypoint"] == ENTRYPOINT
    assert deployment["concurrency_limit"]["limit"] == 1
    params = deployment["parameters"]
    assert set(params) == set(inspect.signature(scheduled_build.fn).parameters)
    # The config is a location inside the image, copied there from this repository.
    rel = Path(params["config"]).relative_to(code_dir)
    assert (ROOT / rel).is_file() and f"COPY {rel.parts[0]} " in (
        INFRA / "container" / "Containerfile"
    ).read_text()
    cfg = parse_config(yaml.safe_load((ROOT / rel).read_text()), base_dir=(ROOT / rel).parent, environ={})
    kinds = [e.kind for e in cfg.editors] + [cfg.expert.kind, cfg.scorer.kind]
    assert "procedural" not in kinds
    assert params["output"].startswith("s3://")


def test_ray_cluster_runs_the_container_image_and_installs_nothing_else():
    cluster = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    assert cluster["docker"]["image"].endswith("editthinker-data:0.1.0")
    text = (INFRA / "ray" / "cluster.yaml").read_text()
    assert "git+" not in text and "setup_commands" not in cluster
    assert _workdir() in text
