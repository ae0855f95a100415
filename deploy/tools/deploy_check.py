#!/usr/bin/env python3
"""Checks of deploy/ that need no cluster, no Docker engine and no network.

Driven by scripts/check-deploy (which runs it with the stack's venv: helm-python-sdk, PyYAML,
jsonschema from kubernetes-validate). Each subcommand exits 0 when its check passes and 1 with a
message naming what is wrong when it does not; usage errors exit 2.

`dashboard-queries` needs only the standard library (scripts/dashboard-queries runs it with any
python3), so the heavy imports happen inside the functions that need them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy/helm/cxone-ingest"
CATALOGUE = REPO / "deploy/metrics-catalogue.txt"
RELEASE = "cxone-ingest"
NAMESPACE = "ingest"

# Kinds that are not in the Kubernetes schemas (Prometheus Operator CRDs): kubernetes-validate
# cannot check them, so `crd-check` checks the fields the chart renders, structurally.
CRD_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}

# Labels every scraped series may carry besides its own (target labels, histogram buckets).
TARGET_LABELS = {"job", "instance", "namespace", "pod", "le", "container", "service", "endpoint"}


class CheckFailed(Exception):
    """A check found a problem; the message says what."""


def fail(message: str) -> None:
    raise CheckFailed(message)


# --- rendering ------------------------------------------------------------------------------

def load_values(files: list[str]) -> dict:
    import yaml

    merged: dict = {}
    for name in files:
        data = yaml.safe_load(Path(name).read_text()) or {}
        if not isinstance(data, dict):
            fail(f"{name}: a values file must be a mapping")
        merged = deep_merge(merged, data)
    return merged


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def render(chart: Path, values: dict) -> dict[str, str]:
    import helm_python as helm

    try:
        with helm.Chart.load(str(chart)) as loaded:
            return loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    except helm.HelmError as err:
        fail(f"helm render failed: {err}")
    raise AssertionError("unreachable")


def documents(files: dict[str, str]) -> list[tuple[str, dict]]:
    """Every rendered Kubernetes object as (template path, object), NOTES.txt left out."""
    import yaml

    out = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as err:
            fail(f"{path} does not render to valid YAML: {err}")
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                fail(f"{path} renders something that is not a Kubernetes object: {str(doc)[:200]}")
            out.append((path, doc))
    return out


def cmd_render(args: argparse.Namespace) -> None:
    """Renders the chart; writes core objects (for kubernetes-validate) and CRD objects apart."""
    import yaml

    values = load_values(args.values)
    files = render(Path(args.chart), values)
    docs = documents(files)
    out = Path(args.out)
    (out / "core").mkdir(parents=True, exist_ok=True)
    (out / "crd").mkdir(parents=True, exist_ok=True)
    kinds = []
    for index, (path, doc) in enumerate(docs):
        sub = "crd" if doc["kind"] in CRD_KINDS else "core"
        name = f"{index:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        (out / sub / name).write_text(yaml.safe_dump(doc, sort_keys=False))
        kinds.append(doc["kind"])
    (out / "values.json").write_text(json.dumps(values))
    notes = [text for path, text in files.items() if path.endswith("NOTES.txt")]
    (out / "NOTES.txt").write_text(notes[0] if notes else "")
    print(f"rendered {len(docs)} objects: {', '.join(sorted(kinds))}")


def cmd_lint(args: argparse.Namespace) -> None:
    import helm_python as helm

    values = load_values(args.values)
    report = helm.lint(args.chart, values, strict=True, kube_version="v1.30.0")
    problems = list(report.get("errors") or [])
    for message in report.get("messages") or []:
        # 1 = info ("icon is recommended"), 2 = warning, 3 = error; --strict fails on warnings.
        if message.get("severity", 0) >= 2:
            problems.append(f"{message.get('path')}: {message.get('error')}")
    if problems:
        fail("helm lint --strict:\n  " + "\n  ".join(sorted(set(p.strip() for p in problems))))
    infos = [m.get("error") for m in report.get("messages") or [] if m.get("severity", 0) < 2]
    print("helm lint --strict: no errors or warnings" + (f" (info: {'; '.join(infos)})" if infos else ""))


# --- rendered objects -----------------------------------------------------------------------

def load_rendered(out: Path) -> list[dict]:
    import yaml

    objs = []
    for sub in ("core", "crd"):
        for f in sorted((out / sub).glob("*.yaml")):
            objs.append(yaml.safe_load(f.read_text()))
    return objs


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str) -> dict:
    found = by_kind(objs, kind)
    if len(found) != 1:
        fail(f"expected exactly one {kind}, rendered {len(found)}")
    return found[0]


CRD_SCHEMAS = {
    # Only what the chart renders; additionalProperties false so a typo in a template fails.
    "PodMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["selector", "podMetricsEndpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "namespaceSelector": {"type": "object", "additionalProperties": False,
                                          "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
                    "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/endpoint"}},
                },
            },
        },
        "$defs": {},
    },
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {"type": "object", "required": ["matchLabels"]},
                    "namespaceSelector": {"type": "object", "additionalProperties": False,
                                          "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
                    "endpoints": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/endpoint"}},
                },
            },
        },
        "$defs": {},
    },
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                    "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                                   "rules": {"type": "array", "minItems": 1, "items": {
                                       "type": "object", "additionalProperties": False, "required": ["expr"],
                                       "properties": {"alert": {"type": "string"}, "record": {"type": "string"},
                                                      "expr": {"type": "string"}, "for": {"type": "string"},
                                                      "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                                      "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}},
            },
        },
    },
}
ENDPOINT = {
    "type": "object", "additionalProperties": False, "required": ["port", "path"],
    "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                   "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                   "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                   "relabelings": {"type": "array", "items": {"type": "object"}},
                   "metricRelabelings": {"type": "array", "items": {"type": "object"}}},
}
CRD_SCHEMAS["PodMonitor"]["$defs"]["endpoint"] = ENDPOINT
CRD_SCHEMAS["ServiceMonitor"]["$defs"]["endpoint"] = ENDPOINT
METADATA = {"type": "object", "required": ["name", "namespace", "labels"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
                           "namespace": {"type": "string"},
                           "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}
for schema in CRD_SCHEMAS.values():
    schema["properties"]["metadata"] = METADATA


def cmd_crd_check(args: argparse.Namespace) -> None:
    """Structural check of the CRD objects, and that their content is the one source's."""
    import jsonschema
    import yaml

    out = Path(args.out)
    objs = load_rendered(out)
    values = json.loads((out / "values.json").read_text())
    crds = [o for o in objs if o["kind"] in CRD_KINDS]
    for obj in crds:
        errors = sorted(jsonschema.Draft202012Validator(CRD_SCHEMAS[obj["kind"]]).iter_errors(obj), key=str)
        if errors:
            fail(f"{obj['kind']} {obj['metadata']['name']}: " + "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors))
    pods = one(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    for obj in crds:
        if obj["kind"] in ("PodMonitor", "ServiceMonitor"):
            if obj["spec"].get("jobLabel") != "app.kubernetes.io/name":
                fail(f"{obj['kind']}: jobLabel must be app.kubernetes.io/name (the alert rules select job=\"cxone-ingest\")")
            endpoints = obj["spec"].get("podMetricsEndpoints") or obj["spec"].get("endpoints")
            if [e["port"] for e in endpoints] != ["admin"] or endpoints[0]["path"] != "/metrics":
                fail(f"{obj['kind']}: must scrape port admin, path /metrics only")
        if obj["kind"] == "PodMonitor" and not set(obj["spec"]["selector"]["matchLabels"].items()) <= set(pods.items()):
            fail("PodMonitor selector does not select the StatefulSet's pods")
    rule = by_kind(objs, "PrometheusRule")
    if rule:
        canonical = yaml.safe_load((CHART / "files/cxone-ingest.rules.yml").read_text())
        name = values.get("nameOverride") or "cxone-ingest"
        expected = json.loads(json.dumps(canonical).replace('job=\\"cxone-ingest\\"', f'job=\\"{name}\\"'))
        if rule[0]["spec"] != expected:
            fail("the PrometheusRule's groups differ from files/cxone-ingest.rules.yml")
    dashboards = [o for o in by_kind(objs, "ConfigMap") if "cxone-ingest.json" in (o.get("data") or {})]
    if dashboards:
        cm = dashboards[0]
        if json.loads(cm["data"]["cxone-ingest.json"]) != json.loads((CHART / "files/cxone-ingest.json").read_text()):
            fail("the dashboard ConfigMap differs from files/cxone-ingest.json")
        if cm["metadata"]["labels"].get("grafana_dashboard") != "1":
            fail("the dashboard ConfigMap lacks the sidecar label grafana_dashboard: \"1\"")
    print(f"CRD objects checked structurally: {', '.join(o['kind'] for o in crds) or 'none rendered'}"
          + ("; PrometheusRule = files/cxone-ingest.rules.yml" if rule else "")
          + ("; dashboard ConfigMap = files/cxone-ingest.json" if dashboards else ""))


SECRETISH = re.compile(r"(?i)(password|passwd|secret|token|private[_-]?key)")
CREDENTIAL_URL = re.compile(r"://[^/@\s]*:[^/@\s]*@")


def secret_key(dotted: str) -> bool:
    """A config key holding a secret itself (not the path of a file holding one)."""
    last = dotted.rsplit(".", 1)[-1].strip('"')
    if re.search(r"_files?$|\.location$", last):
        return False
    return bool(SECRETISH.search(last)) or last in ("ssl.key.pem", "sasl.jaas.config", "sasl.oauthbearer.config")


def toml_leaves(table: dict, prefix: str = ""):
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield from toml_leaves(value, dotted)
        else:
            yield dotted, value


def cmd_invariants(args: argparse.Namespace) -> None:
    """What the chart promises, checked on the rendered objects."""
    out = Path(args.out)
    objs = load_rendered(out)
    values = json.loads((out / "values.json").read_text())
    merged = chart_defaults_merged(values)
    problems: list[str] = []

    def need(cond: bool, message: str) -> None:
        if not cond:
            problems.append(message)

    sts = one(objs, "StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    need(spec.get("podManagementPolicy") == merged["podManagementPolicy"], "podManagementPolicy not rendered from values")
    need(spec["serviceName"] in {o["metadata"]["name"] for o in by_kind(objs, "Service")},
         "the StatefulSet's serviceName names no rendered Service")
    autoscaling = merged["autoscaling"]["enabled"]
    need(("replicas" in spec) != autoscaling, "replicas must be rendered exactly when autoscaling is off")
    containers = pod["containers"]
    need(len(containers) == 1, "one container expected")
    c = containers[0]
    env = {e["name"]: e for e in c.get("env", [])}
    need(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
         "env POD_NAME must come from metadata.name (the stable kafka instance id)")
    # Security.
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, "runAsNonRoot is not set")
    need(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not set")
    need(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
    need(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not all dropped")
    need((csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
         "seccompProfile RuntimeDefault is not set")
    need(isinstance(psc.get("runAsUser", csc.get("runAsUser")), int), "a numeric runAsUser is not set (runAsNonRoot needs one to verify)")
    # Probes and ports.
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    need(ports == {"http": merged["ports"]["http"], "admin": merged["ports"]["admin"]}, f"container ports {ports}")
    need(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe must be /readyz")
    need(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe must be /healthz")
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        need(c[name]["httpGet"]["port"] in ports, f"{name} names an unknown port")
    # Only the webhook port behind Services, unless the metrics Service for a ServiceMonitor.
    for svc in by_kind(objs, "Service"):
        targets = [p["targetPort"] for p in svc["spec"]["ports"]]
        if svc["metadata"]["name"].endswith("-metrics"):
            need(targets == ["admin"] and svc["spec"].get("clusterIP") == "None" and merged["serviceMonitor"]["enabled"],
                 "the metrics Service must be headless, admin only, and exist only for the ServiceMonitor")
        else:
            need(targets == ["http"], f"Service {svc['metadata']['name']} exposes {targets}: the webhook port only")
    # Scrape annotations.
    ann = spec["template"]["metadata"].get("annotations", {})
    if merged["metrics"]["podAnnotations"]:
        need(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(merged["ports"]["admin"])
             and ann.get("prometheus.io/path") == "/metrics", "prometheus.io/scrape|port|path pod annotations")
    need(re.fullmatch(r"[0-9a-f]{64}", str(ann.get("checksum/config", ""))) is not None, "checksum/config annotation missing")
    # Config and grace period.
    config = config_toml(objs)
    import tomllib

    parsed = tomllib.loads(config)
    server = parsed.get("server", {})
    pre_stop_s = merged["lifecycle"]["preStopDelaySeconds"]
    need(server.get("pre_stop_delay_ms") == pre_stop_s * 1000, "server.pre_stop_delay_ms != lifecycle.preStopDelaySeconds x 1000")
    need(server.get("listen") == f"0.0.0.0:{merged['ports']['http']}" or merged["listenHost"] != "0.0.0.0", "server.listen")
    need(env.get("CXONE_INGEST_LISTEN", {}).get("value") == server.get("listen"), "env CXONE_INGEST_LISTEN != server.listen")
    need(env.get("CXONE_INGEST_ADMIN_LISTEN", {}).get("value") == server.get("admin_listen"), "env CXONE_INGEST_ADMIN_LISTEN != server.admin_listen")
    drain_s = -(-int(server.get("drain_timeout_ms", 20000)) // 1000)
    grace = pre_stop_s + drain_s + 10 + merged["lifecycle"]["terminationMarginSeconds"]
    need(pod.get("terminationGracePeriodSeconds") == grace,
         f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')} != pre-stop {pre_stop_s} + drain {drain_s} + sink close 10 + margin")
    vols = {v["name"]: v for v in pod["volumes"]}
    if not merged.get("sources"):
        # One source, checked with webhookSecret (with `sources`, each names its own Secrets).
        mount = merged["webhookSecret"]["mountPath"]
        need(parsed.get("signature", {}).get("secret_files") == [f"{mount}/{k}" for k in merged["webhookSecret"]["keys"]],
             "signature.secret_files do not match webhookSecret.keys")
        need([i["key"] for i in vols["webhook-secret"]["secret"]["items"]] == merged["webhookSecret"]["keys"],
             "the webhook Secret volume does not project exactly webhookSecret.keys")
    # Schemas from ConfigMaps: each mounted whole (a subPath mount never sees an edited ConfigMap,
    # so the service could not reload it), read-only, and named as its folder in the config.
    mounts_by_name = {m["name"]: m for m in c.get("volumeMounts", [])}
    schema_folders = {}
    if merged["schemas"]["existingConfigMap"] or merged["schemas"]["files"]:
        schema_folders["schemas"] = (merged["schemas"]["mountPath"], parsed.get("contract", {}).get("schemas_dir"))
    else:
        need("schemas_dir" not in parsed.get("contract", {}), "contract.schemas_dir rendered without `schemas`")
    for source in merged.get("sources") or []:
        rendered_source = next((s for s in parsed.get("sources", []) if s["name"] == source["name"]), {})
        if source.get("schemasConfigMap"):
            schema_folders[f"src-{source['name']}-schemas"] = (
                f"{merged['schemas']['mountPath']}-{source['name']}", rendered_source.get("schemas_dir"))
        else:
            need("schemas_dir" not in rendered_source, f"sources[{source['name']}].schemas_dir rendered without schemasConfigMap")
    for vol_name, (path, configured) in schema_folders.items():
        mount = mounts_by_name.get(vol_name)
        need(mount is not None and mount["mountPath"] == path and "subPath" not in mount and mount.get("readOnly") is True,
             f"schema volume {vol_name} must be mounted whole and read-only at {path}")
        need("configMap" in vols.get(vol_name, {}), f"schema volume {vol_name} must come from a ConfigMap")
        need(configured == path, f"schema folder {path} mounted, but the config names {configured!r}")
    # Secrets only by reference: no Secret objects, nothing secret-looking in ConfigMaps or env values.
    need(not by_kind(objs, "Secret"), "the chart must not render Secret objects (secrets by reference only)")
    for key, value in toml_leaves(parsed):
        if secret_key(key) or (isinstance(value, str) and CREDENTIAL_URL.search(value)):
            problems.append(f"config.toml {key}: a secret in the ConfigMap (use a Secret reference)")
    for name, e in env.items():
        if "value" in e and (SECRETISH.search(name) or CREDENTIAL_URL.search(str(e["value"]))):
            problems.append(f"env {name} has a literal value that looks secret: use valueFrom.secretKeyRef")
    # Optional objects exist exactly when enabled.
    for kind, key in (("HorizontalPodAutoscaler", "autoscaling"), ("PodMonitor", "podMonitor"),
                      ("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule"),
                      ("PodDisruptionBudget", "podDisruptionBudget"), ("NetworkPolicy", "networkPolicy"),
                      ("Ingress", "ingress")):
        need(bool(by_kind(objs, kind)) == bool(merged[key]["enabled"]), f"{kind} rendered != {key}.enabled")
    if autoscaling:
        hpa = one(objs, "HorizontalPodAutoscaler")
        need(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"]},
             "the HPA does not target the StatefulSet")
        pods_metrics = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        if merged["autoscaling"]["inFlightRequests"]["enabled"]:
            need([m["pods"]["metric"]["name"] for m in pods_metrics] == ["cxone_ingest_in_flight_requests"],
                 "the HPA's Pods metric must be cxone_ingest_in_flight_requests")
    # The Ingress: exactly when enabled, every path to the webhook Service's http port only.
    notes = (out / "NOTES.txt").read_text()
    ingresses = by_kind(objs, "Ingress")
    webhook_svc = sts["metadata"]["name"]
    for ing in ingresses:
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                need(backend["name"] == webhook_svc and backend["port"] in ({"name": "http"}, {"number": merged["service"]["port"]}),
                     f"Ingress path {rule.get('host')}{path['path']} routes to {backend}: the webhook Service's http port only")
                tls_hosts = {h for entry in ing["spec"].get("tls", []) for h in entry.get("hosts", [])}
                scheme = "https" if rule.get("host") in tls_hosts else "http"
                need(f"{scheme}://{rule.get('host')}" in notes, f"NOTES.txt does not print the public URL {scheme}://{rule.get('host')}")
        if merged["networkPolicy"]["enabled"]:
            policy = one(objs, "NetworkPolicy")
            webhook_rules = [r for r in policy["spec"]["ingress"] if {"port": "http", "protocol": "TCP"} in r["ports"]]
            ctl = {k: v for k, v in merged["networkPolicy"]["ingressController"].items() if v}
            need(not ctl or any(ctl in r.get("from", []) for r in webhook_rules),
                 "the NetworkPolicy does not admit the ingress controller (networkPolicy.ingressController) to the webhook port")
    # Several replicas on per-replica dedupe memory only when accepted, and then NOTES warns.
    max_replicas = merged["autoscaling"]["maxReplicas"] if autoscaling else merged["replicas"]
    shared = bool(merged["dedupe"]["existingSecret"]) or "valueFrom" in env.get("CXONE_INGEST_DEDUPE_STORE", {}) \
        or str(env.get("CXONE_INGEST_DEDUPE_STORE", {}).get("value", "")).startswith("redis")
    if max_replicas > 1 and not shared:
        need(merged["dedupe"]["acceptCrossReplicaDuplicates"] is True,
             f"{max_replicas} replicas on the per-replica memory dedupe store without dedupe.acceptCrossReplicaDuplicates")
        need("WARNING: cross-replica duplicates accepted" in notes, "NOTES.txt does not warn about cross-replica duplicates")
    else:
        need("cross-replica duplicates" not in notes, "NOTES.txt warns about cross-replica duplicates that cannot happen")
    if problems:
        fail("rendered objects break the chart's promises:\n  " + "\n  ".join(problems))
    print(f"invariants hold ({len(objs)} objects; grace period {grace} s = pre-stop {pre_stop_s} + drain {drain_s} + 10 + "
          f"{merged['lifecycle']['terminationMarginSeconds']})")


def chart_defaults_merged(values: dict) -> dict:
    import yaml

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return deep_merge(defaults, values)


def config_toml(objs: list[dict]) -> str:
    cms = [o for o in by_kind(objs, "ConfigMap") if "config.toml" in (o.get("data") or {})]
    if len(cms) != 1:
        fail(f"expected one ConfigMap with config.toml, found {len(cms)}")
    return cms[0]["data"]["config.toml"]


DUMMY_PEM = "-----BEGIN CERTIFICATE-----\nY2hlY2stZGVwbG95LWR1bW15\n-----END CERTIFICATE-----\n"


def cmd_extract_config(args: argparse.Namespace) -> None:
    """Writes the rendered config.toml and a dummy environment that mirrors the pod's.

    Secret references get dummy values (the webhook secret files are written with a dummy 40-byte
    secret under --files-root, and the TOML's paths point there); plain env values are kept.
    """
    import tomllib

    out = Path(args.out)
    objs = load_rendered(out)
    config = config_toml(objs)
    tomllib.loads(config)  # the renderer wrote valid TOML
    pod = one(objs, "StatefulSet")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    root = Path(args.files_root)
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    for vol in pod["volumes"]:
        secret = vol.get("secret")
        if not secret or vol["name"] not in mounts:
            continue
        base = mounts[vol["name"]]
        for item in secret.get("items", []):
            target = root / base.lstrip("/") / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if item["path"].endswith((".crt", ".pem")):
                # A CA certificate (kafka / dedupe caCertificate): the service checks it is PEM.
                target.write_text(DUMMY_PEM)
            else:
                # One dummy per file: the service refuses two sources sharing a credential.
                digest = hashlib.sha256(str(target).encode()).hexdigest()[:24]
                target.write_text(f"check-deploy-dummy-{digest}\n")
        config = config.replace(f'"{base}/', f'"{root}/{base.lstrip("/")}/')
    # Schema folders mounted from ConfigMaps (`schemas`, sources[].schemasConfigMap): the files of a
    # ConfigMap the chart rendered, or, for an existing ConfigMap, the repository's schemas/ in its
    # place; the TOML's folder paths point there.
    rendered_cms = {o["metadata"]["name"]: o for o in by_kind(objs, "ConfigMap")}
    for vol in pod["volumes"]:
        cm = vol.get("configMap")
        if not cm or vol["name"] == "config" or vol["name"] not in mounts:
            continue
        base = mounts[vol["name"]]
        folder = root / base.lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        rendered = rendered_cms.get(cm["name"])
        files = (rendered or {}).get("data") or {p.name: p.read_text() for p in (REPO / "schemas").glob("*.json")}
        for name, text in files.items():
            (folder / name).write_text(text)
        config = config.replace(f'"{base}"', f'"{folder}"')
    Path(args.toml).write_text(config)
    lines = []
    for e in c.get("env", []):
        if "value" in e:
            value = e["value"]
        elif "fieldRef" in e.get("valueFrom", {}):
            value = f"{RELEASE}-0"
        elif e["name"] == "CXONE_INGEST_DEDUPE_STORE":
            # TLS when the chart mounted a CA for the store (dedupe.ca_file is only for rediss://).
            tls = "ca_file" in tomllib.loads(config).get("dedupe", {})
            value = f"redis{'s' if tls else ''}://default:dummy@redis.invalid:6379/0"
        else:
            value = "check-deploy-dummy-value"
        if e["name"] == "CXONE_INGEST_CONFIG":
            continue
        lines.append(f"{e['name']}={value}")
    Path(args.env).write_text("\n".join(lines) + "\n")
    print(f"config.toml ({len(config.splitlines())} lines) and the pod's environment ({len(lines)} variables) extracted")


def cmd_strip_keys(args: argparse.Namespace) -> None:
    """Drops `section.key` lines (or a whole `[section]`) from a TOML file the chart rendered."""
    import tomllib

    drop = set(args.keys)
    table = ""
    kept = []
    dropped = []
    for line in Path(args.src).read_text().splitlines():
        header = re.fullmatch(r"\[([^\]]+)\]", line.strip())
        if header:
            table = header.group(1)
        section = table.split(".")[0] if table else ""
        if section and section in drop:
            if line.strip() and not header:
                dropped.append(f"{table}: {line.strip()}")
            continue
        key = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", line)
        if key and f"{table}.{key.group(1)}" in drop:
            dropped.append(line.strip())
            continue
        kept.append(line)
    text = "\n".join(kept) + "\n"
    tomllib.loads(text)
    Path(args.dst).write_text(text)
    print("; ".join(dropped) if dropped else "(nothing)")


def cmd_readme_blocks(args: argparse.Namespace) -> None:
    """Writes the ```yaml blocks of a Markdown page: values files (every top-level key a value of
    the chart) as values-NN.yaml, Kubernetes manifests (apiVersion + kind) as manifests/NN.yaml."""
    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    top = set(schema["properties"])
    text = Path(args.page).read_text()
    out = Path(args.out)
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    values = manifests = 0
    for number, (lang, body) in enumerate(re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)):
        if lang != "yaml":
            continue
        try:
            doc = yaml.safe_load(body)
        except yaml.YAMLError as err:
            fail(f"{args.page}: yaml block {number} does not parse: {err}")
        if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
            (out / "manifests" / f"{number:02d}.yaml").write_text(body)
            manifests += 1
        elif isinstance(doc, dict) and set(doc) <= top:
            (out / f"values-{number:02d}.yaml").write_text(body)
            values += 1
    if not values:
        fail(f"{args.page}: no values examples found")
    print(f"{values} values examples, {manifests} manifests")


# --- alert rules ----------------------------------------------------------------------------

def catalogue() -> tuple[set[str], set[str]]:
    """(every series name the service exposes, every label name it uses)."""
    names, labels = set(), set()
    for line in CATALOGUE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        name, kind = parts[0], parts[1]
        labels.update(parts[2:])
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        else:
            names.add(name)
    return names, labels


def check_promql_names(expr: str, where: str, allowed_extra: set[str]) -> list[str]:
    names, labels = catalogue()
    problems = []
    for metric in re.findall(r"\b(cxone_ingest_[a-z0-9_]+)\b", expr):
        if metric not in names:
            problems.append(f"{where}: metric {metric} is not in deploy/metrics-catalogue.txt")
    for metric in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr):
        if metric not in names and metric not in allowed_extra:
            problems.append(f"{where}: metric {metric} is not in deploy/metrics-catalogue.txt")
    used = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        used.update(x.strip() for x in group.split(",") if x.strip())
    used.update(re.findall(r"[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", expr))
    for label in sorted(used - labels - TARGET_LABELS):
        problems.append(f"{where}: label {label} is not a label of the catalogue's metrics")
    return problems


def anchors(markdown: str) -> set[str]:
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(text.replace(" ", "-"))
        for a in re.findall(r'<a (?:name|id)="([^"]+)"', line):
            out.add(a)
    return out


def cmd_rules_meta(args: argparse.Namespace) -> None:
    """Every alert: severity, summary, description, runbook anchor that exists, catalogue
    metrics only, and a unit test where it fires and one where it stays quiet."""
    import yaml

    rules = yaml.safe_load(Path(args.rules).read_text())
    doc_anchors = anchors(Path(args.operations).read_text())
    problems: list[str] = []
    alerts = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert")
            if not name:
                problems.append(f"recording rule {rule.get('record')}: add unit tests for it, then allow it here")
                continue
            alerts.append(name)
            if rule.get("labels", {}).get("severity") not in ("critical", "warning"):
                problems.append(f"{name}: labels.severity must be critical or warning")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    problems.append(f"{name}: annotation {key} missing")
            url = ann.get("runbook_url", "")
            m = re.fullmatch(r"docs/operations\.md#([a-z0-9-]+)", url)
            if not m:
                problems.append(f"{name}: runbook_url {url!r} must be docs/operations.md#<anchor>")
            elif m.group(1) not in doc_anchors:
                problems.append(f"{name}: runbook_url anchor #{m.group(1)} is not a heading of {args.operations}")
            problems.extend(check_promql_names(rule["expr"], name, {"up"}))
            if 'job="cxone-ingest"' not in rule["expr"]:
                problems.append(f"{name}: select job=\"cxone-ingest\" (the chart rewrites it to its job)")
    if len(set(alerts)) != len(alerts):
        problems.append("alert names are not unique")
    fires, quiet = set(), set()
    for test_file in sorted(Path(args.tests).glob("*.yml")):
        tests = yaml.safe_load(test_file.read_text())
        for group in tests.get("tests", []):
            for case in group.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for name in alerts:
        if name not in fires:
            problems.append(f"{name}: no unit test where it fires")
        if name not in quiet:
            problems.append(f"{name}: no unit test where it stays quiet")
    for name in sorted((fires | quiet) - set(alerts)):
        problems.append(f"the unit tests name {name}, which is not an alert of {args.rules}")
    if problems:
        fail("alert rules:\n  " + "\n  ".join(problems))
    print(f"{len(alerts)} alerts: each with severity, summary, description, a runbook anchor in "
          f"{Path(args.operations).name}, catalogue metrics only, a firing and a quiet unit test")


def cmd_mutate_rule(args: argparse.Namespace) -> None:
    """Writes a copy of the rules where one alert's (or ALL alerts') expression never / always fires."""
    import yaml

    rules = yaml.safe_load(Path(args.rules).read_text())
    found = False
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") and args.alert in (rule["alert"], "ALL"):
                rule["expr"] = "vector(1) == 2" if args.mode == "never" else "vector(1)"
                rule.pop("for", None)
                found = True
    if not found:
        fail(f"no alert {args.alert}")
    Path(args.dst).write_text(yaml.safe_dump(rules, sort_keys=False))


def cmd_alerts(args: argparse.Namespace) -> None:
    import yaml

    rules = yaml.safe_load(Path(args.rules).read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert"):
                print(rule["alert"])


# --- dashboard ------------------------------------------------------------------------------

def dashboard_panels(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                out.append((f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target["expr"]))
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise KeyError(name)
        return variables[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, expr)


def query_variables(args: argparse.Namespace) -> dict[str, str]:
    variables = {"__rate_interval": args.rate_interval, "__interval": args.rate_interval,
                 "__range": args.range, "job": "cxone-ingest", "namespace": ".*", "instance": ".*"}
    for item in args.var or []:
        key, _, value = item.partition("=")
        variables[key] = value
    return variables


def cmd_dashboard_queries(args: argparse.Namespace) -> None:
    dashboard = json.loads(Path(args.dashboard).read_text())
    variables = query_variables(args)
    for where, expr in dashboard_exprs(dashboard):
        try:
            print(" ".join(substitute(expr, variables).split()))
        except KeyError as err:
            print(f"{where}: no value for variable ${err.args[0]} (give --var {err.args[0]}=...)", file=sys.stderr)
            sys.exit(2)


def cmd_dashboard_check(args: argparse.Namespace) -> None:
    """Structure, datasource by variable, catalogue metrics only; writes the queries as a rule
    file so promtool can parse every one of them."""
    import yaml

    try:
        dashboard = json.loads(Path(args.dashboard).read_text())
    except json.JSONDecodeError as err:
        fail(f"{args.dashboard} is not valid JSON: {err}")
    problems = []
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no `datasource` template variable of type datasource (prometheus)")
    text = json.dumps(dashboard)
    for uid in re.findall(r'"uid":\s*"([^"]*)"', text):
        if uid not in ("${datasource}", dashboard.get("uid")):
            problems.append(f"hard-coded datasource uid {uid!r}: use ${{datasource}}")
    ids = [p.get("id") for p in dashboard_panels(dashboard)]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    for panel in dashboard_panels(dashboard):
        if panel.get("type") == "row":
            continue
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if not panel.get("targets"):
            problems.append(f"{where}: no query")
        if (panel.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"{where}: datasource must be ${{datasource}}")
        if not all(k in panel.get("gridPos", {}) for k in ("h", "w", "x", "y")):
            problems.append(f"{where}: gridPos incomplete")
        for target in panel.get("targets", []):
            if not target.get("expr"):
                problems.append(f"{where} {target.get('refId')}: empty expr")
            elif (target.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"{where} {target.get('refId')}: datasource must be ${{datasource}}")
    exprs = dashboard_exprs(dashboard)
    names, _ = catalogue()
    for where, expr in exprs:
        problems.extend(check_promql_names(expr, where, set()))
        for metric in set(re.findall(r"\b(cxone_ingest_[a-z0-9_]+)\b", expr)):
            if not re.search(rf"\b{metric}\{{[^}}]*job=~\"\$job\"", expr):
                problems.append(f"{where}: {metric} must be selected with job=~\"$job\" (and the other variables)")
    if problems:
        fail("dashboard:\n  " + "\n  ".join(problems))
    variables = query_variables(argparse.Namespace(rate_interval="1m", range="5m", var=[]))
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr, variables)} for i, (_, expr) in enumerate(exprs)]}]}
    Path(args.promql_out).write_text(yaml.safe_dump(rules, sort_keys=False))
    print(f"dashboard: {sum(1 for p in dashboard_panels(dashboard) if p.get('type') != 'row')} panels, "
          f"{len(exprs)} queries, datasource by variable, catalogue metrics only")


# --- main -----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render"); p.add_argument("chart"); p.add_argument("out"); p.add_argument("values", nargs="*")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("lint"); p.add_argument("chart"); p.add_argument("values", nargs="*"); p.set_defaults(func=cmd_lint)
    p = sub.add_parser("crd-check"); p.add_argument("out"); p.set_defaults(func=cmd_crd_check)
    p = sub.add_parser("invariants"); p.add_argument("out"); p.set_defaults(func=cmd_invariants)
    p = sub.add_parser("extract-config"); p.add_argument("out"); p.add_argument("toml"); p.add_argument("env")
    p.add_argument("files_root"); p.set_defaults(func=cmd_extract_config)
    p = sub.add_parser("strip-keys"); p.add_argument("src"); p.add_argument("dst"); p.add_argument("keys", nargs="*")
    p.set_defaults(func=cmd_strip_keys)
    p = sub.add_parser("readme-blocks"); p.add_argument("page"); p.add_argument("out"); p.set_defaults(func=cmd_readme_blocks)
    p = sub.add_parser("rules-meta"); p.add_argument("rules"); p.add_argument("tests"); p.add_argument("operations")
    p.set_defaults(func=cmd_rules_meta)
    p = sub.add_parser("mutate-rule"); p.add_argument("rules"); p.add_argument("alert")
    p.add_argument("mode", choices=["never", "always"]); p.add_argument("dst"); p.set_defaults(func=cmd_mutate_rule)
    p = sub.add_parser("alerts"); p.add_argument("rules"); p.set_defaults(func=cmd_alerts)
    p = sub.add_parser("dashboard-check"); p.add_argument("dashboard"); p.add_argument("promql_out")
    p.set_defaults(func=cmd_dashboard_check)
    p = sub.add_parser("dashboard-queries", help="every panel query, one a line, variables substituted")
    p.add_argument("dashboard", nargs="?", default=str(REPO / "deploy/grafana/cxone-ingest.json"))
    p.add_argument("--rate-interval", default="1m", help="value of $__rate_interval and $__interval (default 1m)")
    p.add_argument("--range", default="5m", help="value of $__range (default 5m)")
    p.add_argument("--var", action="append", metavar="NAME=VALUE",
                   help="a template variable's value (defaults: job=cxone-ingest namespace=.* instance=.*)")
    p.set_defaults(func=cmd_dashboard_queries)
    args = parser.parse_args()
    try:
        args.func(args)
    except CheckFailed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
