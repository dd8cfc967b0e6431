"""deploy/: the manifests parse, pass the schemas available offline, and agree with the
stage placement of pipelines/configs/cluster.yaml.

What checks what:
- Kubernetes objects and every pod template: the Kubernetes OpenAPI schemas bundled with
  ``kubernetes-validate`` (strict, so unknown fields fail); skipped when it is not installed.
- RayCluster / RayJob (no KubeRay CRD schema ships offline): Ray's own KubeRay autoscaler
  reads them (``_derive_autoscaling_config_from_ray_cr``, validated against Ray's
  ``ray-schema.json``), plus the structural checks below.
- The cluster-launcher YAML: Ray's ``prepare_config`` + ``validate_config`` (ray-schema.json).
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
RAYCLUSTER = DEPLOY / "kuberay" / "raycluster.yaml"
RAYJOB = DEPLOY / "kuberay" / "rayjob.yaml"
STORAGE = DEPLOY / "kuberay" / "storage.yaml"
LAUNCHER = DEPLOY / "cluster-aws.yaml"
CLUSTER_CONFIG = ROOT / "pipelines" / "configs" / "cluster.yaml"
DEFAULT_CONFIG = ROOT / "pipelines" / "configs" / "default.yaml"
IMAGE_ROOT = "/app"  # where deploy/Dockerfile puts the repo

SECRET = "clipstream-ray-token"
GROUPS = {"gpu-decode", "cpu-decode", "gpu-train"}
K8S_VERSION = "1.33"  # schema version the pod templates are checked against


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _one(path: Path, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _docs(path) if d.get("kind") == kind]
    return doc


def _cluster_specs() -> dict[str, dict[str, Any]]:
    """The RayCluster spec and the RayJob's rayClusterSpec, by where they come from."""
    return {
        "RayCluster": _one(RAYCLUSTER, "RayCluster")["spec"],
        "RayJob": _one(RAYJOB, "RayJob")["spec"]["rayClusterSpec"],
    }


def _groups(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in spec["workerGroupSpecs"]}


def _templates(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "head", spec["headGroupSpec"]["template"]
    for name, group in _groups(spec).items():
        yield name, group["template"]


def _ray_resources(spec: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per group, the Ray resources Ray's KubeRay autoscaler derives from the manifest."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    cr = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
          "metadata": {"name": "clipstream", "namespace": "default"}, "spec": copy.deepcopy(spec)}
    node_types = _derive_autoscaling_config_from_ray_cr(cr)["available_node_types"]
    return {name: t["resources"] for name, t in node_types.items()}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _assert_token_env(where: str, container: dict[str, Any]) -> None:
    env = _env(container)
    assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{where}: RAY_AUTH_MODE"
    token = env.get("RAY_AUTH_TOKEN", {})
    assert "value" not in token, f"{where}: the token must come from a Secret, not a literal"
    ref = token.get("valueFrom", {}).get("secretKeyRef", {})
    assert ref == {"name": SECRET, "key": "auth_token"}, f"{where}: RAY_AUTH_TOKEN from {ref}"


# --- parsing and the run configs -------------------------------------------------------


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB, STORAGE, LAUNCHER, CLUSTER_CONFIG,
                                  DEFAULT_CONFIG], ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", [CLUSTER_CONFIG, DEFAULT_CONFIG], ids=lambda p: p.name)
def test_run_configs_load(path: Path) -> None:
    assert isinstance(load_config(path), RunConfig)


def test_default_config_is_local_and_cpu() -> None:
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.address is None and not cfg.train.use_gpu
    for stage in (cfg.data.video, cfg.data.audio, cfg.data.motion, cfg.data.assemble):
        assert stage.backend == "pyav" and stage.num_gpus == 0 and not stage.resources


def test_cluster_config_places_stages_on_their_groups() -> None:
    cfg = load_config(CLUSTER_CONFIG)
    video, audio, motion = cfg.data.video, cfg.data.audio, cfg.data.motion
    assert (video.backend, video.device, video.num_gpus) == ("dali", "gpu", 1)
    assert video.resources == {"decode_gpu": 1}
    assert audio.resources == {"decode_cpu": 1} and motion.resources == {"decode_cpu": 1}
    assert cfg.train.use_gpu


def test_concurrency_override_for_scaling_decode() -> None:
    cfg = load_config(CLUSTER_CONFIG, ["video.concurrency=2:16"])
    assert cfg.data.video.concurrency == (2, 16)


