"""The compose stack: docker-compose.yml with its staging and prod overrides, Prometheus and Grafana.

The files are read as `docker compose` reads them (interpolation, overrides merged) and checked against the
configs, the images and each other; every metric the dashboard and the alert rules query is checked against
what the API and the monitor really export (their registries, the monitor after a real window); promtool
checks the PromQL when it is installed. The slow test runs the compose commands (MLflow server, API, monitor
and their healthchecks) from the slim image's venv, on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

from tests.deploy.conftest import (
    COMPOSE_FILES,
    CONFIGS,
    ROOT,
    MissingVariable,
    env_pairs,
    free_port,
    http,
    in_windows,
    load_yaml,
    metric_names,
    parse_duration,
    service_env,
    set_option,
)

SERVE = load_yaml(CONFIGS / "serve.yaml")
MONITOR = load_yaml(CONFIGS / "monitor.yaml")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PROMETHEUS = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")
ALERTS = load_yaml(ROOT / "deploy/prometheus/alerts.yml")
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/seismic.json").read_text())
DATASOURCES = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")
PROVIDERS = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/seismic.yml")
ADAPTER = load_yaml(ROOT / "deploy/k8s/components/request-rate-autoscaling/prometheus-adapter-values.yaml")
SHELL = {"SEISMIC_API_KEY": "test-key", "GRAFANA_ADMIN_PASSWORD": "test-password"}
ENV_OF = {
    "docker-compose.yml": "dev",
    "docker-compose.staging.yml": "staging",
    "docker-compose.prod.yml": "prod",
}
PINNED = re.compile(r"^[\w.\-/]+:v?\d+(\.\d+)+[\w.\-]*$")
PROMETHEUS_OWN = {"up"}  # series Prometheus makes for every target


def files_for(name: str) -> tuple[str, ...]:
    return COMPOSE_FILES[:1] if name == COMPOSE_FILES[0] else (COMPOSE_FILES[0], name)


def option(argv: list[str], key: str) -> str:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{key}=")]
    assert len(values) == 1, f"{key} given {len(values)} times in {argv}"
    return values[0]


def url_of(healthcheck: list[str]) -> str:
    return re.search(r"http://[^'\"]+", healthcheck[-1]).group(0)


def mounts(service: dict) -> dict[str, str]:
    """container path -> volume name or host folder"""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def image_env(dockerfiles) -> dict[str, str]:
    return {k: v for rest in dockerfiles["Dockerfile"][-1].all("ENV") for k, v in env_pairs(rest).items()}


# ---------------------------------------------------------------- PromQL


def promql_metrics(expr: str) -> set[str]:
    """The series names an expression selects: strings, label matchers, ranges, grouping label lists and
    Grafana variables removed; identifiers left that are not functions or keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    keywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][\w:]*", expr):
        if not expr[match.end() :].lstrip().startswith("(") and match.group(0) not in keywords | {"offset"}:
            names.add(match.group(0))
    return names


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    return [rule["expr"] for group in ALERTS["groups"] for rule in group["rules"]]


def test_promql_metric_extraction():
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x", e=~"/v2/.*"}[$__rate_interval]))) > 1'
    )
    assert promql_metrics(expr) == {"a_bucket"}
    assert promql_metrics("time() - max(b_seconds{j='x'}) / on(i) group_left c offset 5m") == {
        "b_seconds",
        "c",
    }
    assert promql_metrics("topk(8, d) and sum(e) by (f) unless g == bool 1e3") == {"d", "e", "g"}


