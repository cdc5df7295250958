"""The deployment files parse and agree with each other: compose.yaml, cluster.yaml, the NATS config,
the Helm chart and the Grafana dashboard. Reads files only: no Docker, no cluster, no services."""

from __future__ import annotations

import json
import operator
import re
import string
from functools import reduce
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import ray.autoscaler
import yaml
from prometheus_client import REGISTRY
from ray import serve
from ray.serve.schema import ServeDeploySchema

from ml import serving

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "sharehub"
CORE_SERVICES = {"postgres", "nats", "redis", "minio", "ray-head", "migrate", "gateway"}
APP_SERVICES = ("gateway", "migrate", "ray-head")
URL_VARS = ("DATABASE_URL", "NATS_URL", "REDIS_URL", "RAY_ADDRESS", "S3_ENDPOINT_URL")
DASHBOARD_METRICS = (
    "http_requests_total",
    "http_request_duration_seconds_bucket",
    "http_requests_in_flight",
    "db_pool_connections",
    # Recorded by the shard actors (actors/shard_metrics.py), exported by Ray with a `ray_` prefix.
    "ray_sharehub_shard_commands_total",
    "ray_sharehub_shard_batch_seconds_bucket",
    "ray_sharehub_shard_batch_size_bucket",
    "ray_sharehub_shard_live_entities",
    "ray_sharehub_shard_group_fallbacks_total",
    "ray_sharehub_shard_timers_fired_total",
    # The websocket gateway (gateway/realtime/metrics.py) and the event consumers.
    "ws_connections",
    "ws_channels",
    "ws_deliveries_total",
    "ws_fanout_latency_seconds_bucket",
    "ws_slow_consumer_closes_total",
    "ws_server_closes_total",
    "ws_gap_fill_events_total",
    "ws_resyncs_total",
    "sharehub_events_consumed_total",
    "sharehub_search_call_seconds_bucket",
    # The gateway's calls to ml-core on Ray Serve (ml/client.py).
    "sharehub_ml_call_seconds_bucket",
    "sharehub_ml_call_seconds_count",
    # Recorded by the search replicas (search/metrics.py), exported by Ray like the shards'.
    "ray_sharehub_search_index_lag_seconds_bucket",
    "ray_sharehub_search_documents",
    "ray_sharehub_search_events_applied_total",
)
ML_SETTINGS = ("SHAREHUB_MODEL_DIR", "SHAREHUB_ML_TIMEOUT_SECS", "SHAREHUB_ML_RELOAD_SECS",
               "SHAREHUB_SERVE_HTTP_HOST", "SHAREHUB_SERVE_HTTP_PORT")
SERVE_CONFIG = DEPLOY / "serve" / "ml.yaml"
# How every deployment fills deploy/serve/ml.yaml from its environment before `serve deploy`.
RENDER = "string.Template(sys.stdin.read()).substitute(os.environ)"
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
PORT_FLAG = re.compile(r"(?:(?<![\w-])--port[= ]|--address[= ]\S*:|(?<!\S)-p )(\d+)")
VALUES_REF = re.compile(r"\.Values((?:\.\w+)+)")
VALUES_ALIAS = re.compile(r"\$(\w+)\s*:=\s*\.Values((?:\.\w+)+)")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(ROOT / "compose.yaml")
    return loaded


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(ROOT / "cluster.yaml")
    return loaded


def listen_port(name: str, service: dict[str, Any]) -> int:
    """The port a compose service listens on: from its flags, or for NATS from its config file."""
    if name == "nats":
        match = re.search(r"^port:\s*(\d+)", (DEPLOY / "nats" / "nats.conf").read_text(), re.MULTILINE)
    else:
        words = [*service.get("command", []), *service.get("healthcheck", {}).get("test", [])]
        match = PORT_FLAG.search(" ".join(words))
    assert match, f"{name}: no listening port in its command, healthcheck or config"
    return int(match.group(1))


def test_compose_has_the_stack_and_postgres_16(compose: dict[str, Any]) -> None:
    assert "version" not in compose
    assert set(compose["services"]) >= CORE_SERVICES
    assert re.fullmatch(r"postgres:16(\.\d+)*(-\w+)?", compose["services"]["postgres"]["image"])


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_urls_point_at_compose_services(compose: dict[str, Any], name: str) -> None:
    services = compose["services"]
    env = services[name]["environment"]
    assert env == compose["x-sharehub-env"], f"{name} must use the shared x-sharehub-env values"
    for var in URL_VARS:
        url = urlsplit(env[var] if "://" in env[var] else f"tcp://{env[var]}")
        assert url.hostname is not None and url.hostname in services, f"{name}: {var} host {url.hostname!r}"
        assert url.port == listen_port(url.hostname, services[url.hostname]), f"{name}: {var} port"


