"""terraform/ declares exactly the topology of shared/topology.py, in both directions.

How the comparison works:
1. terraform/topology.auto.tfvars.json (the `topology` variable) must equal what
   `python -m shared.topology_export` generates, and is also compared field by field with
   shared/topology.py here, independently of the exporter.
2. Every topic, subscription and function resource in terraform/*.tf iterates (`for_each`) over
   that variable, and no other resource of those types exists.
3. Each resource body is instantiated for every topology entry (`each.key` / `each.value.x`
   replaced by the entry's values) and the result is compared with the topology: names, retry
   backoff, delivery attempts, ack deadline, push target, entry point, ingress ...

Plus: no identity gets roles/owner or roles/editor, every MAILPIPE_* variable is a setting,
every secret has a reader, the Firestore composite indexes are exactly the ones the code's
queries need, every dashboard view reads only `events`, `terraform fmt` is clean and checkov
reports no failed check.
"""

from __future__ import annotations

import ast
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hcl2
import pytest
import sqlglot
from hcl2.utils import SerializationOptions
from sqlglot import exp

from shared import settings, topology, topology_export
from shared.domain import events, links
from shared.services import warehousing

REPO_ROOT = topology.REPO_ROOT
TF_DIR = REPO_ROOT / "terraform"
TFVARS = TF_DIR / "topology.auto.tfvars.json"
SETTING_FIELDS = {f.name for f in fields(settings.Settings)} - {"extra"}
FORBIDDEN_ROLES = ("roles/owner", "roles/editor")
FIRESTORE_LEVELS = {"write", "read", ""}

# The resources generated from the topology: (type, name) -> the for_each they must use.
TOPOLOGY_RESOURCES = {
    ("google_pubsub_topic", "topic"): "${toset(var.topology.topics)}",
    ("google_pubsub_topic", "dead_letter"): "${var.topology.subscriptions}",
    ("google_pubsub_subscription", "push"): "${var.topology.subscriptions}",
    ("google_pubsub_subscription", "dead_letter_hold"): "${var.topology.subscriptions}",
    ("google_cloudfunctions2_function", "function"): "${var.topology.functions}",
    ("google_storage_bucket_object", "source"): "${var.topology.functions}",
    ("google_service_account", "function"): "${var.topology.functions}",
}


# --- reading terraform/ -------------------------------------------------------------------------


@functools.cache
def tf() -> dict[str, Any]:
    """Every .tf file merged: {"resource": {type: {name: body}}, "locals": {...}, ...}."""
    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    merged: dict[str, Any] = {"resource": {}, "data": {}, "locals": {}, "variable": {}}
    for path in sorted(TF_DIR.glob("*.tf")):
        with path.open(encoding="utf-8") as f:
            parsed = hcl2.load(f, serialization_options=options)
        for kind in ("resource", "data"):
            for declared in parsed.get(kind, []):
                for rtype, named in declared.items():
                    for name, body in named.items():
                        seen = merged[kind].setdefault(rtype, {})
                        assert name not in seen, f"{kind} {rtype}.{name} is declared twice"
                        seen[name] = body
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
        for block in parsed.get("variable", []):
            merged["variable"].update(block)
    return merged