@pytest.fixture(scope="module")
def monitor_metric_names(model_dir, write_inference_log, tmp_path_factory) -> set[str]:
    """What the monitor's /metrics exports after a real window with drift (its registry, in process)."""
    from prometheus_client import generate_latest
    from prometheus_client.core import CollectorRegistry

    from seismic.monitoring.drift.config import DriftConfig
    from seismic.monitoring.job.schedule import Monitor, ScheduleSettings

    root = tmp_path_factory.mktemp("monitor-metrics")
    every = dt.timedelta(hours=1)
    write_inference_log(root / "log", in_windows(every, dt.datetime.now(dt.UTC) - every))
    # late labels for every logged row, so the realised-performance gauges are exported too
    import pyarrow.parquet as pq

    from seismic.monitoring.quality.labels import ingest_labels
    from seismic.monitoring.quality.window import QualitySettings
    from serving.inference_log_schema import read_inference_log

    served = read_inference_log(root / "log", columns=["request_id", "window_index", "predicted_class"])
    pq.write_table(served.rename_columns(["request_id", "window_index", "label"]), root / "labels.parquet")
    classes = json.loads((Path(model_dir) / "metadata.json").read_text())["class_names"]
    ingest_labels(root / "labels.parquet", root / "labels", class_names=classes, log_dir=root / "log")
    settings = ScheduleSettings(
        model_source=str(model_dir),
        log_dir=str(root / "log"),
        output_dir=str(root / "monitor"),
        state_file=str(root / "monitor" / "state.json"),
        every=every,
        delay=dt.timedelta(0),
        backfill=3,
        drift=DriftConfig.from_mapping(
            {"embedding": {"mmd": {"permutations": 99}}, "calibration": {"n_chunks": 8}}
        ),
        channels=[{"type": "log", "path": str(root / "alerts.jsonl")}],
        quality=QualitySettings(labels_dir=root / "labels"),
    )
    monitor = Monitor(settings)
    assert any(w["verdict"] == "drift" for w in monitor.run_once())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(monitor)
    return metric_names(generate_latest(registry).decode())


def test_dashboard_rules_and_adapter_query_only_exported_metrics(serving_metric_names, monitor_metric_names):
    exported = serving_metric_names | monitor_metric_names | PROMETHEUS_OWN
    assert {"seismic_drift_detected", "seismic_monitor_alerts_sent_total"} <= monitor_metric_names
    assert {"seismic_quality_estimated", "seismic_quality_realised_drop"} <= monitor_metric_names
    queries = {
        "dashboard": dashboard_exprs(),
        "alert rules": rule_exprs(),
        "prometheus-adapter": [rule["seriesQuery"] for rule in ADAPTER["rules"]["custom"]],
    }
    for where, exprs in queries.items():
        used = set().union(*map(promql_metrics, exprs))
        assert used, f"no metric found in the {where} queries"
        assert used <= exported, f"{where} queries metrics nothing exports: {sorted(used - exported)}"


def test_dashboard_shows_the_required_views():
    used = set().union(*map(promql_metrics, dashboard_exprs()))
    exprs = "\n".join(dashboard_exprs())
    assert "rate(seismic_http_requests_total" in exprs  # request rate
    for q in ("0.5", "0.95", "0.99"):  # latency quantiles from the histogram
        assert (
            f"histogram_quantile({q}, sum by (le) (rate(seismic_http_request_duration_seconds_bucket" in exprs
        )
    assert "seismic_batch_size_windows_bucket" in used  # batch size
    assert "sum by (class_name) (rate(seismic_predictions_total" in exprs  # predictions by class
    drift = {n for n in used if n.startswith("seismic_drift_")}
    assert len(drift) >= 8, f"drift gauges on the dashboard: {sorted(drift)}"
    assert {"seismic_monitor_alerts_sent_total", "seismic_monitor_active_alerts"} <= used  # alerts