def test_gateway_starts_after_migrations_and_healthy_services(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    conditions = {name: dep["condition"] for name, dep in gateway["depends_on"].items()}
    assert conditions.pop("migrate") == "service_completed_successfully"
    assert {"postgres", "nats", "redis", "minio", "ray-head"} <= set(conditions)
    assert all(c in {"service_healthy", "service_completed_successfully"} for c in conditions.values())
    assert "/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert "sharehub gateway" in " ".join(gateway["command"])


def test_nats_jetstream_fsyncs_every_write(compose: dict[str, Any]) -> None:
    conf = (DEPLOY / "nats" / "nats.conf").read_text()
    block = re.search(r"^jetstream\s*\{(.*?)^\}", conf, re.MULTILINE | re.DOTALL)
    assert block, "jetstream block missing"
    assert re.search(r"^\s*sync_interval:\s*always\s*$", block.group(1), re.MULTILINE)
    assert any("deploy/nats/nats.conf" in v for v in compose["services"]["nats"]["volumes"])


def test_cluster_yaml_matches_ray_schema(cluster: dict[str, Any]) -> None:
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)
    assert cluster["provider"]["type"] == "aws"
    assert cluster["head_node_type"] in cluster["available_node_types"]


def test_cluster_head_runs_ray_and_gateway_with_compose_env(cluster: dict[str, Any], compose: dict[str, Any]) -> None:
    commands = "\n".join(cluster["head_start_ray_commands"])
    assert "ray start --head" in commands
    assert "sharehub gateway" in commands
    passed = {opt.split()[1].split("=")[0] for opt in cluster["docker"]["run_options"] if opt.startswith("--env ")}
    assert passed == set(compose["x-sharehub-env"])
    referenced = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", commands))
    assert referenced <= passed, f"head commands read variables the containers never get: {referenced - passed}"


def value_paths(template: str) -> set[str]:
    """`.Values.a.b` references, with `$x := .Values.a` aliases followed (`$x.b` is `a.b`)."""
    paths = {m.group(1)[1:] for m in VALUES_REF.finditer(template)}
    for alias, base in VALUES_ALIAS.findall(template):
        paths |= {base[1:] + rest for rest in re.findall(rf"\${alias}((?:\.\w+)+)", template)}
    return paths


def has_path(values: dict[str, Any], path: str) -> bool:
    try:
        reduce(operator.getitem, path.split("."), values)
    except (KeyError, TypeError):
        return False
    return True


@pytest.mark.parametrize("template", sorted(p.name for p in (CHART / "templates").iterdir()))
def test_helm_template_uses_only_defined_values(template: str) -> None:
    text = (CHART / "templates" / template).read_text()
    assert text.strip(), f"{template} is empty"
    values = load_yaml(CHART / "values.yaml")
    missing = sorted(p for p in value_paths(text) if not has_path(values, p))
    assert not missing, f"{template} references values missing from values.yaml: {missing}"


def test_helm_chart_parses_and_config_env_uses_compose_names(compose: dict[str, Any]) -> None:
    chart = load_yaml(CHART / "Chart.yaml")
    assert (chart["apiVersion"], chart["name"]) == ("v2", "sharehub")
    assert isinstance(load_yaml(CHART / "values.yaml"), dict)
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    block = helpers.split('define "sharehub.configEnv"', 1)[1].split("{{- end -}}", 1)[0]
    names = set(re.findall(r"^([A-Z][A-Z0-9_]+):", block, re.MULTILINE))
    assert {"RAY_ADDRESS", "S3_ENDPOINT_URL", "SHAREHUB_JWT_KEYS_DIR"} <= names <= set(compose["x-sharehub-env"])