def resource(rtype: str, name: str) -> dict[str, Any]:
    found = tf()["resource"].get(rtype, {}).get(name)
    assert found is not None, f"terraform/ declares no {rtype}.{name}"
    return found


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body."""
    value = body.get(name)
    assert isinstance(value, list) and len(value) == 1, f"expected one {name} block"
    return value[0]


def _literal(value: object) -> str:
    return json.dumps(value)


_LITERAL = r'null|true|false|-?\d+(?:\.\d+)?|"[^"]*"'


def instantiate(expression: object, key: str, value: dict[str, Any]) -> str:
    """`expression` for the for_each instance (key, value): `each.key` and `each.value.x` become
    literals, then `${"literal"}`, `${10}`, `${true ? "A" : "B"}` and `${L == R ? "A" : "B"}`
    (L and R literals) collapse to their value."""
    text = str(expression)
    text = re.sub(r"\beach\.value\.(\w+)", lambda m: _literal(value[m[1]]), text)
    text = re.sub(r"\beach\.key\b", _literal(key), text)
    text = re.sub(
        rf"\$\{{({_LITERAL}) (==|!=) ({_LITERAL}) \? ",
        lambda m: "${" + str((m[1] == m[3]) == (m[2] == "==")).lower() + " ? ",
        text,
    )
    text = re.sub(
        r'\$\{(true|false) \? "([^"]*)" : "([^"]*)"\}',
        lambda m: m[2] if m[1] == "true" else m[3],
        text,
    )
    text = re.sub(r'\$\{"([^"]*)"\}', lambda m: m[1], text)
    return re.sub(r"\$\{(-?\d+(?:\.\d+)?|true|false|null)\}", lambda m: m[1], text)


def ref(rtype: str, name: str, key: str, attribute: str) -> str:
    return f'${{{rtype}.{name}["{key}"].{attribute}}}'


def strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


@functools.cache
def tfvars() -> dict[str, Any]:
    return json.loads(TFVARS.read_text(encoding="utf-8"))["topology"]


# --- the topology variable ---------------------------------------------------------------------


def test_topology_tfvars_is_up_to_date() -> None:
    assert topology_export.is_up_to_date(), (
        "terraform/topology.auto.tfvars.json is stale: run `python -m shared.topology_export`"
    )


def test_topology_tfvars_matches_topology_both_ways() -> None:
    data = tfvars()
    assert data["topics"] == list(topology.TOPICS)
    assert data["dead_letter_retention_s"] == topology.DEAD_LETTER_RETENTION_S
    assert set(data["functions"]) == {f.name for f in topology.FUNCTIONS}
    for f in topology.FUNCTIONS:
        assert data["functions"][f.name] == {
            "entry_point": f.entry_point,
            "source_dir": f.folder,
            "trigger_topic": f.trigger_topic,
            "route": f.route,
            "public": f.public,
            "memory_mb": f.memory_mb,
            "timeout_s": f.timeout_s,
            "max_instances": f.max_instances,
            "concurrency": f.concurrency,
            "cpu": None if f.cpu is None else f"{f.cpu:g}",
        }, f.name
    assert set(data["subscriptions"]) == {s.name for s in topology.SUBSCRIPTIONS}
    for s in topology.SUBSCRIPTIONS:
        assert data["subscriptions"][s.name] == {
            "topic": s.topic,
            "function": s.function,
            "ack_deadline_s": s.ack_deadline_s,
            "minimum_backoff_s": s.retry.minimum_backoff_s,
            "maximum_backoff_s": s.retry.maximum_backoff_s,
            "max_attempts": s.retry.max_attempts,
            "dead_letter_topic": s.dead_letter_topic,
            "dead_letter_subscription": s.dead_letter_subscription,
        }, s.name


@pytest.mark.parametrize("sub", topology.SUBSCRIPTIONS, ids=lambda s: s.name)
def test_topology_values_are_ones_pubsub_accepts(sub: topology.Subscription) -> None:
    assert 5 <= sub.retry.max_attempts <= 100, "dead-letter policies allow 5..100 attempts"
    assert 10 <= sub.ack_deadline_s <= 600, "ack deadlines are 10..600 s"
    assert 0 <= sub.retry.minimum_backoff_s <= sub.retry.maximum_backoff_s <= 600
    assert sub.topic in topology.TOPICS
    assert topology.function(sub.function).trigger_topic == sub.topic


def test_service_account_ids_fit() -> None:
    account = resource("google_service_account", "function")
    for f in topology.FUNCTIONS:
        account_id = instantiate(account["account_id"], f.name, {})
        assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", account_id), account_id


# --- Terraform resources against the topology --------------------------------------------------


def test_topology_resources_iterate_over_the_topology_and_nothing_else_exists() -> None:
    for (rtype, name), for_each in TOPOLOGY_RESOURCES.items():
        assert resource(rtype, name).get("for_each") == for_each, f"{rtype}.{name}"
    for rtype in {rtype for rtype, _ in TOPOLOGY_RESOURCES}:
        declared = {(rtype, name) for name in tf()["resource"].get(rtype, {})}
        expected = {key for key in TOPOLOGY_RESOURCES if key[0] == rtype}
        extra = declared - expected
        if rtype == "google_storage_bucket_object":
            extra -= {(rtype, "template")}
        if rtype == "google_service_account":
            extra -= {(rtype, "pusher"), (rtype, "builder")}
        assert not extra, f"resources outside the topology: {sorted(extra)}"


@pytest.mark.parametrize("topic", topology.TOPICS)
def test_topic(topic: str) -> None:
    assert instantiate(resource("google_pubsub_topic", "topic")["name"], topic, {}) == topic


@pytest.mark.parametrize("sub", topology.SUBSCRIPTIONS, ids=lambda s: s.name)
def test_push_subscription(sub: topology.Subscription) -> None:
    values = tfvars()["subscriptions"][sub.name]
    body = resource("google_pubsub_subscription", "push")

    def at(expression: object) -> str:
        return instantiate(expression, sub.name, values)

    assert at(body["name"]) == sub.name
    assert at(body["topic"]) == ref("google_pubsub_topic", "topic", sub.topic, "id")
    assert at(body["ack_deadline_seconds"]) == str(sub.ack_deadline_s)
    retry = block(body, "retry_policy")
    assert at(retry["minimum_backoff"]) == f"{sub.retry.minimum_backoff_s:g}s"
    assert at(retry["maximum_backoff"]) == f"{sub.retry.maximum_backoff_s:g}s"
    dead = block(body, "dead_letter_policy")
    assert at(dead["dead_letter_topic"]) == ref(
        "google_pubsub_topic", "dead_letter", sub.name, "id"
    )
    assert at(dead["max_delivery_attempts"]) == str(sub.retry.max_attempts)
    assert block(body, "expiration_policy")["ttl"] == ""
    push = block(body, "push_config")
    function_uri = (
        f'${{google_cloudfunctions2_function.function["{sub.function}"].service_config[0].uri}}'
    )
    assert at(push["push_endpoint"]) == (
        f"{function_uri}/projects/${{var.project_id}}/topics/{sub.topic}"
    )
    oidc = block(push, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.pusher.email}"
    assert at(oidc["audience"]) == function_uri


@pytest.mark.parametrize("sub", topology.SUBSCRIPTIONS, ids=lambda s: s.name)
def test_dead_letters_are_kept(sub: topology.Subscription) -> None:
    values = tfvars()["subscriptions"][sub.name]
    topic = resource("google_pubsub_topic", "dead_letter")
    assert instantiate(topic["name"], sub.name, values) == sub.dead_letter_topic
    hold = resource("google_pubsub_subscription", "dead_letter_hold")
    assert instantiate(hold["name"], sub.name, values) == sub.dead_letter_subscription
    assert instantiate(hold["topic"], sub.name, values) == ref(
        "google_pubsub_topic", "dead_letter", sub.name, "id"
    )
    assert "push_config" not in hold, "the hold subscription must be a pull subscription"
    retention = "${var.topology.dead_letter_retention_s}s"
    assert hold["message_retention_duration"] == topic["message_retention_duration"] == retention
    assert tfvars()["dead_letter_retention_s"] == topology.DEAD_LETTER_RETENTION_S == 31 * 86400
    assert block(hold, "expiration_policy")["ttl"] == ""


def test_pubsub_service_agent_may_dead_letter() -> None:
    agent = tf()["locals"]["pubsub_service_agent"]
    assert "@gcp-sa-pubsub.iam.gserviceaccount.com" in agent
    assert "service-${data.google_project.this.number}" in agent
    publisher = resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    subscriber = resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    for body in (publisher, subscriber):
        assert body["for_each"] == "${var.topology.subscriptions}"
        assert body["member"] == "${local.pubsub_service_agent}"
    assert publisher["role"] == "roles/pubsub.publisher"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter[each.key].name}"
    assert subscriber["subscription"] == "${google_pubsub_subscription.push[each.key].name}"


@pytest.mark.parametrize("fn", topology.FUNCTIONS, ids=lambda f: f.name)
def test_function(fn: topology.Function) -> None:
    values = tfvars()["functions"][fn.name]
    body = resource("google_cloudfunctions2_function", "function")

    def at(expression: object) -> str:
        return instantiate(expression, fn.name, values)

    assert at(body["name"]) == fn.name
    assert "event_trigger" not in body, "every function is HTTP; Pub/Sub pushes to it"
    build = block(body, "build_config")
    assert build["runtime"] == "python311"
    assert at(build["entry_point"]) == fn.entry_point
    source = block(block(build, "source"), "storage_source")
    assert at(source["object"]) == ref("google_storage_bucket_object", "source", fn.name, "name")
    service = block(body, "service_config")
    assert at(service["available_memory"]) == f"{fn.memory_mb}M"
    assert at(service["timeout_seconds"]) == str(fn.timeout_s)
    assert at(service["max_instance_count"]) == (
        f'${{lookup(var.max_instances, "{fn.name}", {fn.max_instances})}}'
    )
    # Capacity: concurrency and CPU from the topology, and as many server threads as requests.
    assert at(service["max_instance_request_concurrency"]) == str(fn.concurrency)
    assert at(service["available_cpu"]) == ("null" if fn.cpu is None else f"{fn.cpu:g}")
    assert at(service["environment_variables"]) == (
        f"${{merge(local.environment, {{THREADS = tostring({fn.concurrency})}})}}"
    )
    # HTTP functions take internet traffic (IAM decides who may call them), the public ones
    # only the load balancer's when there is one; pushed ones only internal traffic (Pub/Sub
    # push from the project). local.ingress is evaluated in test_ingress_per_function.
    assert at(service["ingress_settings"]) == f'${{local.ingress["{fn.name}"]}}'
    assert at(service["service_account_email"]) == ref(
        "google_service_account", "function", fn.name, "email"
    )
    zip_object = resource("google_storage_bucket_object", "source")
    assert at(zip_object["source"]) == f"${{local.dist_dir}}/{fn.name}.zip"
    assert f'filesha256("${{local.dist_dir}}/{fn.name}.zip")' in at(zip_object["name"])


def test_pubsub_triggered_functions_are_exactly_the_pushed_ones() -> None:
    pushed = {s.function for s in topology.SUBSCRIPTIONS}
    assert pushed == {f.name for f in topology.FUNCTIONS if not f.is_http}
    local = tf()["locals"]["pushed_functions"]
    assert local == "${toset([for s in values(var.topology.subscriptions) : s.function])}"
    invoker = resource("google_cloud_run_v2_service_iam_member", "pusher_invoker")
    assert invoker["for_each"] == "${local.pushed_functions}"
    assert invoker["role"] == "roles/run.invoker"
    assert invoker["member"] == "serviceAccount:${google_service_account.pusher.email}"


def test_only_public_functions_are_open_to_everyone() -> None:
    local = tf()["locals"]["public_functions"]
    assert local == "${toset([for name, f in var.topology.functions : name if f.public])}"
    public = resource("google_cloud_run_v2_service_iam_member", "public_invoker")
    assert public["for_each"] == (
        '${var.public_access == "allUsers" ? local.public_functions : toset([])}'
    )
    assert public["role"] == "roles/run.invoker"
    assert public["member"] == "allUsers"
    for rtype, named in tf()["resource"].items():
        for name, body in named.items():
            if (rtype, name) == ("google_cloud_run_v2_service_iam_member", "public_invoker"):
                continue
            opened = [s for s in strings(body) if "allUsers" in s or "allAuthenticatedUsers" in s]
            assert not opened, f"{rtype}.{name} grants {opened}"


def test_function_access_covers_exactly_the_topology() -> None:
    access = tf()["locals"]["function_access"]
    assert set(access) == {f.name for f in topology.FUNCTIONS}
    for name, grants in access.items():
        assert set(grants) == {
            "publishes", "firestore", "templates", "warehouse", "queries", "secrets"
        }, name  # fmt: skip
        unknown = set(grants["publishes"]) - set(topology.TOPICS)
        assert not unknown, f"{name} publishes to topics not in the topology: {unknown}"
        assert set(grants["secrets"]) <= SETTING_FIELDS, name
        firestore = grants["firestore"]
        assert firestore in FIRESTORE_LEVELS or re.fullmatch(
            r'\$\{var\.\w+ == "\w+" \? "(write|read)" : ""\}', firestore
        ), f"{name}: firestore must be write, read or empty, not {firestore!r}"
        assert isinstance(grants["queries"], bool), name
    assert [n for n, g in access.items() if g["warehouse"] is True] == ["warehouse"]
    assert set(tf()["locals"]["firestore_roles"]) == FIRESTORE_LEVELS - {""}


def test_every_http_function_may_read_the_templates() -> None:
    """Any HTTP function answers a browser's failed request with the HTML error page from
    templates/pages (shared/entrypoints/http.py), so each must be able to read it."""
    access = tf()["locals"]["function_access"]
    for f in topology.FUNCTIONS:
        if f.is_http:
            assert access[f.name]["templates"] is True, f.name


def test_functions_that_hand_over_may_publish_to_their_own_topic() -> None:
    """A function that hands work to a fresh invocation of itself (dispatch, triggers) must
    be allowed to publish to its own trigger topic."""
    access = tf()["locals"]["function_access"]
    for name in ("dispatch", "triggers"):
        assert topology.function(name).trigger_topic in access[name]["publishes"], name


def test_warehouse_queries_need_a_job_and_read_access() -> None:
    condition = "${{for name, access in local.function_access : name => access if access.queries}}"
    reader = resource("google_bigquery_dataset_iam_member", "warehouse_reader")
    jobs = resource("google_project_iam_member", "warehouse_job_user")
    assert reader["for_each"] == jobs["for_each"] == condition
    assert reader["role"] == "roles/bigquery.dataViewer"
    assert reader["dataset_id"] == "${google_bigquery_dataset.warehouse.dataset_id}"
    assert jobs["role"] == "roles/bigquery.jobUser"
    writer = resource("google_bigquery_dataset_iam_member", "warehouse_writer")
    assert writer["role"] == "roles/bigquery.dataEditor"


def test_every_secret_has_a_reader() -> None:
    """Each secret Terraform can create is read by some function (else it is dead weight, or a
    function is missing its grant)."""
    found = tf()["locals"]
    creatable = set(found["common_secrets"]) | set(found["api_secrets"]) | {"dkim_private_key"}
    for names in found["esp_secrets"].values():
        creatable |= set(names)
    assert "dkim_private_key" in found["dkim_secrets"], "the DKIM key is a secret"
    read = set(found["common_secrets"])
    for grants in found["function_access"].values():
        read |= set(grants["secrets"])
    assert creatable <= read, f"secrets no function reads: {sorted(creatable - read)}"
    assert creatable <= SETTING_FIELDS
    assert "admin_api_key" in found["function_access"]["admin"]["secrets"]
    assert "events_api_key" in found["function_access"]["events"]["secrets"]
    assert "dkim_private_key" in found["function_access"]["send"]["secrets"]


def test_only_operators_may_call_the_private_http_functions() -> None:
    private = {f.name for f in topology.FUNCTIONS if f.is_http and not f.public}
    assert private == {"admin"}
    local = tf()["locals"]["operator_functions"]
    assert local == (
        "${toset([for name, f in var.topology.functions : "
        "name if f.trigger_topic == null && !f.public])}"
    )
    grant = resource("google_cloud_run_v2_service_iam_member", "operator_invoker")
    assert grant["for_each"] == "${local.operator_grants}"
    assert grant["role"] == "roles/run.invoker"
    assert grant["member"] == "${each.value.member}"
    variable = tf()["variable"]["admin_invokers"]
    assert variable["default"] == []
    (validation,) = variable["validation"]
    pattern = re.search(r'regex\("([^"]+)"', validation["condition"])
    assert pattern is not None
    for member in ("group:ops@example.com", "user:ana@example.com", "serviceAccount:x@y"):
        assert re.search(pattern[1], member), member
    for member in ("allUsers", "allAuthenticatedUsers"):
        assert not re.search(pattern[1], member), f"{member} must be refused"


def test_no_identity_gets_a_basic_role() -> None:
    for kind in ("resource", "data"):
        for rtype, named in tf()[kind].items():
            for name, body in named.items():
                for text in strings(body):
                    assert not any(role in text for role in FORBIDDEN_ROLES), (
                        f"{rtype}.{name} grants a basic role: {text}"
                    )
    for text in strings(tf()["locals"]):
        assert not any(role in text for role in FORBIDDEN_ROLES), text


def test_every_environment_variable_is_a_setting() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(TF_DIR.glob("*.tf")))
    names = set(re.findall(r"\bMAILPIPE_([A-Z0-9_]+)\b", text)) - {"URL_"}
    assert names, "no MAILPIPE_* variable found"
    unknown = {n for n in names if n.lower() not in SETTING_FIELDS}
    assert not unknown, f"not fields of shared/settings.py: {sorted(unknown)}"
    secrets = tf()["locals"]
    secret_names = set(secrets["common_secrets"]) | set(secrets["api_secrets"])
    for names_for_esp in secrets["esp_secrets"].values():
        secret_names |= set(names_for_esp)
    assert secret_names <= SETTING_FIELDS
    assert {"backend", "gcp_project", "template_bucket"} <= {n.lower() for n in names}


def test_route_urls_point_each_link_route_at_its_function() -> None:
    """MAILPIPE_URL_<ROUTE> (read by shared/bootstrap.py) is set per HTTP function, so every
    route the links use must be named after an HTTP function."""
    http_functions = {f.name for f in topology.FUNCTIONS if f.is_http}
    assert set(links.local_base_urls("http://localhost")) == http_functions
    assert 'f"MAILPIPE_URL_{route.upper()}"' in (REPO_ROOT / "shared" / "bootstrap.py").read_text()
    route_urls = tf()["locals"]["route_urls"]
    assert "for name, f in var.topology.functions" in route_urls
    assert "MAILPIPE_URL_${upper(name)}" in route_urls
    assert "f.trigger_topic == null" in route_urls
    assert "local.route_urls)" in tf()["locals"]["environment"]


@pytest.mark.parametrize(
    ("job_name", "function", "schedule_variable", "default"),
    [
        ("campaign_sweep", "dispatch", "sweep_schedule", "*/5 * * * *"),
        ("trigger_sweep", "triggers", "trigger_sweep_schedule", "* * * * *"),
    ],
)
def test_scheduler_sweeps_the_functions_topic(
    job_name: str, function: str, schedule_variable: str, default: str
) -> None:
    assert topology.function(function).trigger_topic in topology.TOPICS
    job = resource("google_cloud_scheduler_job", job_name)
    target = block(job, "pubsub_target")
    assert target["topic_name"] == (
        f'${{google_pubsub_topic.topic[var.topology.functions["{function}"].trigger_topic].id}}'
    )
    assert target["data"] == '${base64encode(jsonencode({kind = "sweep"}))}'
    assert job["schedule"] == f"${{var.{schedule_variable}}}"
    assert job["time_zone"] == "Etc/UTC"
    assert tf()["variable"][schedule_variable]["default"] == default


def test_events_table_matches_the_event_schema() -> None:
    schema = json.loads((TF_DIR / "schemas" / "events.json").read_text(encoding="utf-8"))
    assert tuple(c["name"] for c in schema) == events.COLUMNS
    required = {c["name"] for c in schema if c["mode"] == "REQUIRED"}
    assert required == {"event_id", "event_type", "occurred_at"}
    table = resource("google_bigquery_table", "events_raw")
    assert block(table, "time_partitioning") == {"type": "DAY", "field": "occurred_at"}
    assert table["clustering"] == ["event_type", "campaign_id"]
    assert "event_id" in block(resource("google_bigquery_table", "events"), "view")["query"]


def test_time_travel_window_is_the_variable() -> None:
    dataset = resource("google_bigquery_dataset", "warehouse")
    assert dataset["max_time_travel_hours"] == "${tostring(var.max_time_travel_hours)}"
    variable = tf()["variable"]["max_time_travel_hours"]
    assert variable["default"] == 168
    condition = variable["validation"][0]["condition"]
    assert ">= 48" in condition and "<= 168" in condition and "% 24 == 0" in condition


# --- Firestore indexes against the code's queries ------------------------------------------------

RANGE_OPERATORS = {"<", "<=", ">", ">=", "!="}
Index = tuple[str, tuple[str, ...]]  # (collection, fields in index order)


def _filter_lists() -> Iterator[tuple[str, list[tuple[str, str]], Path, int]]:
    """Every list or tuple literal of Filter(field, op, ...) calls in shared/ (one query's
    filters), with the COLLECTION constant of its module."""
    for path in sorted((REPO_ROOT / "shared").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        collection = next(
            (
                node.value.value
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "COLLECTION" for t in node.targets)
                and isinstance(node.value, ast.Constant)
            ),
            None,
        )
        for node in ast.walk(tree):
            if not isinstance(node, ast.List | ast.Tuple) or not node.elts:
                continue
            calls = [e for e in node.elts if _is_filter(e)]
            if len(calls) != len(node.elts):
                continue
            pairs = [(c.args[0].value, c.args[1].value) for c in calls]  # type: ignore[attr-defined]
            yield collection or "", pairs, path, node.lineno


def _is_filter(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Filter"
        and len(node.args) >= 2
        and all(isinstance(a, ast.Constant) for a in node.args[:2])
    )


def _needed_index(pairs: list[tuple[str, str]]) -> tuple[str, ...] | None:
    """The composite index a query needs, or None when single-field indexes serve it: an
    equality filter together with a range filter on another field (or two range fields).
    Equality fields come first (any order), then the range fields in the order the adapter
    sorts them by."""
    ranges = sorted({field for field, op in pairs if op in RANGE_OPERATORS})
    equalities = sorted({field for field, op in pairs if op not in RANGE_OPERATORS} - set(ranges))
    if not ranges or (len(ranges) == 1 and not equalities):
        return None
    return (*equalities, *ranges)


def _declared_indexes() -> set[Index]:
    declared = tf()["locals"]["firestore_indexes"]
    return {(i["collection"], tuple(i["fields"])) for i in declared.values()}


def _same_index(a: tuple[str, ...], b: tuple[str, ...], range_count: int) -> bool:
    """Equal when the equality prefix holds the same fields and the range suffix matches."""
    cut = len(a) - range_count
    return len(a) == len(b) and set(a[:cut]) == set(b[:cut]) and a[cut:] == b[cut:]


def test_filter_scan_finds_the_trigger_queries() -> None:
    found = {(c, tuple(p)) for c, p, _, _ in _filter_lists()}
    assert ("trigger_runs", (("state", "=="), ("due_at", "<="))) in found
    assert ("send_ledger", (("campaign_id", "=="), ("state", "=="))) in found


def test_every_query_that_needs_a_composite_index_has_one() -> None:
    declared = _declared_indexes()
    for collection, pairs, path, line in _filter_lists():
        needed = _needed_index(pairs)
        if needed is None:
            continue
        where = f"{path.relative_to(REPO_ROOT)}:{line}"
        assert collection, f"{where}: a multi-filter query in a module without COLLECTION"
        ranges = len({f for f, op in pairs if op in RANGE_OPERATORS})
        assert any(
            c == collection and _same_index(fields, needed, ranges) for c, fields in declared
        ), f"{where}: {collection} needs the composite index {needed} (terraform/firestore.tf)"


def test_every_declared_index_serves_a_query() -> None:
    queries = [(c, pairs) for c, pairs, _, _ in _filter_lists() if len(pairs) > 1]
    for collection, indexed in _declared_indexes():
        served = [
            pairs
            for c, pairs in queries
            if c == collection and {f for f, _ in pairs} == set(indexed)
        ]
        assert served, f"index {collection} {indexed} serves no query in shared/"
    index = resource("google_firestore_index", "query")
    assert index["for_each"] == "${local.firestore_indexes}"
    assert index["database"] == "${google_firestore_database.main.name}"
    (fields,) = index["dynamic"]
    assert fields["fields"]["for_each"] == '${concat(each.value.fields, ["__name__"])}'
    assert fields["fields"]["content"][0]["order"] == "ASCENDING"


def test_index_rule_on_made_up_queries() -> None:
    assert _needed_index([("status", "==")]) is None
    assert _needed_index([("a", "=="), ("b", "==")]) is None
    assert _needed_index([("created_at", ">=")]) is None
    assert _needed_index([("state", "=="), ("due_at", "<=")]) == ("state", "due_at")
    assert _needed_index([("a", ">"), ("b", "<")]) == ("a", "b")
    assert _same_index(("b", "a", "r"), ("a", "b", "r"), 1)
    assert not _same_index(("a", "r"), ("r", "a"), 1)


# --- dashboard views ---------------------------------------------------------------------------

DASHBOARDS = sorted((REPO_ROOT / "sql" / "dashboards").glob("*.sql"))
RECENT_VIEW_FILE = REPO_ROOT / "sql" / "views" / "events_recent.sql"
QUALIFIED = {
    "events_raw": "`project.dataset.events_raw`",
    "events_recent": "`project.dataset.events_recent`",
}
# The view each reading relation's table local must name in bigquery.tf.
_TABLE_LOCALS = {"events_raw": "events_table", "events_recent": "recent_view"}


def _tables(sql: str) -> set[str]:
    """Relations a query reads that it does not define itself (CTEs left out)."""
    tree = sqlglot.parse_one(sql, read="bigquery")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    names = {".".join(p for p in (t.catalog, t.db, t.name) if p) for t in tree.find_all(exp.Table)}
    return names - ctes


@functools.cache
def _view_rewrite(view: str, reads: str) -> tuple[str, str]:
    """The regex bigquery.tf's replace() in the `view` resource qualifies `reads` with (HCL
    escapes undone), having checked that the replacement names the table of `reads`."""
    query = block(resource("google_bigquery_table", view), "view")["query"]
    local = _TABLE_LOCALS[reads]
    found = re.search(rf'"/(.+?)/", "(\$1 \$\{{local\.{local}\}})"', query)
    assert found, f"unexpected view query expression: {query}"
    table = rf'{local}\s*=\s*"`\$\{{local\.dataset_ref\}}\.\$\{{google_bigquery_table\.{reads}'
    assert re.search(table, (TF_DIR / "bigquery.tf").read_text()), f"{local} is not {reads}"
    return found[1].replace("\\\\", "\\"), found[2]


def _as_view(sql: str, view: str, reads: str) -> str:
    """What bigquery.tf does to a view's file (RE2 and Python agree on this pattern)."""
    return re.sub(_view_rewrite(view, reads)[0], rf"\1 {QUALIFIED[reads]}", sql)


