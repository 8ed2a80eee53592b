"""The deployment files validate against real schemas and agree with the services.

Kubernetes manifests: ``kubernetes-validate`` (strict, the Kubernetes
OpenAPI schemas it ships). Compose file: the compose-spec JSON schema that
``check-jsonschema`` vendors, applied with ``jsonschema``. Nothing is run
(there is no Docker engine here); the checks are on the files themselves.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from reference_services.checkout.recovery import Timing
from reference_services.checkout.service import DRAIN_SECONDS
from reference_services.launcher import ADDRESS_VARIABLES, SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "reference_services" / "deploy"
K8S_VERSION = "1.33.0"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when there


@functools.cache
def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes document (parsed once: copy one before changing it)."""
    found = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=LOADER):
            if doc:
                found.append((path.name, doc))
    return found


@functools.cache
def _compose() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.load((DEPLOY / "docker-compose.yaml").read_text(), LOADER)
    return parsed


def compose() -> dict[str, Any]:
    """The compose file, a copy of its one parse."""
    return copy.deepcopy(_compose())


def compose_schema() -> dict[str, Any]:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendored / "compose-spec.json").read_text())


def k8s(kind: str, name: str) -> dict[str, Any]:
    for _, doc in manifests():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: each value, or where it comes from (``valueFrom``)."""
    return {e["name"]: e["value"] if "value" in e else e["valueFrom"] for e in container["env"]}


def container_of(name: str) -> dict[str, Any]:
    (container,) = k8s("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def _id(value: object) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("file", "doc"), manifests(), ids=_id)
def test_every_manifest_is_valid_kubernetes(file: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = copy.deepcopy(k8s("Deployment", "cart"))
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    unknown = copy.deepcopy(k8s("Deployment", "cart"))
    unknown["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", list(SERVICES))
def test_each_service_has_a_hardened_deployment_with_probes(name: str) -> None:
    deployment = k8s("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    port = container["ports"][0]["containerPort"]
    env = env_of(container)
    assert env["PORT"] == str(port)
    for probe in ("readinessProbe", "livenessProbe"):
        if name == "frontend":
            check = container[probe]["httpGet"]
            assert check["path"] == "/_healthz"
            cookie = check["httpHeaders"][0]["value"]
            probes = ("x-readiness-probe", "x-liveness-probe")
            assert cookie in [f"shop_session-id={p}" for p in probes]
        else:
            assert container[probe]["grpc"]["port"] == port  # grpc.health.v1
    service = k8s("Service", name)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert (
        container["envFrom"][0]["configMapRef"]["name"]
        == k8s("ConfigMap", "boutique")["metadata"]["name"]
    )


@pytest.mark.parametrize("name", list(SERVICES))
def test_kubernetes_addresses_point_at_the_callee_services(name: str) -> None:
    container = k8s("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    env = env_of(container)
    for dep in SERVICES[name]:
        host, port = env[ADDRESS_VARIABLES[dep]].split(":")
        callee = k8s("Service", host)
        assert int(port) in [p["port"] for p in callee["spec"]["ports"]]


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    jsonschema.validate(compose(), compose_schema())


def test_compose_schema_rejects_a_broken_file() -> None:
    broken = compose()
    broken["services"]["cart"]["depends_on"] = {"payment": {"condition": "whenever"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, compose_schema())


def probe(name: str, port: str) -> str:
    """The healthcheck command of service ``name``: its own port, inside the container."""
    if name == "frontend":
        url = f"http://127.0.0.1:{port}/_healthz"
        check = f"import urllib.request; urllib.request.urlopen('{url}', timeout=2)"
    else:
        check = (
            "import grpc,sys; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; "
            f"s=g.HealthStub(grpc.insecure_channel('127.0.0.1:{port}'))"
            ".Check(h.HealthCheckRequest(), timeout=2); "
            "sys.exit(s.status != h.HealthCheckResponse.SERVING)"
        )
    return f'python -c "{check}"'


def test_compose_runs_every_service_with_collector_jaeger_and_prometheus() -> None:
    services = compose()["services"]
    assert set(SERVICES) | {"nats", "otel-collector", "jaeger", "prometheus"} == set(services)
    for name in SERVICES:
        service = services[name]
        assert service["build"]["args"]["SERVICE"] == name
        assert service["read_only"] is True
        assert service["user"] != "0"
        env = service["environment"]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
        assert service["healthcheck"]["test"] == ["CMD-SHELL", probe(name, str(env["PORT"]))]
        for dep in SERVICES[name]:
            host, port = env[ADDRESS_VARIABLES[dep]].split(":")
            assert services[host]["environment"]["PORT"] == port
            assert service["depends_on"][host]["condition"] == "service_healthy"


def test_dockerfile_is_multi_stage_non_root_and_parameterised() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2
    assert re.search(r"^ARG SERVICE$", text, re.MULTILINE)
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and not user[-1].startswith(("0", "root"))
    assert "exec python -m reference_services.$SERVICE" in text


def test_collector_pipelines_use_only_defined_components() -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    assert {"traces", "metrics", "logs"} == set(pipelines)
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(config[kind])
    embedded = yaml.safe_load(k8s("ConfigMap", "otel-collector")["data"]["config.yaml"])
    assert embedded == config
    assert "jaeger:4317" in config["exporters"]["otlp/jaeger"]["endpoint"]


def test_deployed_services_listen_on_every_interface_and_admin_stays_local() -> None:
    """Services listen on loopback unless ``HOST`` says otherwise; a container's peers
    (and the kubelet's gRPC and HTTP probes) need them on every interface."""
    services = compose()["services"]
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["HOST"] == "0.0.0.0", name
        assert "127.0.0.1" in services[name]["healthcheck"]["test"][1]  # run inside it
        assert not [p for p in services[name].get("ports", []) if env["ADMIN_PORT"] in str(p)]
    shared = k8s("ConfigMap", "boutique")["data"]
    assert shared["HOST"] == "0.0.0.0"
    for name in SERVICES:
        container = k8s("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"] == [{"configMapRef": {"name": "boutique"}}]
        assert "HOST" not in {e["name"] for e in container["env"]}
        ports = [p["containerPort"] for p in container["ports"]]
        assert int(shared["ADMIN_PORT"]) not in ports  # nothing outside the pod calls it


def test_the_event_broker_is_one_nats_in_compose_and_three_jetstream_nodes_in_kubernetes() -> None:
    services = compose()["services"]
    nats = services["nats"]
    assert "--jetstream" in nats["command"]
    assert nats["healthcheck"]["test"][-1] == "http://127.0.0.1:8222/healthz?js-enabled-only=true"
    nodes = k8s("StatefulSet", "nats")
    assert nodes["spec"]["replicas"] == 3
    config = k8s("ConfigMap", "nats-config")["data"]["nats.conf"]
    assert "jetstream {" in config
    routes = re.findall(r"nats://(nats-\d)\.nats-headless:6222", config)
    assert routes == ["nats-0", "nats-1", "nats-2"]
    assert k8s("Service", "nats-headless")["spec"]["clusterIP"] == "None"
    client_port = k8s("Service", "nats")["spec"]["ports"][0]["port"]
    for name in ("checkout", "notification"):  # the producer and the consumer of events
        assert services[name]["environment"]["NATS_URL"] == "nats://nats:4222"
        assert services[name]["depends_on"]["nats"]["condition"] == "service_healthy"
        container = k8s("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        env = env_of(container)
        assert env["NATS_URL"] == f"nats://nats:{client_port}"


def test_the_user_signing_keys_are_a_secret_mounted_read_only_and_never_committed() -> None:
    pod = k8s("Deployment", "user")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "signing-keys"]
    assert mount == {
        "name": "signing-keys",
        "mountPath": env["USER_SIGNING_KEYS_DIR"],
        "readOnly": True,
    }
    (volume,) = [v for v in pod["volumes"] if v["name"] == "signing-keys"]
    assert volume["secret"] == {"secretName": "user-signing-keys", "defaultMode": 0o400}
    # the operator creates the Secret (the manifest says how): no key is in these files
    assert (
        "kubectl create secret generic user-signing-keys"
        in (DEPLOY / "kubernetes" / "user.yaml").read_text()
    )
    for path in [*DEPLOY.rglob("*.yaml"), DEPLOY / "Dockerfile"]:
        assert "PRIVATE KEY" not in path.read_text(), path
    # compose keeps the key made on the first start in the service's volume
    user = compose()["services"]["user"]
    assert user["volumes"] == ["user-data:/data"]
    assert "USER_SIGNING_KEYS_DIR" not in user["environment"]  # default: /data/user-keys


# --- the stores, the courier, who reaches what, autoscaling (issues 15 and 16) ----------

STORES = {
    # service: (the variable it reads, its SQLite file in compose)
    "checkout": ("ORDER_STORE", "orders.db"),
    "productcatalog": ("PRODUCTCATALOG_DATABASE_URL", "inventory.db"),
    "payment": ("PAYMENT_DATABASE_URL", "payment.db"),
    "shipping": ("SHIPPING_DATABASE_URL", "shipping.db"),
    "user": ("USER_DATABASE_URL", "user.db"),
    "notification": ("NOTIFICATION_DATABASE_URL", "notification.db"),
}
SOURCES = DEPLOY.parent
ADMIN_PORT = 9090
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
COLLECTOR = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "otel-collector"}}}


