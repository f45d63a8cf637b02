"""deploy/k8s: the kustomize base, the cpu and gpu overlays and the request-rate autoscaling component.

The base is read as plain manifests; the overlays are rendered by `kubectl kustomize` (skipped without
kubectl). Checked: resource names agree (Service -> pods, HPA -> Deployment, ConfigMap, Secret keys, claims,
volumes), probes hit routes the app serves on the port it listens on, the container args compose into valid
server and monitor settings once Kubernetes has expanded their $(VARS), the CronJob starts after each window
is complete, and the GPU overlay asks for a GPU on GPU nodes and scales on a metric the API exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CONFIGS, ROOT, env_pairs, load_yaml, parse_duration

K8S = ROOT / "deploy" / "k8s"
SERVE = load_yaml(CONFIGS / "serve.yaml")
MONITOR = load_yaml(CONFIGS / "monitor.yaml")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
ADAPTER = load_yaml(K8S / "components/request-rate-autoscaling/prometheus-adapter-values.yaml")
SECRET_KEYS = {
    line.split("=", 1)[0]
    for line in (K8S / "secret.example.env").read_text().splitlines()
    if "=" in line and not line.startswith("#")
}


def base_docs() -> list[dict[str, Any]]:
    kustomization = load_yaml(K8S / "base" / "kustomization.yaml")
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / "base" / name).read_text()) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "CronJob")]


def expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' expansion of $(VAR) in args; $$(VAR) is a literal, unknown variables stay as written."""
    return re.sub(
        r"\$\$|\$\((\w+)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), arg
    )