def expressions(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for value in node.values() for e in expressions(value)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_grafana_dashboard_queries_gateway_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "sharehub-dashboard.json").read_text())
    exprs = expressions(dashboard["panels"])
    assert exprs
    for metric in DASHBOARD_METRICS:
        assert any(metric in e for e in exprs), f"no panel queries {metric}"
    for expr in exprs:
        assert any(metric in expr for metric in DASHBOARD_METRICS), f"unknown metric in {expr!r}"
    assert any("histogram_quantile(0.99" in e for e in exprs)
    assert any("histogram_quantile(0.5" in e for e in exprs)
    import gateway.app  # noqa: F401 - registers every gateway metric
    import sharehub.event_consumers  # noqa: F401
    # Family names (a labelled counter has no samples until first used) with their series suffixes.
    exposed = {family.name + suffix for family in REGISTRY.collect() for suffix in ("", "_total", "_bucket", "_count")}
    for metric in DASHBOARD_METRICS:
        if not metric.startswith("ray_"):
            assert metric in exposed, f"the gateway does not expose {metric}"
    root = Path(__file__).resolve().parents[2]
    recorded = (root / "actors" / "shard_metrics.py").read_text() + (root / "search" / "metrics.py").read_text()
    for metric in DASHBOARD_METRICS:
        if metric.startswith("ray_"):
            name = metric.removeprefix("ray_").removesuffix("_total").removesuffix("_bucket")
            assert f'"{name}"' in recorded, f"no actor records {name}"


# ---------------------------------------------------------------------- ml-core: Serve app, model store


def render_serve_config(text: str, env: dict[str, str]) -> dict[str, Any]:
    """The Serve config as a deployment renders it (`RENDER`), parsed and checked by Serve's schema."""
    rendered: dict[str, Any] = yaml.safe_load(string.Template(text).substitute(env))
    ServeDeploySchema.model_validate(rendered)
    return rendered


def sample_env(compose: dict[str, Any]) -> dict[str, str]:
    return {**{name: str(value) for name, value in compose["x-sharehub-env"].items()},
            "DATABASE_URL": "postgresql://sharehub:secret@db:5432/sharehub"}


def helm_serve_config() -> str:
    """The `ml.yaml` block of the chart's Serve ConfigMap, its Helm expressions replaced by a number."""
    lines = (CHART / "templates" / "serve-configmap.yaml").read_text().splitlines()
    start = lines.index("  ml.yaml: |") + 1
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line[4:])
    return re.sub(r"\{\{[^}]*\}\}", "2", "\n".join(block))


