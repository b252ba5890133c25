"""deploy/k8s: rendered offline with ``kubectl kustomize``, validated with ``kubernetes-validate --strict``.

No cluster is needed. The tests read the rendered YAML and check what a cluster would only show at
run time: probe paths, /dev/shm, ports, the HPA's metric against the prometheus-adapter rule that
makes it (and against the metrics a real tritonserver exports), and image tags and server flags
against docker-compose.yml.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from bodydance_client import contract as C

yaml = pytest.importorskip("yaml", reason="PyYAML (the dev extra) reads the rendered manifests")

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu")
KUBECTL = shutil.which("kubectl")
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
# The oldest Kubernetes the manifests are meant for, and the newest whose schemas the package bundles.
K8S_VERSIONS = ("1.30.0", None)

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed")


def _kustomize(path: Path) -> str:
    run = subprocess.run([KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _docs(text: str) -> list:
    return [d for d in yaml.safe_load_all(text) if d]


def _one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


@pytest.fixture(scope="module")
def rendered():
    return {overlay: _kustomize(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def manifests(rendered):
    return {overlay: _docs(text) for overlay, text in rendered.items()}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["triton"]


@pytest.fixture(scope="module")
def adapter_rule():
    config = yaml.safe_load((K8S / "prometheus-adapter" / "config.yaml").read_text())
    (rule,) = config["rules"]
    return rule


def _container(docs):
    (container,) = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _flags(args):
    """['--a=1', '--b=x'] -> {'--a': '1', '--b': 'x'}."""
    return dict(a.split("=", 1) for a in args if a.startswith("--"))


def _validate(path: Path, version=None):
    command = [str(VALIDATE), "--strict"] + (["-k", version] if version else []) + [str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _bytes(quantity: str) -> int:
    """Kubernetes (2Gi) or Docker (2gb, 2g) sizes -> bytes; Docker's units are binary."""
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity).groups()
    scale = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20,
             "g": 2**30, "gb": 2**30}[unit]
    return int(number) * scale


# -- rendering and schema validation --------------------------------------------------------
@pytest.mark.skipif(not VALIDATE.exists(), reason="kubernetes-validate (the dev extra) is not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_each_overlay_renders_and_validates_strictly(overlay, version, rendered, tmp_path):
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered[overlay])
    run = _validate(path, version)
    assert run.returncode == 0, run.stdout + run.stderr
    passed = set(re.findall(r"passed for resource (\S+)/", run.stdout))
    assert {"deployment", "service", "horizontalpodautoscaler", "poddisruptionbudget",
            "persistentvolumeclaim", "configmap"} <= passed, run.stdout
    # Only the Prometheus Operator's CRD has no bundled schema.
    unknown = re.findall(r"Couldn't find schema for kind (\w+)", run.stdout + run.stderr)
    assert unknown == ["ServiceMonitor"], unknown