# --- RayCluster and RayJob ----------------------------------------------------------------


def test_kinds_and_api_versions() -> None:
    assert {(d["apiVersion"], d["kind"]) for d in _docs(RAYCLUSTER)} == {("ray.io/v1", "RayCluster")}
    assert {(d["apiVersion"], d["kind"]) for d in _docs(RAYJOB)} == {("ray.io/v1", "RayJob")}


def test_rayjob_runs_on_the_raycluster_spec() -> None:
    specs = _cluster_specs()
    assert specs["RayJob"] == specs["RayCluster"]


@pytest.mark.parametrize("source", ["RayCluster", "RayJob"])
def test_three_autoscaled_worker_groups(source: str) -> None:
    spec = _cluster_specs()[source]
    assert spec["enableInTreeAutoscaling"] is True
    groups = _groups(spec)
    assert set(groups) == GROUPS
    for name, g in groups.items():
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], name
        assert g["maxReplicas"] > g["minReplicas"], f"{name} cannot scale"


@pytest.mark.parametrize("source", ["RayCluster", "RayJob"])
def test_ray_resources_per_group(source: str) -> None:
    res = _ray_resources(_cluster_specs()[source])
    assert res["headgroup"]["CPU"] == 0, "keep data and training work off the head"
    assert res["gpu-decode"]["GPU"] == 1 and res["gpu-decode"]["decode_gpu"] == 1
    assert "GPU" not in res["cpu-decode"] and res["cpu-decode"]["decode_cpu"] >= 1
    assert res["gpu-train"]["GPU"] >= 1 and res["gpu-train"]["trainer"] >= 1
    custom = {"decode_gpu", "decode_cpu", "trainer"}
    owners = {r: [g for g, rs in res.items() if r in rs] for r in custom}
    assert owners == {"decode_gpu": ["gpu-decode"], "decode_cpu": ["cpu-decode"],
                      "trainer": ["gpu-train"]}, "each custom resource on exactly one group"


def test_gpu_limits() -> None:
    for name, template in _templates(_cluster_specs()["RayCluster"]):
        limits = template["spec"]["containers"][0]["resources"]["limits"]
        requests = template["spec"]["containers"][0]["resources"]["requests"]
        wants_gpu = name in ("gpu-decode", "gpu-train")
        assert ("nvidia.com/gpu" in limits) == wants_gpu, name
        assert limits.get("nvidia.com/gpu") == requests.get("nvidia.com/gpu"), name


def test_stage_resources_are_offered_by_a_group() -> None:
    """Every custom resource a stage asks for exists, and its group has room for one actor."""
    cfg = load_config(CLUSTER_CONFIG)
    res = _ray_resources(_cluster_specs()["RayCluster"])
    for stage_name in ("video", "audio", "motion", "assemble"):
        stage = getattr(cfg.data, stage_name)
        fits = [g for g, rs in res.items()
                if all(rs.get(k, 0) >= v for k, v in stage.resources.items())
                and rs.get("CPU", 0) >= stage.num_cpus and rs.get("GPU", 0) >= stage.num_gpus]
        assert fits, f"no worker group can host one {stage_name} actor ({stage})"
        if stage.resources:
            assert "headgroup" not in fits


@pytest.mark.parametrize("source", ["RayCluster", "RayJob"])
def test_token_auth_on_every_container(source: str) -> None:
    spec = _cluster_specs()[source]
    for name, template in _templates(spec):
        for c in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            _assert_token_env(f"{source} {name}/{c['name']}", c)
    _assert_token_env(f"{source} autoscaler", spec["autoscalerOptions"])


def test_rayjob_submitter_has_the_token() -> None:
    pod = _one(RAYJOB, "RayJob")["spec"]["submitterPodTemplate"]
    for c in pod["spec"]["containers"]:
        _assert_token_env(f"submitter/{c['name']}", c)


def test_dashboard_not_exposed() -> None:
    for source, spec in _cluster_specs().items():
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", source
        assert not head.get("enableIngress", False), source
    for path in (RAYCLUSTER, RAYJOB, STORAGE):
        for doc in _docs(path):
            if doc["kind"] == "Service":
                assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", path.name
            assert doc["kind"] != "Ingress", path.name


def test_start_command_is_kuberays_ray_start() -> None:
    """No container overrides its command: KubeRay builds `ray start` from rayStartParams."""
    for name, template in _templates(_cluster_specs()["RayCluster"]):
        c = template["spec"]["containers"][0]
        assert "command" not in c and "args" not in c, name