def test_dashboard_panels_use_the_provisioned_datasource_and_do_not_overlap():
    (source,) = DATASOURCES["datasources"]
    ids, cells = set(), set()
    for panel in DASHBOARD["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        box = panel["gridPos"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells and x < 24, f"panel {panel['title']!r} overlaps or leaves the grid"
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": source["type"], "uid": source["uid"]}
            assert panel["targets"] and all(t["datasource"]["uid"] == source["uid"] for t in panel["targets"])


def test_grafana_and_prometheus_are_wired_to_the_compose_services(compose_config, app_routes):
    services = compose_config()["services"]
    (source,) = DATASOURCES["datasources"]
    prometheus_url = urlsplit(source["url"])
    assert prometheus_url.hostname == "prometheus"
    assert f"{prometheus_url.port}:{prometheus_url.port}" in services["prometheus"]["ports"]
    grafana = mounts(services["grafana"])
    (provider,) = PROVIDERS["providers"]
    assert grafana[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert grafana["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]
    assert (ROOT / "deploy/grafana/dashboards" / Path(home).name).is_file()

    config_file = option(services["prometheus"]["command"], "--config.file")
    assert mounts(services["prometheus"])[str(Path(config_file).parent)] == "./deploy/prometheus"
    assert Path(config_file).name == "prometheus.yml"
    for rule_file in PROMETHEUS["rule_files"]:
        assert (ROOT / "deploy/prometheus" / rule_file).is_file()
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    api_port = int(option(services["api"]["command"], "port"))
    monitor_port = int(option(services["monitor"]["command"], "metrics.port"))
    assert jobs["seismic-api"]["static_configs"] == [{"targets": [f"api:{api_port}"]}]
    assert jobs["seismic-monitor"]["static_configs"] == [{"targets": [f"monitor:{monitor_port}"]}]
    assert jobs["seismic-api"]["metrics_path"] == "/metrics" and "/metrics" in app_routes
    # the job labels the dashboard and the rules select on
    for expr in dashboard_exprs() + rule_exprs():
        for job in re.findall(r'job="([^"]+)"', expr):
            assert job in jobs, f"{expr}: no scrape job {job}"


def test_services_images_and_ports_agree_with_the_configs(compose_config, app_routes):
    services = compose_config()["services"]
    assert set(services) == {"mlflow", "api", "monitor", "prometheus", "grafana"}
    for name, service in services.items():
        assert PINNED.match(service["image"]), f"{name}: image {service['image']} is not pinned"
    for name in ("api", "monitor"):
        assert services[name]["image"] == f"seismic-serving:{VERSION}"
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    # the tracking server speaks the client's protocol version
    mlflow_tag = services["mlflow"]["image"].rsplit(":v", 1)[1]
    client = installed_version("mlflow")
    spec = next(
        Requirement(d).specifier
        for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        if Requirement(d).name == "mlflow"
    )
    assert mlflow_tag == client and client in spec

    api, monitor, mlflow = (
        services["api"]["command"],
        services["monitor"]["command"],
        services["mlflow"]["command"],
    )
    assert int(option(api, "port")) == SERVE["port"] and option(api, "host") == "0.0.0.0"
    assert f"{SERVE['port']}:{SERVE['port']}" in services["api"]["ports"]
    assert int(option(monitor, "metrics.port")) == MONITOR["metrics"]["port"]
    assert option(monitor, "metrics.host") == "0.0.0.0" and option(monitor, "model_dir").startswith(
        "models:/"
    )
    monitor_probe = urlsplit(url_of(services["monitor"]["healthcheck"]["test"]))
    assert monitor_probe.port == MONITOR["metrics"]["port"] and monitor_probe.path == "/metrics"
    # the API's healthcheck is the image's (liveness route); the monitor overrides it
    assert "healthcheck" not in services["api"]

    mlflow_port = int(option(mlflow, "--port"))
    mlflow_probe = urlsplit(url_of(services["mlflow"]["healthcheck"]["test"]))
    assert mlflow_probe.port == mlflow_port and f"{mlflow_port}:{mlflow_port}" in services["mlflow"]["ports"]
    for name in ("api", "monitor"):
        tracking = urlsplit(services[name]["environment"]["MLFLOW_TRACKING_URI"])
        assert (tracking.hostname, tracking.port) == ("mlflow", mlflow_port)
        # MLflow answers 403 to Host headers it was not told about
        assert tracking.netloc in option(mlflow, "--allowed-hosts").split(",")
        assert services[name]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    store = mounts(services["mlflow"])
    assert option(mlflow, "--backend-store-uri").startswith(f"sqlite:///{next(iter(store))}/")
    assert option(mlflow, "--artifacts-destination").startswith(f"{next(iter(store))}/")
    assert "--serve-artifacts" in mlflow and all(v in compose_config()["volumes"] for v in store.values())


def test_api_and_monitor_share_the_inference_log_and_keep_state_on_volumes(
    compose_config, compose_cli, dockerfiles
):
    services = compose_config()["services"]
    env = {
        "SEISMIC_ROOT": image_env(dockerfiles)["SEISMIC_ROOT"],
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }
    serve, _ = compose_cli(services["api"]["command"], env)
    monitor, _ = compose_cli(services["monitor"]["command"], env)
    assert serve.inference_log.directory == monitor.log_dir

    def volume_holding(service: str, path: str) -> tuple[str, str]:
        for target, source in mounts(services[service]).items():
            if path.startswith(target.rstrip("/") + "/"):
                assert source in compose_config()["volumes"], f"{service}: {target} is not a named volume"
                return source, target
        raise AssertionError(f"{service}: {path} is on no volume")

    log_volume, _ = volume_holding("api", serve.inference_log.directory)
    assert volume_holding("monitor", monitor.log_dir)[0] == log_volume
    for path in (monitor.state_file, monitor.output_dir):
        assert volume_holding("monitor", path)[0] != log_volume
    assert "monitor" not in {s for s in mounts(services["api"]).values()}


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_environment_composes_and_differs_from_dev_only_by_env(
    name, compose_config, compose_cli, dockerfiles
):
    base = compose_config(COMPOSE_FILES[:1], SHELL)["services"]
    services = compose_config(files_for(name), SHELL)["services"]
    env_name = ENV_OF[name]
    root = image_env(dockerfiles)["SEISMIC_ROOT"]
    for service in ("api", "monitor"):
        command = services[service]["command"]
        assert command == set_option(base[service]["command"], "env", env_name)
        environment = {"SEISMIC_ROOT": root, **service_env(services[service], SHELL)}
        settings, cfg = compose_cli(command, environment)
        assert cfg.env.name == env_name
        if service == "api":
            assert settings.env == env_name and settings.model.tracking_uri == "http://mlflow:5000"
            assert (settings.api_key is not None) == (env_name != "dev")
        else:
            assert settings.metrics_port == MONITOR["metrics"]["port"] and settings.every.total_seconds() > 0
    if env_name == "dev":
        return
    # the key clients send is required: compose refuses to start without it
    with pytest.raises(MissingVariable, match="SEISMIC_API_KEY"):
        compose_config(files_for(name), {k: v for k, v in SHELL.items() if k != "SEISMIC_API_KEY"})
    for service_name, service in services.items():
        assert service.get("restart") in ("unless-stopped", "always"), f"{name}: {service_name} not restarted"
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[mg]", limits["memory"]), service_name
    # optional secrets pass through only when set (an empty URL would not skip the channel)
    optional = {k for k, v in services["monitor"]["environment"].items() if v is None}
    assert {"SEISMIC_ALERT_WEBHOOK_URL", "SEISMIC_SLACK_WEBHOOK_URL"} <= optional
    if env_name == "prod":
        assert services["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
        with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
            compose_config(files_for(name), {"SEISMIC_API_KEY": "k"})


def _promtool() -> str:
    import os

    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip(
            "promtool not installed (Debian: apt-get install prometheus; or set PROMTOOL=/path/promtool)"
        )
    return found


def test_promtool_accepts_the_config_rules_and_dashboard_queries(tmp_path):
    promtool = _promtool()
    folder = ROOT / "deploy/prometheus"
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        done = subprocess.run([promtool, *args], cwd=folder, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # the dashboard's queries, parsed by Prometheus' own parser as recording rules
    rules = [
        {"record": f"dashboard:query_{k}", "expr": expr.replace("$__rate_interval", "1m")}
        for k, expr in enumerate(dashboard_exprs())
    ]
    (tmp_path / "dashboard.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    done = subprocess.run(
        [promtool, "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------- slow: the compose commands, run


@pytest.mark.slow  # ~1-2 min with the slim image's venv (built once per session) and the MLflow server
def test_compose_commands_run_from_the_slim_image(
    compose_config, slim_image, mlflow_server, processes, write_inference_log, windows_json, tmp_path
):
    services = compose_config(COMPOSE_FILES[:1], SHELL)["services"]
    # the MLflow server of the fixture runs the compose command; the services reach it by name
    tracking = urlsplit(services["api"]["environment"]["MLFLOW_TRACKING_URI"])
    status, _ = http(
        mlflow_server.url + "/api/2.0/mlflow/registered-models/search", headers={"Host": tracking.netloc}
    )
    assert status == 200, f"the MLflow server refuses Host {tracking.netloc}"
    check = [sys.executable, *services["mlflow"]["healthcheck"]["test"][2:]]
    mlflow_port = option(services["mlflow"]["command"], "--port")
    check = [a.replace(f":{mlflow_port}/", f":{urlsplit(mlflow_server.url).port}/") for a in check]
    assert subprocess.run(check, timeout=30).returncode == 0

    python = slim_image.argv[0]  # the image's ENTRYPOINT, resolved on its PATH

    def env_for(service: dict, shell: dict[str, str]) -> dict[str, str]:
        env = {**slim_image.env, **service_env(service, shell)}
        return {**env, "MLFLOW_TRACKING_URI": mlflow_server.url}

    # rows in the windows the monitor will judge, on the data volume (the image's SEISMIC_ROOT)
    every = parse_duration(option(services["monitor"]["command"], "schedule.every"))
    data = Path(slim_image.env["SEISMIC_ROOT"]) / "data" / "inference_log"
    write_inference_log(data, in_windows(every))

    port = free_port()
    api = [
        python,
        *set_option(set_option(services["api"]["command"], "host", "127.0.0.1"), "port", str(port)),
    ]
    server = processes(
        api, env=env_for(services["api"], SHELL), cwd=slim_image.workdir, log=tmp_path / "api.log"
    )
    url = f"http://127.0.0.1:{port}"
    assert json.loads(server.wait_http(url + "/ready", timeout=180))["version"] == mlflow_server.version
    assert http(url + "/predict", windows_json, {"Content-Type": "application/json"})[0] == 200

    metrics_port = free_port()
    monitor_argv = set_option(services["monitor"]["command"], "metrics.host", "127.0.0.1")
    monitor_argv = [python, *set_option(monitor_argv, "metrics.port", str(metrics_port))]
    monitor = processes(
        monitor_argv, env=env_for(services["monitor"], SHELL), cwd=slim_image.workdir, log=tmp_path / "m.log"
    )
    text = monitor.wait_http(
        f"http://127.0.0.1:{metrics_port}/metrics",
        until=lambda body: "seismic_drift_detected" in body,
        timeout=240,
    )
    used = set().union(*map(promql_metrics, dashboard_exprs()))
    assert {n for n in used if n.startswith("seismic_drift_")} <= metric_names(text)
    check = [python, *services["monitor"]["healthcheck"]["test"][2:]]
    check = [a.replace(f":{MONITOR['metrics']['port']}/", f":{metrics_port}/") for a in check]
    assert subprocess.run(check, env=slim_image.env, timeout=30).returncode == 0
    assert monitor.stop() == 0 and "monitor: stopped" in monitor.output()
    assert server.stop() in (0, -15)

    # prod: the same server refuses to start without the key, and asks clients for it
    prod = compose_config(files_for("docker-compose.prod.yml"), SHELL)["services"]["api"]
    argv = [python, *set_option(set_option(prod["command"], "host", "127.0.0.1"), "port", str(free_port()))]
    keyless = {k: v for k, v in env_for(prod, SHELL).items() if k != "SEISMIC_API_KEY"}
    refused = subprocess.run(
        argv, env=keyless, cwd=slim_image.workdir, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2 and "SEISMIC_API_KEY" in refused.stderr
    port = free_port()
    argv = set_option(argv, "port", str(port))
    server = processes(argv, env=env_for(prod, SHELL), cwd=slim_image.workdir, log=tmp_path / "prod.log")
    url = f"http://127.0.0.1:{port}"
    server.wait_http(url + "/ready", timeout=180)
    json_body = {"Content-Type": "application/json"}
    assert http(url + "/predict", windows_json, json_body)[0] == 401
    assert (
        http(url + "/predict", windows_json, {**json_body, "X-API-Key": SHELL["SEISMIC_API_KEY"]})[0] == 200
    )
    assert server.stop() in (0, -15)