def test_view_rewrite_pattern() -> None:
    assert _view_rewrite("dashboard", "events_recent")[0] == r"\b(FROM|JOIN)\s+events_recent\b"
    assert _view_rewrite("events_recent", "events_raw")[0] == r"\b(FROM|JOIN)\s+events_raw\b"
    sql = "SELECT 1 FROM events_recent e JOIN events_recent AS f ON TRUE FROM events"
    recent = QUALIFIED["events_recent"]
    assert _as_view(sql, "dashboard", "events_recent") == (
        f"SELECT 1 FROM {recent} e JOIN {recent} AS f ON TRUE FROM events"
    )


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_reads_only_events_recent_and_the_view_qualifies_every_read(path: Path) -> None:
    sql = path.read_text(encoding="utf-8")
    assert _tables(sql) == {"events_recent"}, f"{path.name} must read only events_recent"
    assert _tables(_as_view(sql, "dashboard", "events_recent")) == {
        QUALIFIED["events_recent"].strip("`")
    }, (
        f"{path.name}: an `events_recent` read that is not `FROM events_recent` / "
        "`JOIN events_recent` would stay unqualified in the BigQuery view"
    )


def test_the_recent_view_reads_only_events_raw_qualified() -> None:
    sql = RECENT_VIEW_FILE.read_text(encoding="utf-8")
    assert _tables(sql) == {"events_raw"}
    assert _tables(_as_view(sql, "events_recent", "events_raw")) == {
        QUALIFIED["events_raw"].strip("`")
    }
    query = block(resource("google_bigquery_table", "events_recent"), "view")["query"]
    assert "sql/views/events_recent.sql" in query, "the view is not made from its one definition"