def reads(service: str, variable: str) -> bool:
    """Whether ``service``'s code reads ``variable`` as its store's URL."""
    code = "".join(p.read_text() for p in (SOURCES / service).glob("*.py"))
    return re.search(rf'store_url\(\s*"{variable}"', code) is not None


def pod_names(rule_from: list[dict[str, Any]]) -> set[str]:
    """The ``app.kubernetes.io/name`` of the pods a rule's ``from`` admits."""
    names: set[str] = set()
    for peer in rule_from:
        selector = peer["podSelector"]
        if "matchLabels" in selector:
            names.add(selector["matchLabels"]["app.kubernetes.io/name"])
        for expression in selector.get("matchExpressions", []):
            assert (expression["key"], expression["operator"]) == ("app.kubernetes.io/name", "In")
            names |= set(expression["values"])
    return names


def policy_of(pod: str) -> dict[str, Any]:
    (found,) = [
        doc
        for _, doc in manifests()
        if doc["kind"] == "NetworkPolicy"
        and doc["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == pod
    ]
    return found


def ingress_by_port(pod: str) -> dict[int, list[dict[str, Any]] | None]:
    """Each port ``pod`` admits connections on, and from whom (None: anyone)."""
    policy = policy_of(pod)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    found: dict[int, list[dict[str, Any]] | None] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            assert port["protocol"] == "TCP" and port["port"] not in found
            found[port["port"]] = rule.get("from")
    return found


@pytest.mark.parametrize("service", list(STORES))
def test_every_store_is_its_services_own_postgresql_in_kubernetes(service: str) -> None:
    variable, _ = STORES[service]
    assert reads(service, variable), f"{service} does not read {variable}"
    secret = f"{service}-db"
    assert env_of(container_of(service))[variable] == {
        "secretKeyRef": {"name": secret, "key": "url"}
    }
    database = k8s("StatefulSet", secret)
    (postgres,) = database["spec"]["template"]["spec"]["containers"]
    assert postgres["image"].startswith("postgres:")
    env = env_of(postgres)
    assert env["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": secret, "key": "password"}}
    assert env["POSTGRES_USER"] == env["POSTGRES_DB"] == service
    assert postgres["securityContext"]["readOnlyRootFilesystem"] is True
    (claim,) = database["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/var/lib/postgresql/data"} in (
        postgres["volumeMounts"]
    )
    labels = database["spec"]["template"]["metadata"]["labels"]
    assert k8s("Service", secret)["spec"]["selector"] == {"app.kubernetes.io/name": secret}
    assert labels["app.kubernetes.io/name"] == secret
    # the database admits its service's pods only, on PostgreSQL's port only
    (source,) = ingress_by_port(secret)[5432] or []
    assert source == {"podSelector": {"matchLabels": {"app.kubernetes.io/name": service}}}
    assert list(ingress_by_port(secret)) == [5432]
    # no password is in the files: the Secret is the operator's (the manifest says how)
    assert (
        "kubectl create secret generic $s-db"
        in (DEPLOY / "kubernetes" / "databases.yaml").read_text()
    )
    assert "Secret" not in {doc["kind"] for _, doc in manifests()}