def container_env(
    doc: dict[str, Any], container: dict[str, Any], configmaps: dict[str, Any]
) -> dict[str, str]:
    """The container's environment with placeholder secrets and the resource fields resolved."""
    env = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    for item in container.get("env", []):
        ref = item.get("valueFrom", {})
        if "secretKeyRef" in ref:
            env[item["name"]] = f"secret-{ref['secretKeyRef']['key'].lower()}"
        elif "resourceFieldRef" in ref:
            field = ref["resourceFieldRef"]
            owner = next(c for c in pod_spec(doc)["containers"] if c["name"] == field["containerName"])
            kind, resource = field["resource"].split(".")
            value = str(owner["resources"][kind][resource])
            env[item["name"]] = str(int(value[:-1]) // 1000 or 1) if value.endswith("m") else value
        else:
            env[item["name"]] = item["value"]
    return env


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: the overlays cannot be rendered (kubectl kustomize)")
    out = {}
    for overlay in ("cpu", "gpu"):
        done = subprocess.run(
            [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        out[overlay] = [d for d in yaml.safe_load_all(done.stdout) if d]
    return out


def test_base_lists_every_manifest():
    listed = set(load_yaml(K8S / "base" / "kustomization.yaml")["resources"])
    on_disk = {p.name for p in (K8S / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    kinds = sorted(d["kind"] for d in base_docs())
    expected = ["ConfigMap", "CronJob", "Deployment", "HorizontalPodAutoscaler", "Namespace"]
    assert kinds == sorted([*expected, "PersistentVolumeClaim", "PersistentVolumeClaim", "Service"])


def test_service_selects_the_api_pods_and_the_hpa_scales_the_deployment():
    docs = base_docs()
    (deployment,) = by_kind(docs, "Deployment").values()
    (service,) = by_kind(docs, "Service").values()
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    cronjob_pods = by_kind(docs, "CronJob")["seismic-monitor"]["spec"]["jobTemplate"]["spec"]["template"]
    assert not service["spec"]["selector"].items() <= cronjob_pods["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for c in pod_spec(deployment)["containers"] for p in c["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", "seismic-api")
    assert 1 <= hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert (
        metric["resource"]["name"] == "cpu" and 0 < metric["resource"]["target"]["averageUtilization"] < 100
    )
    # CPU utilisation is relative to requests: a container without them cannot be scaled
    assert all("cpu" in c["resources"]["requests"] for c in pod_spec(deployment)["containers"])


def test_probes_hit_the_apps_routes_on_the_port_it_listens_on(app_routes):
    (deployment,) = by_kind(base_docs(), "Deployment").values()
    (api,) = pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    listen = int(next(a.split("=", 1)[1] for a in api["args"] if a.startswith("port=")))
    assert listen == SERVE["port"] == ports["http"]
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = api[probe]["httpGet"]
        assert ports.get(get["port"], get["port"]) == listen
        assert get["path"] in app_routes
        paths[probe] = get["path"]
    assert paths == {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (
        int(annotations["prometheus.io/port"]) == listen and annotations["prometheus.io/path"] in app_routes
    )


def test_configmaps_secrets_claims_and_volumes_referenced_exist(dockerfiles):
    docs = base_docs()
    configmaps, claims = by_kind(docs, "ConfigMap"), by_kind(docs, "PersistentVolumeClaim")
    user = dockerfiles["Dockerfile"][-1].last("USER").split(":")
    required_secrets = set()
    for doc in workloads(docs):
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert [str(spec["securityContext"][k]) for k in ("runAsUser", "runAsGroup")] == user
        volumes = {v["name"]: v for v in spec["volumes"]}
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for container in spec["containers"]:
            assert {m["name"] for m in container["volumeMounts"]} <= set(volumes)
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{container['name']}: {kind}"
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "seismic-secrets" and ref["key"] in SECRET_KEYS
                    if not ref.get("optional"):
                        required_secrets.add(ref["key"])
            env = container_env(doc, container, configmaps)
            for arg in container["args"]:
                unresolved = re.findall(r"\$\((\w+)\)", expand(arg, env))
                assert not unresolved, f"{container['name']}: $({unresolved[0]}) is not in its environment"
    assert required_secrets == {"SEISMIC_API_KEY", "MLFLOW_TRACKING_URI"}


def test_container_args_compose_into_valid_settings(compose_cli, dockerfiles):
    docs = base_docs()
    configmaps = by_kind(docs, "ConfigMap")
    root = env_pairs(next(r for r in dockerfiles["Dockerfile"][-1].all("ENV") if "SEISMIC_ROOT" in r))
    for doc in workloads(docs):
        (container,) = pod_spec(doc)["containers"]
        env = container_env(doc, container, configmaps)
        args = [expand(arg, env) for arg in container["args"]]
        settings, cfg = compose_cli(args, {**env, "SEISMIC_ROOT": root["SEISMIC_ROOT"]})
        assert cfg.env.name == configmaps["seismic-env"]["data"]["SEISMIC_ENV"]
        if doc["kind"] == "Deployment":
            assert settings.host == "0.0.0.0" and settings.api_key is not None
            assert settings.model.source == env["SEISMIC_MODEL_SOURCE"]
            assert settings.model.tracking_uri == env["MLFLOW_TRACKING_URI"]
            assert settings.model.intra_op_threads == int(container["resources"]["limits"]["cpu"])
        else:
            assert settings.model_source == env["SEISMIC_MODEL_SOURCE"] and settings.metrics_port == 0
            assert settings.tracking_uri == env["MLFLOW_TRACKING_URI"] and cfg.schedule.once is True


def test_cronjob_starts_after_each_window_is_complete_and_never_overlaps():
    (cronjob,) = by_kind(base_docs(), "CronJob").values()
    (container,) = pod_spec(cronjob)["containers"]
    every = parse_duration(
        next(a.split("=", 1)[1] for a in container["args"] if a.startswith("schedule.every="))
    )
    delay = parse_duration(MONITOR["schedule"]["delay"]).total_seconds()
    minute, hour, *_ = cronjob["spec"]["schedule"].split()
    assert hour == "*" and every.total_seconds() % 60 == 0
    first, step = re.fullmatch(r"(\d+)-59/(\d+)", minute).groups()
    assert int(step) * 60 == every.total_seconds(), "one run per monitoring window"
    # windows are aligned to the epoch: a window ends on a multiple of `every`, complete `delay` later
    assert delay <= (int(first) * 60) % every.total_seconds() < every.total_seconds() / 2
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"  # one writer of the state file
    assert pod_spec(cronjob)["restartPolicy"] == "Never"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(cronjob)["volumes"]}
    data = mounts["/var/lib/seismic/data"]
    assert (
        data.get("readOnly") and volumes[data["name"]]["persistentVolumeClaim"]["claimName"] == "seismic-data"
    )
    state = volumes[mounts["/var/lib/seismic/outputs"]["name"]]
    assert state["persistentVolumeClaim"]["claimName"] == "seismic-monitor"
    claims = by_kind(base_docs(), "PersistentVolumeClaim")
    assert claims["seismic-data"]["spec"]["accessModes"] == ["ReadWriteMany"]  # API replicas on any node


def test_overlays_render_in_the_namespace_with_the_images_of_this_version(rendered):
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "seismic", f"{overlay}: {doc['metadata']['name']}"
        images = {c["name"]: c["image"] for d in workloads(docs) for c in pod_spec(d)["containers"]}
        api_image = "seismic-gpu" if overlay == "gpu" else "seismic-serving"
        assert images == {"api": f"{api_image}:{VERSION}", "monitor": f"seismic-serving:{VERSION}"}


def test_gpu_overlay_asks_for_a_gpu_on_gpu_nodes_and_scales_on_request_rate(rendered, serving_metric_names):
    docs = rendered["gpu"]
    (deployment,) = by_kind(docs, "Deployment").values()
    spec = pod_spec(deployment)
    (api,) = spec["containers"]
    assert int(api["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    # the probes, the args and the Secret references of the base survive the patch
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready" and api["args"][0] == "scripts/serve.py"
    assert any(e["name"] == "SEISMIC_API_KEY" for e in api["env"])
    (monitor,) = pod_spec(by_kind(docs, "CronJob")["seismic-monitor"])["containers"]
    assert "nvidia.com/gpu" not in monitor["resources"]["limits"]

    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
    (metric,) = hpa["spec"]["metrics"]
    (rule,) = ADAPTER["rules"]["custom"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]
    series = re.match(r"\s*([a-zA-Z_:][\w:]*)", rule["seriesQuery"]).group(1)
    assert re.fullmatch(rule["name"]["matches"], series) and series in serving_metric_names
    cpu = by_kind(rendered["cpu"], "HorizontalPodAutoscaler")["seismic-api"]["spec"]["metrics"]
    assert [m["type"] for m in cpu] == ["Resource"]