def test_serve_config_builds_the_ml_app_from_the_environment(compose: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    text = SERVE_CONFIG.read_text()
    # Only the variables every ShareHub container has are filled in; never the secret DATABASE_URL.
    assert set(PLACEHOLDER.findall(text)) <= set(compose["x-sharehub-env"])
    assert "DATABASE_URL" not in PLACEHOLDER.findall(text)
    assert text.count("$") == len(PLACEHOLDER.findall(text)), "a stray $ breaks string.Template"
    env = sample_env(compose)
    config = render_serve_config(text, env)
    assert config["http_options"] == {"host": env["SHAREHUB_SERVE_HTTP_HOST"],
                                      "port": int(env["SHAREHUB_SERVE_HTTP_PORT"])}
    (app,) = config["applications"]
    assert (app["name"], app["route_prefix"]) == (serving.APP_NAME, serving.ROUTE_PREFIX)
    module, _, attribute = app["import_path"].partition(":")
    assert module == "ml.serving" and callable(getattr(serving, attribute))
    # Each replica takes the database and the model store from its node's environment.
    monkeypatch.setenv("DATABASE_URL", "postgresql://sharehub@postgres/sharehub")
    monkeypatch.setenv("SHAREHUB_MODEL_DIR", compose["x-sharehub-env"]["SHAREHUB_MODEL_DIR"])
    built = getattr(serving, attribute)(app["args"])  # binding needs no cluster
    assert isinstance(built, serve.Application)
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(KeyError):
        getattr(serving, attribute)(app["args"])


def test_helm_serve_config_is_deploy_serve_ml_yaml_with_replica_counts(compose: dict[str, Any]) -> None:
    env = sample_env(compose)
    base = render_serve_config(SERVE_CONFIG.read_text(), env)
    chart = render_serve_config(helm_serve_config(), env)
    (app,) = chart["applications"]
    deployments = app.pop("deployments")
    assert chart == base, "templates/serve-configmap.yaml has drifted from deploy/serve/ml.yaml"
    names = {d.name for d in (serving.PRICING, serving.RECOMMENDER, serving.HTTP_INGRESS)}
    assert {d["name"] for d in deployments} == {"Pricing", "Recommender"} <= names
    for deployment in deployments:  # replaced whole, so every field of the code's policy is there
        assert set(deployment["autoscaling_config"]) == set(serving.AUTOSCALING)
    configmap = (CHART / "templates" / "serve-configmap.yaml").read_text()
    assert RENDER in configmap and "/etc/sharehub/serve/ml.yaml" in configmap and "serve deploy" in configmap
    for template in ("raycluster.yaml", "serve-deploy-job.yaml"):
        text = (CHART / "templates" / template).read_text()
        assert "mountPath: /etc/sharehub/serve" in text and "deploy-ml.sh" in text, template
    job = load_yaml_without_helm(CHART / "templates" / "serve-deploy-job.yaml")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def load_yaml_without_helm(path: Path) -> Any:
    """A template's YAML with its Helm control lines dropped and expressions replaced by a word."""
    lines = [line for line in path.read_text().splitlines() if not re.fullmatch(r"\s*\{\{-?.*\}\}\s*", line)]
    return yaml.safe_load(re.sub(r"\{\{[^}]*\}\}", "x", "\n".join(lines)))


def test_helm_mounts_the_models_claim_in_the_gateway_and_every_ray_pod() -> None:
    values = load_yaml(CHART / "values.yaml")
    assert values["ml"]["persistence"]["accessModes"] == ["ReadWriteMany"]
    claim = load_yaml_without_helm(CHART / "templates" / "models-pvc.yaml")
    assert claim["kind"] == "PersistentVolumeClaim"
    assert "toYaml .Values.ml.persistence.accessModes" in (CHART / "templates" / "models-pvc.yaml").read_text()
    mount = re.compile(r"- name: models\n\s+mountPath: \{\{ \.Values\.ml\.modelDir \}\}")
    volume = 'include "sharehub.modelsVolume"'
    gateway = (CHART / "templates" / "gateway-deployment.yaml").read_text()
    assert len(mount.findall(gateway)) == 1 and gateway.count(volume) == 1
    ray = (CHART / "templates" / "raycluster.yaml").read_text()
    assert len(mount.findall(ray)) == 2 and ray.count(volume) == 2, "the head and the workers"
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    block = helpers.split('define "sharehub.configEnv"', 1)[1].split("{{- end -}}", 1)[0]
    assert re.search(r"^SHAREHUB_MODEL_DIR: \{\{ \.Values\.ml\.modelDir \| quote \}\}$", block, re.MULTILINE)
    assert set(ML_SETTINGS) <= set(re.findall(r"^([A-Z][A-Z0-9_]+):", block, re.MULTILINE))
    assert "containerPort: {{ .Values.ml.serve.httpPort }}" in ray


def test_ml_settings_are_the_ones_sharehub_reads() -> None:
    config = (ROOT / "sharehub" / "config.py").read_text()
    for name in ML_SETTINGS:
        assert f'"{name}"' in config, f"sharehub/config.py does not read {name}"


def test_compose_shares_the_models_volume_and_the_head_deploys_the_serve_app(compose: dict[str, Any]) -> None:
    services = compose["services"]
    model_dir = compose["x-sharehub-env"]["SHAREHUB_MODEL_DIR"]
    assert "models" in compose["volumes"]
    for name in ("ray-head", "gateway", "models-init"):
        assert any(v.split(":")[:2] == ["models", model_dir] for v in services[name]["volumes"]), name
    head = services["ray-head"]
    (serve_dir,) = [v.split(":")[1] for v in head["volumes"] if v.startswith("./deploy/serve:")]
    script = " ".join(head["command"])
    assert "ray start --head" in script and RENDER in script
    assert f"< {serve_dir}/ml.yaml" in script and "serve deploy" in script
    conditions = {name: dep["condition"] for name, dep in head["depends_on"].items()}
    assert conditions == {"migrate": "service_completed_successfully",
                          "models-init": "service_completed_successfully"}
    assert "8000:8000" in head["ports"]


def test_cluster_yaml_deploys_the_serve_app_and_mounts_the_model_store(cluster: dict[str, Any],
                                                                       compose: dict[str, Any]) -> None:
    (serve_dir,) = [remote for remote, local in cluster["file_mounts"].items() if local == "./deploy/serve"]
    assert (ROOT / "deploy" / "serve" / "ml.yaml").is_file()
    commands = "\n".join(cluster["head_start_ray_commands"])
    assert RENDER in commands and f"< {serve_dir}/ml.yaml" in commands and "serve deploy" in commands
    model_dir = compose["x-sharehub-env"]["SHAREHUB_MODEL_DIR"]
    options = cluster["docker"]["run_options"]
    assert f"--env SHAREHUB_MODEL_DIR={model_dir}" in options
    (volume,) = [opt for opt in options if opt.startswith("--volume ") and opt.endswith(f":{model_dir}")]
    host_dir = volume.split()[1].split(":")[0]
    assert any("mount -t nfs4" in c and host_dir in c for c in cluster["initialization_commands"])
