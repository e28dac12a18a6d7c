"""clusters/: the Ray launcher YAMLs pass Ray's own schema; the KubeRay manifests run the right thing."""
from __future__ import annotations

import copy
import json
import shlex
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from conftest import ROOT

CLUSTERS = ROOT / "clusters"
LAUNCHER = ["aws.yaml", "gcp.yaml"]
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"rerank-bench:{VERSION}"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_yaml_validates_against_rays_schema(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(name)
    jsonschema.validate(config, SCHEMA)  # the schema file shipped inside the ray package
    validate_config(config)  # Ray's own check (schema + head type, min/max workers)
    validate_config(prepare_config(copy.deepcopy(config)))  # after Ray merges its provider defaults


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_yaml_has_gpu_grid_and_cpu_shap_workers_and_installs_the_project(name):
    config = load(name)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]["node_config"]
    gpu, cpu = types["gpu-grid"]["node_config"], types["cpu-shap"]["node_config"]
    if config["provider"]["type"] == "aws":
        assert gpu["InstanceType"].startswith(("g", "p")) and not cpu["InstanceType"].startswith(("g", "p"))
        assert not head["InstanceType"].startswith(("g", "p"))
    else:
        assert gpu["guestAccelerators"][0]["acceleratorCount"] >= 1 and types["gpu-grid"]["resources"]["GPU"] >= 1
        assert "guestAccelerators" not in cpu and "GPU" not in types["cpu-shap"]["resources"]
    assert types["gpu-grid"]["max_workers"] >= 1 and types["cpu-shap"]["max_workers"] >= 1
    # the checkout goes to every node, without its venv and results; installed with our pins
    assert config["file_mounts"] == {"~/rerank-bench": "."}
    assert {".venv", "results", ".git"} <= set(config["rsync_exclude"])
    setup = "\n".join(config["setup_commands"])
    assert "-c ~/rerank-bench/constraints.txt -e ~/rerank-bench" in setup and "torch==2.13.0" in setup
    # the job server listens on the head's loopback only (reached through `ray dashboard`)
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])


def test_schema_check_catches_a_broken_launcher_yaml():
    from ray.autoscaler._private.util import validate_config

    broken = load("aws.yaml")
    broken["available_node_types"]["gpu-grid"]["resources"] = {"GPU": "one"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)
    broken = load("gcp.yaml")
    broken["head_node_type"] = "missing"
    with pytest.raises(ValueError):
        validate_config(broken)


def containers(cluster_spec: dict) -> dict[str, dict]:
    out = {"head": cluster_spec["headGroupSpec"]["template"]["spec"]["containers"][0]}
    for group in cluster_spec["workerGroupSpecs"]:
        out[group["groupName"]] = group["template"]["spec"]["containers"][0]
    return out


def check_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"] == ray.__version__  # the Ray pinned in constraints.txt
    found = containers(spec)
    assert set(found) == {"head", "gpu-grid", "cpu-shap"}
    for name, c in found.items():
        assert c["image"] == IMAGE, name
        assert c["resources"]["requests"] == c["resources"]["limits"], name  # guaranteed QoS: no CPU oversubscription
    assert found["gpu-grid"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in found["cpu-shap"]["resources"]["limits"]
    assert "nvidia.com/gpu" not in found["head"]["resources"]["limits"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # scoring work goes to the workers
    mounts = {m["name"]: m["mountPath"] for m in found["head"]["volumeMounts"]}
    claim = spec["headGroupSpec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert mounts == {"results": "/home/ray/results"} and claim == load("kuberay/results-pvc.yaml")["metadata"]["name"]


def test_kuberay_raycluster_names_image_and_resources():
    doc = load("kuberay/raycluster.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayCluster")
    check_cluster_spec(doc["spec"])


def test_kuberay_rayjob_runs_an_experiment_config_unchanged():
    from bench.cli import build_parser
    from bench.config import load_experiment

    doc = load("kuberay/rayjob.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayJob")
    spec = doc["spec"]
    check_cluster_spec(spec["rayClusterSpec"])
    assert spec["shutdownAfterJobFinishes"] is True
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "rerank-bench"  # the console script the image installs
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    # the config path inside the image is this repo's file (the Dockerfile copies configs/ to its WORKDIR)
    dockerfile = (CLUSTERS / "kuberay" / "Dockerfile").read_text()
    workdir = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("WORKDIR"))
    assert f"FROM rayproject/ray:{ray.__version__}-py311-gpu" in dockerfile and "COPY --chown=ray:users configs" in dockerfile
    local = ROOT / Path(args.config).relative_to(workdir)
    exp = load_experiment(local, args.set)  # validates exactly as the job will
    assert str(exp.results_dir) == "/home/ray/results"  # on the results volume
    # Ray refuses a job whose runtime_env env_vars repeat keys the driver's ray.init sets (bench.cluster)
    from bench.cluster import WORKER_ENV_KEYS

    job_env = (yaml.safe_load(spec.get("runtimeEnvYAML") or "{}") or {}).get("env_vars", {})
    assert not set(job_env) & {"OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM", *WORKER_ENV_KEYS}
    assert "ENV OMP_NUM_THREADS=1" in dockerfile