@pytest.mark.parametrize("service", list(STORES))
def test_every_store_is_in_its_services_own_volume_in_compose(service: str) -> None:
    variable, file = STORES[service]
    services = compose()["services"]
    assert services[service]["environment"][variable] == f"sqlite:////data/{file}"
    volume = f"{service}-data"
    assert services[service]["volumes"] == [f"{volume}:/data"]
    assert volume in compose()["volumes"]
    others = [n for n, s in services.items() if n != service and volume in str(s.get("volumes"))]
    assert others == []


def test_the_courier_delays_are_set_in_compose_and_kubernetes() -> None:
    code = (SOURCES / "shipping" / "service.py").read_text()
    kubernetes = env_of(container_of("shipping"))
    composed = compose()["services"]["shipping"]["environment"]
    for variable, seconds in (("SHIPPING_PICKUP_DELAY_S", 30), ("SHIPPING_DELIVERY_DELAY_S", 60)):
        assert f'"{variable}"' in code
        assert float(kubernetes[variable]) == float(composed[variable]) == seconds


def test_the_checkout_saga_s_recovery_timing_is_set_in_compose_and_kubernetes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = (SOURCES / "checkout" / "recovery.py").read_text()
    kubernetes = env_of(container_of("checkout"))
    composed = compose()["services"]["checkout"]["environment"]
    for variable in ("CHECKOUT_RECOVERY_INTERVAL_S", "CHECKOUT_SAGA_LEASE_S"):
        assert f'"{variable}"' in code
        assert kubernetes[variable] == composed[variable], variable
        monkeypatch.setenv(variable, composed[variable])
    assert Timing.from_env() == Timing(interval=10.0, lease=3.0)  # accepted, read as set