@pytest.mark.skipif(not VALIDATE.exists(), reason="kubernetes-validate (the dev extra) is not installed")
def test_strict_validation_would_catch_a_misspelt_field(manifests, tmp_path):
    docs = copy.deepcopy(manifests["gpu"])
    probe = _container(docs)["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    run = _validate(path)
    assert run.returncode != 0 and "paht" in run.stdout + run.stderr


def test_each_overlay_has_every_part(manifests):
    for docs in manifests.values():
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == sorted(["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PersistentVolumeClaim",
                                "PodDisruptionBudget", "Service", "Service", "Service", "ServiceMonitor"])
        assert _one(docs, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"
        assert _one(docs, "PodDisruptionBudget")["apiVersion"] == "policy/v1"


# -- the server pod -------------------------------------------------------------------------
def test_probes_ask_triton_for_readiness_and_liveness_on_the_http_port(manifests, compose):
    for docs in manifests.values():
        container = _container(docs)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
        paths = {kind: container[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
        assert paths == {"startupProbe": "/v2/health/ready", "readinessProbe": "/v2/health/ready",
                         "livenessProbe": "/v2/health/live"}
        for kind in paths:
            assert ports[container[kind]["httpGet"]["port"]] == 8000
        # compose's health check asks the same endpoint; start-up gets at least compose's start period.
        assert "/v2/health/ready" in " ".join(compose["healthcheck"]["test"])
        startup = container["startupProbe"]
        allowed_s = startup["periodSeconds"] * startup["failureThreshold"]
        assert allowed_s >= int(compose["healthcheck"]["start_period"].rstrip("s"))


def test_dev_shm_is_a_memory_emptydir_with_a_size_limit(manifests, compose):
    limits = {}
    for overlay, docs in manifests.items():
        pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
        (mount,) = [m for m in _container(docs)["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["emptyDir"]["medium"] == "Memory"
        limits[overlay] = _bytes(volume["emptyDir"]["sizeLimit"])
        memory = _container(docs)["resources"]["limits"]["memory"]
        assert limits[overlay] < _bytes(memory)  # shm counts against the container's memory
    assert limits["gpu"] == _bytes(compose["shm_size"])
    assert 0 < limits["cpu"] <= limits["gpu"]


def test_only_the_gpu_overlay_asks_for_a_gpu(manifests):
    gpu = _container(manifests["gpu"])["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in str(_container(manifests["cpu"])["resources"])
    tolerations = _one(manifests["gpu"], "Deployment")["spec"]["template"]["spec"]["tolerations"]
    assert any(t["key"] == "nvidia.com/gpu" for t in tolerations)


def test_server_flags_match_compose_and_close_connections_so_clients_re_resolve(manifests, compose):
    compose_flags = _flags(compose["command"])
    for docs in manifests.values():
        container = _container(docs)
        assert container["command"] == ["tritonserver"] == compose["command"][:1]
        flags = _flags(container["args"])
        for flag, value in compose_flags.items():
            if flag != "--model-repository":
                assert flags.get(flag) == value, flag
        assert int(flags["--grpc-max-connection-age"]) > 0
        assert 0 < int(flags["--grpc-max-connection-age-grace"]) < int(flags["--grpc-max-connection-age"])
        # Kubernetes waits longer than Triton drains (plus the preStop pause) before SIGKILL.
        pod = _one(docs, "Deployment")["spec"]["template"]["spec"]
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert pod["terminationGracePeriodSeconds"] > int(flags["--exit-timeout-secs"]) + pause


def test_the_model_repository_comes_from_the_pvc_by_default(manifests):
    for docs in manifests.values():
        container, pod = _container(docs), _one(docs, "Deployment")["spec"]["template"]["spec"]
        assert _flags(container["args"])["--model-repository"] == "$(MODEL_REPOSITORY)"
        (env,) = [e for e in container["env"] if e["name"] == "MODEL_REPOSITORY"]
        ref = env["valueFrom"]["configMapKeyRef"]
        config = _one(docs, "ConfigMap", ref["name"])  # the generated name with its hash
        (models,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == models["name"]]
        assert config["data"][ref["key"]] == mount["mountPath"] and mount["readOnly"]
        pvc = _one(docs, "PersistentVolumeClaim")
        assert models["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_the_object_store_component_replaces_the_pvc(tmp_path):
    url = "s3://my-bucket/bodydance/gpu"
    rel = Path(os.path.relpath(K8S, tmp_path))  # kustomize takes relative paths to other kustomizations only
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(rel / "overlays" / "gpu")],
        "components": [str(rel / "components" / "object-store")],
        "configMapGenerator": [{"name": "bodydance-triton", "behavior": "merge",
                                "literals": [f"MODEL_REPOSITORY={url}"]}],
    }))
    text = _kustomize(tmp_path)
    docs = _docs(text)
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    assert "persistentVolumeClaim" not in text
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["data"]["MODEL_REPOSITORY"] == url
    if VALIDATE.exists():
        (tmp_path / "out.yaml").write_text(text)
        run = _validate(tmp_path / "out.yaml")
        assert run.returncode == 0, run.stdout + run.stderr


# -- images ---------------------------------------------------------------------------------
def test_every_image_is_the_one_compose_builds_on_the_dockerfiles_triton(manifests, compose):
    image = compose["image"]
    kserve = _docs(_kustomize(K8S / "kserve"))
    images = [c["image"] for docs in manifests.values() for c in
              _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]]
    images += [c["image"] for c in _one(kserve, "ServingRuntime")["spec"]["containers"]]
    assert images and set(images) == {image}
    base = re.search(r"^FROM nvcr\.io/nvidia/tritonserver:(\S+)-py3$",
                     (ROOT / compose["build"]["dockerfile"]).read_text(), re.M).group(1)
    assert image.split(":")[-1] == base


# -- services -------------------------------------------------------------------------------
def _selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_services_reach_the_pods_headless_for_grpc_balancing(manifests):
    for docs in manifests.values():
        pod_labels = _one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        container_ports = {p["name"] for p in _container(docs)["ports"]}
        services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        for service in services.values():
            assert _selects(service["spec"]["selector"], pod_labels)
            assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
        headless = services["bodydance-triton-grpc"]["spec"]
        assert headless["clusterIP"] == "None" and [p["port"] for p in headless["ports"]] == [8001]
        assert services["bodydance-triton"]["spec"]["type"] == "ClusterIP"
        assert {p["port"] for p in services["bodydance-triton"]["spec"]["ports"]} == {8000, 8001}
        monitor = _one(docs, "ServiceMonitor")["spec"]
        metrics = [s for s in services.values() if _selects(monitor["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert [s["metadata"]["name"] for s in metrics] == ["bodydance-triton-metrics"]
        assert [e["port"] for e in monitor["endpoints"]] == [p["name"] for p in metrics[0]["spec"]["ports"]]
        pdb = _one(docs, "PodDisruptionBudget")["spec"]
        assert _selects(pdb["selector"]["matchLabels"], pod_labels)
        assert pdb["maxUnavailable"] < _one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"]


# -- autoscaling ----------------------------------------------------------------------------
def _composing_models(profile: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    text = (ROOT / "model_repository" / profile / C.FRAME_ENSEMBLE.name / "config.pbtxt").read_text()
    config = text_format.Parse(text, pb.ModelConfig())
    return {step.model_name for step in config.ensemble_scheduling.step}


def _models_in(query: str, metric: str):
    """The model=~"a|b" or model="a" selector of ``metric`` in a PromQL query -> {'a', 'b'}."""
    found = re.findall(metric + r'\{[^}]*\bmodel(=~?)"([^"]+)"', query)
    assert found, f"no model selector on {metric} in {query}"
    return [set(models.split("|")) for _, models in found]


def test_the_hpa_metric_is_the_adapter_rule_over_the_frame_paths_composing_models(manifests, adapter_rule):
    composing = _composing_models("cpu")
    assert composing == _composing_models("gpu") == {m.name for m in C.FRAME_STAGES} | {C.FRAME_GUARD.name}
    assert C.FRAME_ENSEMBLE.name not in composing

    name = adapter_rule["name"]
    assert re.match(adapter_rule["name"]["matches"], "nv_inference_queue_duration_us")
    assert adapter_rule["seriesQuery"].startswith("nv_inference_queue_duration_us{")
    assert _models_in(adapter_rule["seriesQuery"], "nv_inference_queue_duration_us") == [composing]
    query = adapter_rule["metricsQuery"]
    assert _models_in(query, "nv_inference_queue_duration_us") == [composing]
    assert _models_in(query, "nv_inference_request_success") == [{C.FRAME_ENSEMBLE.name}]
    assert "<<.LabelMatchers>>" in query and query.count("<<.GroupBy>>") == 2
    assert adapter_rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert adapter_rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}

    for docs in manifests.values():
        hpa = _one(docs, "HorizontalPodAutoscaler")["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": _one(docs, "Deployment")["metadata"]["name"]}
        (metric,) = hpa["metrics"]
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] == name["as"]
        assert metric["pods"]["target"]["type"] == "AverageValue" and int(metric["pods"]["target"]["averageValue"]) > 0
        assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
        assert "replicas" not in _one(docs, "Deployment")["spec"]  # the HPA owns the count


def test_the_adapter_config_renders_as_the_configmap_the_adapter_reads(adapter_rule):
    (config,) = _docs(_kustomize(K8S / "prometheus-adapter"))
    assert config["kind"] == "ConfigMap" and config["metadata"] == {"name": "adapter-config", "namespace": "monitoring"}
    assert yaml.safe_load(config["data"]["config.yaml"])["rules"] == [adapter_rule]


def _scrape(port: int) -> dict:
    """Triton's Prometheus text -> {(metric, model): value} for the counters the adapter rule reads."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for metric, model, value in re.findall(r'^(nv_inference_\w+)\{[^}]*model="([^"]+)"[^}]*\} (\S+)$', text, re.M):
        values[(metric, model)] = values.get((metric, model), 0.0) + float(value)
    return values


@pytest.mark.server
def test_a_real_tritonserver_exports_the_series_the_rule_reads(server, client, subject, adapter_rule):
    """The embedded server's /metrics: the series the rule names exist with those model labels, and one
    video's worth of frames moves them as the rule's ratio expects."""
    from bodydance_client.templates import Template, load_bundled

    dance = load_bundled("wave")
    clip = Template("clip", dance.fps, dance.poses[:6].copy(), dance.translations[:6].copy())
    before = _scrape(server.metrics_port)
    frames = sum(1 for _ in client.frames(subject, clip, window=3))
    after = _scrape(server.metrics_port)
    delta = {k: after[k] - before.get(k, 0.0) for k in after}

    (composing,) = _models_in(adapter_rule["metricsQuery"], "nv_inference_queue_duration_us")
    (ensemble,) = _models_in(adapter_rule["metricsQuery"], "nv_inference_request_success")
    assert delta[("nv_inference_request_success", ensemble.pop())] == frames
    for model in composing:
        assert ("nv_inference_queue_duration_us", model) in after
        assert delta[("nv_inference_request_success", model)] == frames
    per_frame_us = sum(delta[("nv_inference_queue_duration_us", m)] for m in composing) / frames
    assert 0 <= per_frame_us < 60e6


# -- KServe ---------------------------------------------------------------------------------
def test_the_kserve_inference_service_runs_on_the_projects_triton_runtime(compose):
    docs = _docs(_kustomize(K8S / "kserve"))
    runtime, service = _one(docs, "ServingRuntime"), _one(docs, "InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    (container,) = runtime["spec"]["containers"]
    flags = _flags(container["args"])
    assert flags["--model-repository"] == "/mnt/models"  # where KServe's storage initializer puts storageUri
    for flag, value in _flags(compose["command"]).items():
        if flag != "--model-repository":
            assert flags[flag] == value, flag
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["readinessProbe"]["httpGet"]["port"] == int(flags["--http-port"])
    predictor = service["spec"]["predictor"]
    (mount,) = [m for m in model["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    (volume,) = [v for v in predictor["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory" and volume["emptyDir"]["sizeLimit"]