def test_rayjob_entrypoint_runs_the_cluster_config() -> None:
    job = _one(RAYJOB, "RayJob")["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    words = shlex.split(job["entrypoint"])
    assert words[:4] == ["python", "-m", "pipelines.cli", "pretrain"]
    config = Path(words[words.index("--config") + 1])
    local = ROOT / config.relative_to(IMAGE_ROOT) if config.is_absolute() else ROOT / config
    assert local == CLUSTER_CONFIG


def test_rayjob_entrypoint_parses() -> None:
    if not (ROOT / "pipelines" / "commands" / "pretrain.py").exists():
        pytest.skip("pipelines/commands/pretrain.py is not there yet")
    from pipelines.cli import build_parser

    argv = shlex.split(_one(RAYJOB, "RayJob")["spec"]["entrypoint"])[3:]
    build_parser(argv).parse_args(argv)


# --- Kubernetes schemas -----------------------------------------------------------------


def _pod_template_object(name: str, template: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
            "template": template}


def test_pod_templates_and_objects_match_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    objects = [_pod_template_object(f"{src}-{name}", t)
               for src, spec in _cluster_specs().items() for name, t in _templates(spec)]
    objects.append(_pod_template_object(
        "submitter", _one(RAYJOB, "RayJob")["spec"]["submitterPodTemplate"]))
    objects += _docs(STORAGE)
    for obj in objects:
        kv.validate(obj, K8S_VERSION, strict=True)


def test_kubernetes_schema_check_rejects_a_bad_template() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    template = copy.deepcopy(_groups(_cluster_specs()["RayCluster"])["gpu-decode"]["template"])
    template["spec"]["containers"][0]["enviroment"] = []  # misspelt field
    with pytest.raises(kv.ValidationError):
        kv.validate(_pod_template_object("bad", template), K8S_VERSION, strict=True)


# --- cluster launcher ------------------------------------------------------------------


def _launcher_config() -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(yaml.safe_load(LAUNCHER.read_text()))
    validate_config(config)
    return config


def test_launcher_yaml_matches_ray_schema() -> None:
    config = _launcher_config()
    assert config["provider"]["type"] == "aws"
    assert set(config["available_node_types"]) == GROUPS | {config["head_node_type"]}


def test_launcher_node_types_match_kuberay_groups() -> None:
    """Same custom resources, GPUs and labels as the KubeRay worker groups."""
    types = _launcher_config()["available_node_types"]
    k8s = _ray_resources(_cluster_specs()["RayCluster"])
    groups = _groups(_cluster_specs()["RayCluster"])
    for name in GROUPS:
        for key in ("GPU", "decode_gpu", "decode_cpu", "trainer"):
            assert types[name]["resources"].get(key) == k8s[name].get(key), (name, key)
        assert types[name]["labels"] == groups[name]["labels"], name


def test_launcher_token_auth_and_private_dashboard() -> None:
    config = yaml.safe_load(LAUNCHER.read_text())
    assert "~/.ray/auth_token" in config["file_mounts"]
    for cmd in config["head_start_ray_commands"][-1:] + config["worker_start_ray_commands"][-1:]:
        assert "RAY_AUTH_MODE=token ray start" in cmd
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]


# --- image and docs ----------------------------------------------------------------------


def test_dockerfile_installs_the_locked_environment() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    base = r"^FROM nvidia/cuda:\d+\.\d+\.\d+-(base|runtime)-ubuntu\S+$"
    assert re.search(base, text, re.MULTILINE)
    assert re.search(r"NVIDIA_DRIVER_CAPABILITIES=\S*video", text), "NVDEC needs the video capability"
    syncs = re.findall(r"uv sync ([^\n]*)", text)
    assert syncs and all("--frozen" in s for s in syncs)
    assert f"WORKDIR {IMAGE_ROOT}" in text
    for package in ("pipelines", "workers", "models"):
        assert re.search(rf"^COPY .*\b{package}\b", text, re.MULTILINE), package
    assert f"{IMAGE_ROOT}/.venv/bin" in text, "python on PATH must be the locked environment"


def test_readme_walks_through_secret_port_forward_submit_and_scaling() -> None:
    text = (DEPLOY / "README.md").read_text()
    for needle in (f"kubectl create secret generic {SECRET}", "kubectl port-forward",
                   "clipstream submit --address", "video.concurrency=2:16",
                   "gpu-decode", "cpu-decode"):
        assert needle in text, needle