# --- tools -------------------------------------------------------------------------------------


def _terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.fail("terraform is not on PATH: install Terraform >= 1.5 to run this test")
    return found


def test_terraform_fmt() -> None:
    result = subprocess.run(
        [_terraform(), "fmt", "-check", "-recursive", "-diff", str(TF_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}"


CHECKOV_VERSION = "3.3.30"
CHECKOV_VENV = REPO_ROOT / ".venv-checkov"


def _checkov() -> Path:
    """checkov in its own virtualenv (its pins clash with ours), created once and reused."""
    executable = CHECKOV_VENV / "bin" / "checkov"
    stamp = CHECKOV_VENV / f".installed-{CHECKOV_VERSION}"
    lock_path = Path(tempfile.gettempdir()) / "mailpipe-venv-checkov.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers must not install it twice
        if not stamp.exists():
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", "--clear", str(CHECKOV_VENV)], check=True)
            subprocess.run(
                [
                    str(CHECKOV_VENV / "bin" / "python"),
                    *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                    f"checkov=={CHECKOV_VERSION}",
                ],
                check=True,
                capture_output=True,
            )
            stamp.touch()
    return executable


@pytest.mark.slow
@pytest.mark.xdist_group("checkov")
@pytest.mark.timeout(900)
def test_checkov_finds_no_failed_check() -> None:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    result = subprocess.run(
        [
            str(_checkov()),
            *("-d", str(TF_DIR), "--framework", "terraform"),
            *("--quiet", "--compact", "--skip-download", "-o", "json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=REPO_ROOT,
    )
    assert result.stdout.strip(), f"checkov printed nothing:\n{result.stderr[-2000:]}"
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for report in reports
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    parse_errors = [r["summary"].get("parsing_errors", 0) for r in reports if "summary" in r]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert not any(parse_errors), f"checkov could not parse terraform/: {parse_errors}"


# --- evaluating the few HCL expressions the tests below need ------------------------------------


def _python(expression: str) -> str:
    """An HCL condition/ternary chain as Python: `a ? "x" : b ? "y" : "z"`, `&&`, `||`, `!`,
    `null`, `==`/`!=` (what local.ingress, local.public_url ... use; nothing more)."""
    text = expression.strip()
    while text.startswith("(") and text.endswith(")") and _balanced(text[1:-1]):
        text = text[1:-1].strip()
    question = next((i for i, c, depth in _outside_strings(text) if c == "?" and depth == 0), -1)
    if question < 0:
        text = text.replace("&&", " and ").replace("||", " or ").replace("null", "None")
        return re.sub(r"!(?!=)", " not ", text)
    condition, rest = text[:question], text[question + 1 :]
    pending = 0  # nested "?" in the yes-branch waiting for their ":"
    for i, char, depth in _outside_strings(rest):
        if depth == 0 and char == "?":
            pending += 1
        elif depth == 0 and char == ":":
            if pending == 0:
                yes, no = rest[:i], rest[i + 1 :]
                return f"(({_python(yes)}) if ({_python(condition)}) else ({_python(no)}))"
            pending -= 1
    raise AssertionError(f"no ':' for '?' in {expression}")


def _outside_strings(text: str) -> Iterator[tuple[int, str, int]]:
    """(index, char, paren depth) of every character outside "..." literals."""
    depth, quoted = 0, False
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
            continue
        if quoted:
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        yield i, char, depth


def _balanced(text: str) -> bool:
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _hcl_eval(expression: str, **names: Any) -> Any:
    body = expression.removeprefix("${").removesuffix("}")
    helpers = {"coalesce": lambda *v: next(x for x in v if x is not None),
               "trimsuffix": lambda t, s: t.removesuffix(s), "toset": set}  # fmt: skip
    code = re.sub(r'"([^"]*)\$\{(\w+)\.(\w+)\}"', r'("\1" + \2.\3)', body)
    return eval(_python(code), {"__builtins__": {}}, {**helpers, **names})


def _var(**values: Any) -> SimpleNamespace:
    defaults = {"domain": "", "public_base_url": "", "trusted_proxy_hops": None}
    return SimpleNamespace(**{**defaults, **values})


def _local(name: str) -> str:
    return str(tf()["locals"][name])


def _topology_function(fn: topology.Function) -> SimpleNamespace:
    return SimpleNamespace(**tfvars()["functions"][fn.name])


# --- your own domain: load balancer, ingress, links, client addresses --------------------------

DOMAIN = "mail.example.com"


@pytest.mark.parametrize("domain", ["", DOMAIN])
def test_ingress_per_function(domain: str) -> None:
    body = re.fullmatch(
        r"\$\{\{for name, f in var\.topology\.functions : name => (.+)\}\}", _local("ingress")
    )
    assert body, _local("ingress")
    for fn in topology.FUNCTIONS:
        ingress = _hcl_eval(body[1], f=_topology_function(fn), var=_var(domain=domain))
        if not fn.is_http:
            assert ingress == "ALLOW_INTERNAL_ONLY", fn.name
        elif fn.public and domain:
            assert ingress == "ALLOW_INTERNAL_AND_GCLB", fn.name  # nothing bypasses the balancer
        else:
            assert ingress == "ALLOW_ALL", fn.name


@pytest.mark.parametrize(
    ("variables", "public_url", "hops", "route_urls"),
    [
        ({}, "${local.functions_base_url}", 1, True),
        ({"domain": DOMAIN}, f"https://{DOMAIN}", 2, False),
        ({"public_base_url": "https://lb.example.org/"}, "https://lb.example.org", 2, False),
        ({"domain": DOMAIN, "trusted_proxy_hops": 3}, f"https://{DOMAIN}", 3, False),
    ],
)
def test_public_url_and_trusted_hops_follow_the_domain(
    variables: dict, public_url: str, hops: int, route_urls: bool
) -> None:
    var = _var(**variables)
    behind = _hcl_eval(_local("behind_balancer"), var=var)
    base = "${local.functions_base_url}"
    local = SimpleNamespace(behind_balancer=behind, functions_base_url=base)
    assert _hcl_eval(_local("public_url"), var=var, local=local) == public_url
    assert _hcl_eval(_local("trusted_proxy_hops"), var=var, local=local) == hops
    assert ("!local.behind_balancer" in _local("route_urls")) and (not behind) == route_urls
    environment = _local("environment")
    assert "MAILPIPE_PUBLIC_URL = local.public_url," in environment
    assert "MAILPIPE_TRUSTED_PROXY_HOPS = tostring(local.trusted_proxy_hops)," in environment


def test_the_default_hops_match_the_settings_default() -> None:
    """Without a balancer Terraform sets 1, which is also the code's default (direct URLs)."""
    assert settings.Settings().trusted_proxy_hops == 1


def test_the_load_balancer_routes_every_public_route_and_nothing_else() -> None:
    public = {f.name for f in topology.FUNCTIONS if f.public}
    routes = {f.route: f.name for f in topology.FUNCTIONS if f.public}
    assert set(routes) == {"/signup", "/confirm", "/preferences", "/unsubscribe", "/t",
                           "/webhooks", "/events"}  # fmt: skip
    assert _local("lb_backends") == "${local.lb_enabled ? local.public_functions : toset([])}"
    assert _local("lb_routes") == (
        "${{for name in local.lb_backends : var.topology.functions[name].route => name}}"
    )
    assert all(tfvars()["functions"][name]["route"] == topology.function(name).route
               for name in public)  # fmt: skip
    assert "admin" not in public
    for rtype in ("google_compute_region_network_endpoint_group", "google_compute_backend_service"):
        assert resource(rtype, "function")["for_each"] == "${local.lb_backends}", rtype
    neg = resource("google_compute_region_network_endpoint_group", "function")
    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert block(neg, "cloud_run")["service"] == (
        "${google_cloudfunctions2_function.function[each.key].service_config[0].service}"
    )
    backend = resource("google_compute_backend_service", "function")
    assert backend["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert block(backend, "backend")["group"] == (
        "${google_compute_region_network_endpoint_group.function[each.key].id}"
    )
    matcher = block(resource("google_compute_url_map", "lb"), "path_matcher")
    (rule,) = matcher["dynamic"]
    assert rule["path_rule"]["for_each"] == "${local.lb_routes}"
    (content,) = rule["path_rule"]["content"]
    # No path rewrite: each function answers its full path (shared/entrypoints/routes.py).
    assert content["paths"] == ["${path_rule.key}", "${path_rule.key}/*"]
    assert "route_action" not in content and "url_rewrite" not in str(matcher)
    proxy = resource("google_compute_target_https_proxy", "lb")
    assert proxy["ssl_certificates"] == ["${google_compute_managed_ssl_certificate.lb[0].id}"]
    policy = resource("google_compute_ssl_policy", "lb")
    assert policy["min_tls_version"] == "TLS_1_2"
    https = resource("google_compute_global_forwarding_rule", "https")
    assert https["port_range"] == "443" and https["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert block(resource("google_compute_managed_ssl_certificate", "lb"), "managed")[
        "domains"
    ] == ["${var.domain}"]


def test_cloud_armor_limits_signup_posts_per_client() -> None:
    armor = resource("google_compute_security_policy", "signup")
    throttle = next(r for r in armor["rule"] if r["action"] == "throttle")
    options = block(throttle, "rate_limit_options")
    assert options["enforce_on_key"] == "IP" and options["exceed_action"] == "deny(429)"
    threshold = block(options, "rate_limit_threshold")
    assert threshold["count"] == "${var.edge_signup_limit_per_minute}"
    assert "POST" in block(block(throttle, "match"), "expr")["expression"]
    assert any(r["priority"] == 2147483647 for r in armor["rule"]), "a default rule is required"
    backend = resource("google_compute_backend_service", "function")
    assert 'each.key == "signup"' in backend["security_policy"]


# --- public access: allUsers or Cloud Run's invoker check off ---------------------------------


def test_public_access_modes() -> None:
    public = resource("google_cloud_run_v2_service_iam_member", "public_invoker")
    assert public["for_each"] == (
        '${var.public_access == "allUsers" ? local.public_functions : toset([])}'
    )
    assert _local("invoker_check_disabled") == (
        '${var.public_access == "invoker_check_disabled" ? local.public_functions : toset([])}'
    )
    disabled = resource("terraform_data", "invoker_check_disabled")
    assert disabled["for_each"] == "${local.invoker_check_disabled}"
    (provisioner,) = disabled["provisioner"]
    command = provisioner["local-exec"]["command"]
    assert "--no-invoker-iam-check" in command
    assert "service_config[0].service" in command  # the function's own Cloud Run service
    (check,) = block(disabled, "lifecycle")["precondition"]
    assert check["condition"] == '${var.domain != ""}'
    variable = tf()["variable"]["public_access"]
    assert variable["default"] == "allUsers"


# --- a first apply that works --------------------------------------------------------------------


def test_apis_are_enabled_before_the_project_is_read() -> None:
    apis = _local("apis")
    for api in ("cloudresourcemanager", "compute", "monitoring", "logging", "billingbudgets"):
        assert f"{api}.googleapis.com" in apis, api
    project = tf()["data"]["google_project"]["this"]
    assert project["depends_on"] == [
        '${google_project_service.api["cloudresourcemanager.googleapis.com"]}'
    ]


def test_provider_versions_are_pinned_to_one_major_version() -> None:
    text = (TF_DIR / "versions.tf").read_text(encoding="utf-8")
    parsed = hcl2.loads(text)
    (providers,) = parsed["terraform"][0]["required_providers"]
    providers = {k: v for k, v in providers.items() if not k.startswith("__")}
    assert set(providers) == {"google", "time"}
    for name, spec in providers.items():
        version = spec["version"].strip('"')
        assert re.fullmatch(r"~> \d+\.\d+", version), f"{name}: {version} spans majors"


def test_terraform_tfvars_is_ignored_by_git() -> None:
    result = subprocess.run(
        ["git", "check-ignore", "-q", "terraform/terraform.tfvars"],
        cwd=REPO_ROOT, check=False, capture_output=True,
    )  # fmt: skip
    assert result.returncode == 0, "terraform/terraform.tfvars must be in .gitignore"
    tracked = subprocess.run(
        ["git", "check-ignore", "-q", "terraform/topology.auto.tfvars.json"],
        cwd=REPO_ROOT, check=False, capture_output=True,
    )  # fmt: skip
    assert tracked.returncode == 1, "the generated topology file must stay committed"


def test_every_secret_gets_the_placeholder_the_code_reads_as_unset() -> None:
    assert _local("unset_secret") == settings.UNSET_SECRET
    version = resource("google_secret_manager_secret_version", "placeholder")
    assert version["for_each"] == "${toset(local.secret_settings)}"
    assert version["secret_data"] == "${local.unset_secret}"
    assert version["secret"] == "${google_secret_manager_secret.setting[each.key].id}"
    function = resource("google_cloudfunctions2_function", "function")
    for needed in ("google_secret_manager_secret_version.placeholder", "time_sleep.iam_propagation",
                   "google_project_iam_member.builder"):  # fmt: skip
        assert f"${{{needed}}}" in function["depends_on"], needed
    push = resource("google_pubsub_subscription", "push")
    assert "${time_sleep.iam_propagation}" in push["depends_on"]


def test_secret_names_match_the_settings_module() -> None:
    secret = resource("google_secret_manager_secret", "setting")
    assert secret["secret_id"] == 'mailpipe-${replace(each.key, "_", "-")}'
    for name in ("signing_key", "events_api_key", "ses_secret_access_key"):
        assert settings.secret_name(name) == "mailpipe-" + name.replace("_", "-")


# --- least privilege ----------------------------------------------------------------------------


def test_firestore_grants_are_limited_to_mailpipes_database() -> None:
    grant = resource("google_project_iam_member", "firestore_user")
    condition = block(grant, "condition")
    assert condition["expression"] == (
        'resource.name == "projects/${var.project_id}/databases/'
        '${google_firestore_database.main.name}"'
    )


def test_builds_get_custom_roles_not_run_builder() -> None:
    texts = list(strings(tf()["resource"]))
    assert not any("roles/run.builder" in t for t in texts), "roles/run.builder is project-wide"
    logs = resource("google_project_iam_custom_role", "build_logs_and_sources")
    assert set(logs["permissions"]) == {"logging.logEntries.create", "storage.objects.get"}
    images = resource("google_project_iam_custom_role", "build_artifacts")
    assert all(p.startswith("artifactregistry.repositories.") for p in images["permissions"])
    on_repo = resource("google_artifact_registry_repository_iam_member", "builder")
    assert on_repo["role"] == "${google_project_iam_custom_role.build_artifacts.id}"
    build = block(resource("google_cloudfunctions2_function", "function"), "build_config")
    assert build["docker_repository"] == "${google_artifact_registry_repository.functions.id}"


# --- alerts and the dashboard --------------------------------------------------------------------


@pytest.mark.parametrize("sub", topology.SUBSCRIPTIONS, ids=lambda s: s.name)
def test_every_subscription_has_its_alerts(sub: topology.Subscription) -> None:
    values = tfvars()["subscriptions"][sub.name]
    dead = resource("google_monitoring_alert_policy", "dead_letters")
    backlog = resource("google_monitoring_alert_policy", "backlog")
    for policy in (dead, backlog):
        assert policy["for_each"] == "${var.topology.subscriptions}"
        assert policy["notification_channels"] == "${var.notification_channels}"
    dead_filter = instantiate(block(block(dead, "conditions"), "condition_threshold")["filter"],
                              sub.name, values)  # fmt: skip
    assert f'subscription_id = "{sub.dead_letter_subscription}"' in dead_filter
    assert "num_undelivered_messages" in dead_filter
    assert block(block(dead, "conditions"), "condition_threshold")["threshold_value"] == 0
    age = block(block(backlog, "conditions"), "condition_threshold")
    assert f'subscription_id = "{sub.name}"' in instantiate(age["filter"], sub.name, values)
    assert "oldest_unacked_message_age" in age["filter"]
    assert age["threshold_value"] == "${var.backlog_age_alert_s}"


def test_error_rate_alert_is_a_5xx_ratio_per_function() -> None:
    condition = block(block(resource("google_monitoring_alert_policy", "errors"), "conditions"),
                      "condition_threshold")  # fmt: skip
    assert condition["filter"].endswith('metric.labels.response_code_class = "5xx"')
    assert "5xx" not in condition["denominator_filter"]
    for text in (condition["filter"], condition["denominator_filter"]):
        assert "${local.mailpipe_services}" in text, "only Mailpipe's services"
    assert _local("mailpipe_services").startswith("resource.labels.service_name = one_of(")
    assert "google_cloudfunctions2_function.function" in _local("mailpipe_services")
    assert block(condition, "aggregations")["group_by_fields"] == ["resource.labels.service_name"]


def test_bounce_and_complaint_alerts_read_what_the_warehouse_logs() -> None:
    """The log-based metric extracts the fields shared/services/warehousing.py logs."""
    metric = resource("google_logging_metric", "warehoused_events")
    assert f'jsonPayload.logger = "{warehousing.log.name}"' in metric["filter"]
    assert metric["value_extractor"] == "EXTRACT(jsonPayload.event_count)"
    assert metric["label_extractors"] == {"event_type": "EXTRACT(jsonPayload.event_type)"}
    source = (REPO_ROOT / "shared" / "services" / "warehousing.py").read_text(encoding="utf-8")
    assert '"event_type": event_type, "event_count": count' in source
    rates = tf()["locals"]["rate_alerts"]
    assert rates["bounce"]["event_type"] == events.BOUNCE
    assert rates["complaint"]["event_type"] == events.COMPLAINT
    assert f'{{${{local.on_cloud_run}},event_type="{events.SEND}"}}[1d]' in _local("sends_per_day")


def test_promql_names_the_log_based_metric_and_its_resource_type() -> None:
    """Cloud Monitoring's PromQL mapping: logging.googleapis.com/user/NAME is
    logging_googleapis_com:user_NAME, a distribution is read through its `_sum`, and a log-based
    metric that can map to several monitored resource types needs `monitored_resource`."""
    metric = resource("google_logging_metric", "warehoused_events")
    assert block(metric, "metric_descriptor")["value_type"] == "DISTRIBUTION"
    name = _local("warehoused_events")
    assert name == "logging_googleapis_com:user_${google_logging_metric.warehoused_events.name}_sum"
    assert _local("on_cloud_run") == 'monitored_resource="cloud_run_revision"'
    alert = block(resource("google_monitoring_alert_policy", "feedback_rate"), "conditions")
    dashboard = resource("google_monitoring_dashboard", "mailpipe")["dashboard_json"]
    queries = [
        _local("sends_per_day"),
        str(block(alert, "condition_prometheus_query_language")["query"]),
        str(dashboard),
    ]
    for query in queries:
        selectors = query.split("${local.warehoused_events}")[1:]
        assert selectors, query
        assert all(s.startswith("{${local.on_cloud_run}") for s in selectors), query
    variables = tf()["variable"]
    assert variables["bounce_rate_alert"]["default"] == 0.02
    assert variables["complaint_rate_alert"]["default"] == 0.001


def test_budget_is_optional_and_uses_the_channels() -> None:
    budget = resource("google_billing_budget", "monthly")
    assert budget["count"] == '${var.billing_account != "" ? 1 : 0}'
    rule = block(budget, "all_updates_rule")
    assert rule["monitoring_notification_channels"] == "${var.notification_channels}"


def test_dashboard_shows_throughput_backlog_errors_and_latency() -> None:
    charts = " ".join(str(c) for c in tf()["locals"]["dashboard_charts"])
    for metric in (
        "run.googleapis.com/request_count",
        "num_undelivered_messages",
        "oldest_unacked_message_age",
        "5xx",
        "run.googleapis.com/request_latencies",
    ):
        assert metric in charts, metric  # fmt: skip


# --- terraform validate, where the providers are here -----------------------------------------


def _local_provider_mirror() -> Path | None:
    """A directory laid out as a provider mirror (registry.terraform.io/hashicorp/<name>/...)
    holding both providers: TF_PLUGIN_CACHE_DIR, ~/.terraform.d/plugins, or
    terraform/.terraform/providers from an earlier `terraform init`."""
    candidates = [os.environ.get("TF_PLUGIN_CACHE_DIR", ""),
                  str(Path.home() / ".terraform.d" / "plugins"),
                  str(TF_DIR / ".terraform" / "providers")]  # fmt: skip
    for candidate in filter(None, candidates):
        base = Path(candidate) / "registry.terraform.io" / "hashicorp"
        if all(any((base / name).glob("*/*/terraform-provider-*")) for name in ("google", "time")):
            return Path(candidate)
    return None


def test_terraform_validate_where_the_providers_are_available(tmp_path: Path) -> None:
    mirror = _local_provider_mirror()
    if mirror is None:
        pytest.skip(
            "terraform validate NOT RUN: the google and time providers are not available "
            "locally (no TF_PLUGIN_CACHE_DIR, ~/.terraform.d/plugins or terraform/.terraform "
            "holding them) and cannot be downloaded here; the hcl2 tests and checkov above are "
            "the offline coverage. Run `terraform init && terraform validate` where they can be."
        )
    work = tmp_path / "terraform"
    shutil.copytree(TF_DIR, work, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    terraform = _terraform()
    env = {**os.environ, "TF_IN_AUTOMATION": "1"}
    init = subprocess.run([terraform, "init", "-backend=false", "-input=false",
                           f"-plugin-dir={mirror}"], cwd=work, capture_output=True, text=True,
                          check=False, env=env)  # fmt: skip
    assert init.returncode == 0, init.stderr[-3000:]
    result = subprocess.run([terraform, "validate", "-no-color"], cwd=work, capture_output=True,
                            text=True, check=False, env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
