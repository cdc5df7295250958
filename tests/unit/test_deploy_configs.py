"""The deployment files parse and agree with each other: compose.yaml, cluster.yaml, the NATS config,
the Helm chart and the Grafana dashboard; and only the gateway faces the network (published
ports, the chart's NetworkPolicies). Reads files only: no Docker, no cluster, no services."""

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
from tests.unit.chart_render import RELEASE, Endpoint, allowed, load_chart, render

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
    "ray_sharehub_shard_timer_failures_total",
    "ray_sharehub_shard_dead_timers",
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
    # Outages answered 503 (sharehub/outages.py) and outbox events no stream takes (actors/relay.py).
    "sharehub_dependency_unavailable_total",
    "sharehub_outbox_unroutable_total",
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
    assert "127.0.0.1:8000:8000" in head["ports"]


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


# ---------------------------------------------------------------------- exposure (docs/security.md)
# Only the gateway's HTTP port faces clients. The Ray dashboard's job API runs any code with
# DATABASE_URL in its environment, and whoever reaches the Ray cluster can call the shard actors
# with any roles; Serve's HTTP, Postgres, NATS and Redis have no client-facing authentication.

LOOPBACK = {"127.0.0.1", "::1"}


def published(service: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(host address, None for every interface; container port) of each port a compose service
    publishes, from the short ("[ip:][host:]container[/proto]") or the long syntax."""
    found: list[tuple[str | None, str]] = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append((entry.get("host_ip") or None, str(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        host_ip = None
        if spec.startswith("["):
            host_ip, _, spec = spec[1:].partition("]:")
        parts = spec.split(":")
        if len(parts) == 3:
            host_ip = parts[0]
        elif len(parts) > 3 or (host_ip is not None and len(parts) != 2):
            raise AssertionError(f"unparsed port {entry!r}")
        found.append((host_ip or None, parts[-1]))
    return found


def test_published_reads_every_port_syntax() -> None:
    service = {"ports": ["8080:8080", "9000", "127.0.0.1:8265:8265", "[::1]:8000:8000", "0.0.0.0:5432:5432/tcp",
                         {"target": 6379, "published": 6379, "host_ip": "127.0.0.1"}, {"target": 4222}]}
    assert published(service) == [(None, "8080"), (None, "9000"), ("127.0.0.1", "8265"), ("::1", "8000"),
                                  ("0.0.0.0", "5432"), ("127.0.0.1", "6379"), (None, "4222")]  # noqa: S104


def test_compose_publishes_only_the_gateway_on_every_interface(compose: dict[str, Any]) -> None:
    services = compose["services"]
    facing = [(name, port) for name, service in services.items() for host_ip, port in published(service)
              if host_ip not in LOOPBACK]
    assert facing == [("gateway", compose["x-sharehub-env"]["SHAREHUB_HTTP_PORT"])]
    for name in ("postgres", "nats", "redis"):
        assert not services[name].get("ports"), f"{name} must not be published at all"
    # Host networking would publish every port a container opens, whatever `ports` says.
    assert not [name for name, service in services.items() if service.get("network_mode") == "host"]


def test_cluster_yaml_opens_only_the_gateway_and_keeps_the_dashboard_on_loopback(cluster: dict[str, Any]) -> None:
    opened = [(rule["FromPort"], rule["ToPort"]) for rule in cluster["provider"]["security_group"]["IpPermissions"]]
    assert opened == [(8080, 8080)]
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "--dashboard-host=0" not in head
    assert "--env SHAREHUB_SERVE_HTTP_HOST=127.0.0.1" in cluster["docker"]["run_options"]


# The pods of the chart, by the template that makes them: its pod template is labelled with the
# chart's selector labels plus app.kubernetes.io/component.
POD_TEMPLATES = {"gateway-deployment.yaml": {"gateway"}, "raycluster.yaml": {"ray-head", "ray-worker"},
                 "migrate-job.yaml": {"migrate"}, "serve-deploy-job.yaml": {"serve-deploy"}}
COMPONENT_LABEL = re.compile(r'include "sharehub\.selectorLabels" \. \| nindent \d+ \}\}\n\s+'
                             r"app\.kubernetes\.io/component: ([\w-]+)")


def chart_pod(component: str, *, release: str = RELEASE) -> Endpoint:
    return Endpoint(f"{release}/{component}", {"app.kubernetes.io/name": "sharehub",
                                               "app.kubernetes.io/instance": release,
                                               "app.kubernetes.io/component": component})


GATEWAY, HEAD, WORKER = chart_pod("gateway"), chart_pod("ray-head"), chart_pod("ray-worker")
MIGRATE, SERVE_DEPLOY = chart_pod("migrate"), chart_pod("serve-deploy")
CHART_PODS = (GATEWAY, HEAD, WORKER, MIGRATE, SERVE_DEPLOY)
CLIENT = Endpoint("a client on the internet", None, ip="203.0.113.7")
NEIGHBOUR = Endpoint("another app in the namespace", {"app": "blog"})
OTHER_RELEASE = chart_pod("serve-deploy", release="staging")
POSTGRES = Endpoint("managed postgres", None, ip="10.20.0.5")
ELSEWHERE = Endpoint("some other database", None, ip="10.99.0.1")
REDIS = Endpoint("managed redis", None, ip="10.20.0.6")
NATS = Endpoint("nats in its namespace", {"app.kubernetes.io/name": "nats"}, namespace="nats", ip="10.244.3.3")
S3 = Endpoint("s3", None, ip="52.95.1.1")
API_SERVER = Endpoint("kubernetes api", None, ip="10.0.0.1")
KUBE_DNS = Endpoint("kube-dns", {"k8s-app": "kube-dns"}, namespace="kube-system", ip="10.244.0.2")
PUBLIC_DNS = Endpoint("a public resolver", None, ip="8.8.8.8")
PROMETHEUS = Endpoint("prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring")
INGRESS = Endpoint("ingress controller", {"app": "ingress-nginx"}, namespace="ingress-nginx")
BATCH = Endpoint("a trusted batch job", {"app": "pricing-batch"})
# Ray's own ports: GCS, dashboard/job API, Ray Client, Serve's HTTP, metrics, a worker's gRPC port.
RAY_PORTS = (6379, 8265, 10001, 8000, 8080, 10123)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = deep_merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return merged


def network_policies(overrides: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart, values = load_chart(CHART)
    docs = render((CHART / "templates" / "networkpolicy.yaml").read_text(), deep_merge(values, overrides or {}), chart)
    assert all((d["apiVersion"], d["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy") for d in docs)
    return docs


def mismatches(policies: list[dict[str, Any]],
               expected: list[tuple[Endpoint, Endpoint, int, str, bool]]) -> list[str]:
    return [f"{src.name} -> {dst.name}:{port}/{proto}: expected {'open' if want else 'closed'}"
            for src, dst, port, proto, want in expected if allowed(policies, src, dst, port, proto) != want]


def test_every_pod_of_the_chart_is_one_the_policies_know() -> None:
    for template in sorted((CHART / "templates").glob("*.yaml")):
        text = template.read_text()
        if "containers:" not in text:
            continue
        assert template.name in POD_TEMPLATES, f"{template.name} makes pods the NetworkPolicy tests do not know"
        assert set(COMPONENT_LABEL.findall(text)) == POD_TEMPLATES[template.name], template.name


def test_network_policies_are_on_by_default_and_only_select_the_release() -> None:
    _, values = load_chart(CHART)
    assert values["networkPolicy"]["enabled"] is True
    policies = network_policies()
    names = [p["metadata"]["name"] for p in policies]
    assert len(names) == len(set(names))
    release = {"app.kubernetes.io/name": "sharehub", "app.kubernetes.io/instance": RELEASE}
    for policy in policies:
        assert policy["spec"]["podSelector"]["matchLabels"].items() >= release.items(), policy["metadata"]["name"]
    # A deny-all for both directions covers every pod of the release.
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert [set(p["spec"]["policyTypes"]) for p in deny] == [{"Ingress", "Egress"}]
    assert deny[0]["spec"]["podSelector"] == {"matchLabels": release}
    assert network_policies({"networkPolicy": {"enabled": False}}) == []


def test_default_policies_let_clients_reach_the_gateway_and_nothing_else() -> None:
    policies = network_policies()
    expected: list[tuple[Endpoint, Endpoint, int, str, bool]] = [
        (CLIENT, GATEWAY, 8080, "TCP", True),
        (NEIGHBOUR, GATEWAY, 8080, "TCP", True),
        # The gateway pod is a Ray node too: its raylet and workers' ports are not for clients.
        *[(CLIENT, GATEWAY, port, "TCP", False) for port in (6379, 8000, 10123, 52365)],
        *[(who, pod, port, "TCP", False) for who in (CLIENT, NEIGHBOUR, OTHER_RELEASE, INGRESS)
          for pod in (HEAD, WORKER) for port in RAY_PORTS],
        # Nothing of the release is reachable but the gateway's port.
        *[(CLIENT, pod, 5432, "TCP", False) for pod in (MIGRATE, SERVE_DEPLOY)],
    ]
    assert mismatches(policies, expected) == []


def test_default_policies_let_the_gateways_and_ray_pods_talk_and_reach_the_stores() -> None:
    policies = network_policies()
    members = (GATEWAY, HEAD, WORKER)
    expected: list[tuple[Endpoint, Endpoint, int, str, bool]] = [
        # Ray connects nodes both ways on ports it picks.
        *[(a, b, port, "TCP", True) for a in members for b in members if a is not b for port in RAY_PORTS],
        # The jobs are not Ray nodes: the serve-deploy Job reaches the dashboard and nothing else.
        (SERVE_DEPLOY, HEAD, 8265, "TCP", True),
        *[(SERVE_DEPLOY, HEAD, port, "TCP", False) for port in RAY_PORTS if port != 8265],
        (SERVE_DEPLOY, WORKER, 8265, "TCP", False),
        *[(MIGRATE, pod, port, "TCP", False) for pod in (HEAD, WORKER, GATEWAY) for port in RAY_PORTS],
        (OTHER_RELEASE, HEAD, 8265, "TCP", False),
        # Stores.
        *[(pod, POSTGRES, 5432, "TCP", True) for pod in (GATEWAY, HEAD, WORKER, MIGRATE)],
        (SERVE_DEPLOY, POSTGRES, 5432, "TCP", False),
        *[(pod, NATS, 4222, "TCP", True) for pod in members],
        *[(pod, REDIS, 6379, "TCP", True) for pod in members],
        *[(pod, target, port, "TCP", False) for pod in (MIGRATE, SERVE_DEPLOY)
          for target, port in ((NATS, 4222), (REDIS, 6379))],
        # Only the gateways go further: media, mail.
        (GATEWAY, S3, 443, "TCP", True),
        (GATEWAY, S3, 587, "TCP", True),
        *[(pod, S3, 443, "TCP", False) for pod in (HEAD, WORKER, MIGRATE, SERVE_DEPLOY)],
        (HEAD, API_SERVER, 443, "TCP", False),  # no in-tree autoscaler by default
        # Names resolve through the cluster's DNS only.
        *[(pod, KUBE_DNS, 53, proto, True) for pod in CHART_PODS for proto in ("UDP", "TCP")],
        (GATEWAY, PUBLIC_DNS, 53, "UDP", False),
        # Prometheus scrapes the metrics ports and nothing else.
        (PROMETHEUS, GATEWAY, 8080, "TCP", True),
        (PROMETHEUS, HEAD, 8080, "TCP", True),
        (PROMETHEUS, WORKER, 8080, "TCP", True),
        *[(PROMETHEUS, pod, port, "TCP", False) for pod in (HEAD, WORKER) for port in RAY_PORTS if port != 8080],
    ]
    assert mismatches(policies, expected) == []


def test_policy_values_narrow_and_open_exactly_what_they_say() -> None:
    policies = network_policies({
        "networkPolicy": {
            "ingressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "postgres": {"to": [{"ipBlock": {"cidr": "10.20.0.0/24"}}]},
            "serveHttpFrom": [{"podSelector": {"matchLabels": {"app": "pricing-batch"}}}],
            "dashboardFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ray-system"}}}],
            "apiServer": {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}]},
        },
        "rayCluster": {"enableInTreeAutoscaling": True},
    })
    operator_pod = Endpoint("kuberay operator", {"app": "kuberay"}, namespace="ray-system")
    expected: list[tuple[Endpoint, Endpoint, int, str, bool]] = [
        (CLIENT, GATEWAY, 8080, "TCP", False),
        (INGRESS, GATEWAY, 8080, "TCP", True),
        (INGRESS, HEAD, 8265, "TCP", False),
        (GATEWAY, POSTGRES, 5432, "TCP", True),
        (GATEWAY, ELSEWHERE, 5432, "TCP", False),
        (BATCH, HEAD, 8000, "TCP", True),
        (BATCH, WORKER, 8000, "TCP", True),
        *[(BATCH, HEAD, port, "TCP", False) for port in RAY_PORTS if port != 8000],
        (operator_pod, HEAD, 8265, "TCP", True),
        (operator_pod, HEAD, 6379, "TCP", False),
        (HEAD, API_SERVER, 443, "TCP", True),
        (HEAD, API_SERVER, 6443, "TCP", True),
        (WORKER, API_SERVER, 443, "TCP", False),
    ]
    assert mismatches(policies, expected) == []


def test_gateways_that_are_not_ray_nodes_reach_only_the_ray_client_port() -> None:
    policies = network_policies({"gateway": {"joinRayCluster": False}})
    expected: list[tuple[Endpoint, Endpoint, int, str, bool]] = [
        (GATEWAY, HEAD, 10001, "TCP", True),
        *[(GATEWAY, HEAD, port, "TCP", False) for port in RAY_PORTS if port != 10001],
        *[(GATEWAY, WORKER, port, "TCP", False) for port in RAY_PORTS],
        *[(pod, GATEWAY, port, "TCP", False) for pod in (HEAD, WORKER) for port in RAY_PORTS],
        (HEAD, WORKER, 10123, "TCP", True),
        (CLIENT, GATEWAY, 8080, "TCP", True),
    ]
    assert mismatches(policies, expected) == []


def test_the_ray_head_service_stays_inside_the_cluster() -> None:
    ray = (CHART / "templates" / "raycluster.yaml").read_text()
    assert re.search(r"^  headGroupSpec:\n(?:\s+#.*\n)*    serviceType: ClusterIP$", ray, re.MULTILINE)
    for template in (CHART / "templates").glob("*.yaml"):
        assert not re.search(r"type:\s*(LoadBalancer|NodePort)", template.read_text()), template.name
