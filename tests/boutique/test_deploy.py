"""The deployment files validate against real schemas and agree with the services.

Kubernetes manifests: ``kubernetes-validate`` (strict, the Kubernetes
OpenAPI schemas it ships). Compose file: the compose-spec JSON schema that
``check-jsonschema`` vendors, applied with ``jsonschema``. Nothing is run
(there is no Docker engine here); the checks are on the files themselves.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from reference_services.launcher import ADDRESS_VARIABLES, SERVICES

DEPLOY = Path(__file__).resolve().parents[2] / "reference_services" / "deploy"
K8S_VERSION = "1.33.0"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


def compose_schema() -> dict[str, Any]:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendored / "compose-spec.json").read_text())


def k8s(kind: str, name: str) -> dict[str, Any]:
    for _, doc in manifests():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


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
    env = {e["name"]: e["value"] for e in container["env"]}
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
    env = {e["name"]: e["value"] for e in container["env"]}
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
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["NATS_URL"] == f"nats://nats:{client_port}"


def test_the_user_signing_keys_are_a_secret_mounted_read_only_and_never_committed() -> None:
    pod = k8s("Deployment", "user")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
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
