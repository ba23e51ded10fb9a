"""infra/kuberay/raycluster.yaml: the fields KubeRay's RayCluster (ray.io/v1) requires, and
agreement with the rest of the repository: the image the Containerfile builds (its version,
its code folder, no wget for KubeRay's default probes), the Ray range pyproject.toml pins,
the head port infra/ray/cluster.yaml and docs/clusters-and-operations.md use."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tests.support.paths import ROOT

MANIFEST = ROOT / "infra" / "kuberay" / "raycluster.yaml"


def load():
    return yaml.safe_load(MANIFEST.read_text())


def pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def containers(cluster):
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_a_raycluster_with_a_head_and_a_gpu_worker_group():
    cluster = load()
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", cluster["metadata"]["name"])  # a DNS label
    spec = cluster["spec"]
    head = spec["headGroupSpec"]
    # What the CRD requires of each group (ray-operator/apis/ray/v1/raycluster_types.go):
    # rayStartParams (a map of strings) and a pod template with containers; workers a
    # groupName, minReplicas and maxReplicas.
    for group in [head, *spec["workerGroupSpecs"]]:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group["rayStartParams"]
        assert group["template"]["spec"]["containers"]
    assert head["rayStartParams"].get("num-gpus") == "0"  # the head holds no editor
    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        resources = group["template"]["spec"]["containers"][0]["resources"]
        if "nvidia.com/gpu" in resources["limits"]:
            gpus = int(resources["limits"]["nvidia.com/gpu"])
            # Kubernetes takes extended resources whole, with requests equal to limits.
            assert (
                gpus >= 1 and resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
            )
            gpu_groups.append(group)
    assert gpu_groups, "no worker group asks for nvidia.com/gpu"


def test_it_agrees_with_the_containerfile_and_the_pinned_ray():
    cluster = load()
    recipe = (ROOT / "infra" / "container" / "Containerfile").read_text()
    project = pyproject()["project"]
    images = {c["image"] for c in containers(cluster)}
    assert len(images) == 1, images  # every pod runs the one image
    name, _, tag = images.pop().rpartition(":")
    assert name.endswith("/editthinker-data") and tag == project["version"]
    assert "infra/container/Containerfile" in MANIFEST.read_text()  # says how the image is built
    workdir = re.search(r"^WORKDIR\s+(\S+)", recipe, re.M).group(1)
    assert {c.get("workingDir") for c in containers(cluster)} == {workdir}

    ray = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "ray")
    assert Version(cluster["spec"]["rayVersion"]) in ray.specifier, (cluster["spec"]["rayVersion"], str(ray))
    # The image installs exactly that Ray: nodes and the driver joining them must agree.
    pinned = re.search(r"^ARG RAY_VERSION=(\S+)$", recipe, re.M).group(1)
    assert pinned == cluster["spec"]["rayVersion"]
    assert '"ray[default]==${RAY_VERSION}"' in recipe

    # KubeRay's default probes run `wget`; a python:*-slim image has none, so every
    # container brings probes of its own that do not call it.
    base = re.search(r"^FROM\s+(\S+)", recipe, re.M).group(1)
    if "slim" in base and "wget" not in recipe:
        for c in containers(cluster):
            for probe in ("readinessProbe", "livenessProbe"):
                command = " ".join(c[probe]["exec"]["command"])
                assert "wget" not in command and "local_raylet_healthz" in command


def test_its_head_address_is_the_one_the_docs_give():
    cluster = load()
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    launcher = (ROOT / "infra" / "ray" / "cluster.yaml").read_text()
    assert f"--port={ports['gcs']}" in launcher and ports["client"] == 10001
    page = (ROOT / "docs" / "clusters-and-operations.md").read_text()
    assert f"{cluster['metadata']['name']}-head-svc:{ports['gcs']}" in page  # the service KubeRay creates
    assert "infra/kuberay/raycluster.yaml" in page


SERVICE = ROOT / "infra" / "kuberay" / "rayservice.yaml"


def test_a_rayservice_serves_a_config_in_the_image_on_the_raycluster_layout():
    """infra/kuberay/rayservice.yaml: a RayService (ray.io/v1) whose serveConfigV2 runs our
    application builder on a config that ships in the image, on a cluster laid out as the
    RayCluster (one image, Ray, working dir, probes without wget) whose GPUs hold every
    replica the config may scale to, with Serve's port where the docs say."""
    import importlib

    from editthinker_data.config import load_config
    from editthinker_data.distributed import serve as served

    service = yaml.safe_load(SERVICE.read_text())
    assert service["apiVersion"] == "ray.io/v1" and service["kind"] == "RayService"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", service["metadata"]["name"])
    cluster = service["spec"]["rayClusterConfig"]
    ours = load()["spec"]
    assert cluster["rayVersion"] == ours["rayVersion"]
    wrapped = {"spec": cluster}
    assert {c["image"] for c in containers(wrapped)} == {c["image"] for c in containers({"spec": ours})}
    workdir = {c["workingDir"] for c in containers(wrapped)}
    assert workdir == {c["workingDir"] for c in containers({"spec": ours})}
    for c in containers(wrapped):
        for probe in ("readinessProbe", "livenessProbe"):
            assert "wget" not in " ".join(c[probe]["exec"]["command"])

    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])  # KubeRay takes it as a string
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert serve_config["http_options"]["port"] == ports["serve"] and ports["dashboard"] == 8265
    assert serve_config["http_options"]["host"] == "0.0.0.0"  # reachable from the trainer's pods
    (application,) = serve_config["applications"]
    module, _, attr = application["import_path"].partition(":")
    assert getattr(importlib.import_module(module), attr) is served.build_app
    args = application["args"]
    path = Path(args["config"])
    (wd,) = workdir
    assert path.is_absolute() and path.is_relative_to(wd)  # inside the image, where COPY put configs/
    local = ROOT / path.relative_to(wd)
    cfg = load_config(local)
    assert served.build_app({**args, "config": str(local)}) is not None  # the builder takes these args
    editors = [e for e in cfg.editors if not args.get("editors") or e.name in args["editors"]]
    want = sum(e.num_actors * e.resources.num_gpus for e in editors)
    have = sum(
        g["replicas"]
        * int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
        for g in cluster["workerGroupSpecs"]
    )
    assert 0 < want <= have, (want, have)
    assert "infra/container/Containerfile" in SERVICE.read_text()