def test_the_checkout_s_drain_ends_before_the_container_is_killed() -> None:
    code = (SOURCES / "checkout" / "service.py").read_text()
    assert '"CHECKOUT_DRAIN_S"' in code
    kubernetes = float(env_of(container_of("checkout"))["CHECKOUT_DRAIN_S"])
    composed = compose()["services"]["checkout"]
    assert kubernetes == float(composed["environment"]["CHECKOUT_DRAIN_S"]) == DRAIN_SECONDS
    pod = k8s("Deployment", "checkout")["spec"]["template"]["spec"]
    # a few seconds left for the closers and the last telemetry after the drain
    assert pod["terminationGracePeriodSeconds"] >= kubernetes + 5
    assert float(composed["stop_grace_period"].removesuffix("s")) >= DRAIN_SECONDS + 5


def test_every_event_producer_and_consumer_reaches_nats() -> None:
    for name in ("productcatalog", "payment", "shipping", "checkout", "user", "notification"):
        assert env_of(container_of(name))["NATS_URL"] == "nats://nats:4222"
        service = compose()["services"][name]
        assert service["environment"]["NATS_URL"] == "nats://nats:4222"
        assert service["depends_on"]["nats"]["condition"] == "service_healthy"


def test_every_pod_refuses_connections_but_from_those_its_policy_names() -> None:
    (deny,) = [
        doc
        for _, doc in manifests()
        if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "default-deny-ingress"
    ]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    workloads = [
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        for _, doc in manifests()
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]
    for pod in workloads:
        assert policy_of(pod), pod


@pytest.mark.parametrize("name", list(SERVICES))
def test_a_service_admits_only_its_callers_and_its_admin_port_only_monitoring(name: str) -> None:
    callers = {
        caller
        for caller in SERVICES
        if caller != name and ADDRESS_VARIABLES.get(name, "-") in env_of(container_of(caller))
    }
    assert {c for c in SERVICES if name in SERVICES[c]} <= callers  # who the launcher wires
    port = container_of(name)["ports"][0]["containerPort"]
    ports = ingress_by_port(name)
    assert set(ports) == {port, ADMIN_PORT}
    assert int(k8s("ConfigMap", "boutique")["data"]["ADMIN_PORT"]) == ADMIN_PORT
    if name == "frontend":
        assert ports[port] is None  # the shop is for everyone
    else:
        assert pod_names(ports[port] or []) == callers
    assert ports[ADMIN_PORT] == [MONITORING, COLLECTOR]


def test_nats_and_the_collector_admit_only_their_clients() -> None:
    nats = ingress_by_port("nats")
    producers = {n for n in SERVICES if "NATS_URL" in env_of(container_of(n))}
    assert pod_names(nats[4222] or []) == producers
    assert pod_names(nats[6222] or []) == {"nats"}
    assert nats[8222] == [MONITORING]
    collector = ingress_by_port("otel-collector")
    boutique = [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "boutique"}}}]
    assert collector[4317] == collector[4318] == boutique
    assert collector[8889] == [MONITORING]


AUTOSCALED = {"frontend", "productcatalog", "currency", "recommendation", "ad", "email"}


def test_the_stateless_services_scale_on_cpu_and_the_others_do_not() -> None:
    scalers = {
        doc["metadata"]["name"]: doc
        for _, doc in manifests()
        if doc["kind"] == "HorizontalPodAutoscaler"
    }
    assert set(scalers) == AUTOSCALED
    for name, scaler in scalers.items():
        spec = scaler["spec"]
        assert spec["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 1 <= spec["minReplicas"] < spec["maxReplicas"]
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert "cpu" in container_of(name)["resources"]["requests"]  # utilisation needs it
        assert "replicas" not in k8s("Deployment", name)["spec"]  # an apply keeps its count
        # replicas share whatever they keep: a store of theirs is a database, never the pod's
        env = env_of(container_of(name))
        stores = [v for v in env if v.endswith(("_DATABASE_URL", "_STORE"))]
        assert all("secretKeyRef" in env[v] for v in stores), name
    for name in set(SERVICES) - AUTOSCALED:
        assert k8s("Deployment", name)["spec"]["replicas"] == 1


def test_the_validator_rejects_a_broken_policy_and_autoscaler() -> None:
    policy = copy.deepcopy(policy_of("payment"))
    policy["spec"]["ingress"][0]["ports"][0]["port"] = [50051]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    scaler = copy.deepcopy(k8s("HorizontalPodAutoscaler", "frontend"))
    scaler["spec"]["targetCPUUtilizationPercentage"] = 70  # autoscaling/v1's, not v2's
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(scaler, K8S_VERSION, strict=True)
