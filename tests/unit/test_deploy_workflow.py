"""docs/deploy-workflow.yml, the pipeline users copy: valid YAML that tests, packages, plans and
applies the reviewed plan, signed in by Workload Identity Federation (never a key file)."""

from __future__ import annotations

from typing import Any

import yaml

from shared.topology import REPO_ROOT

WORKFLOW = REPO_ROOT / "docs" / "deploy-workflow.yml"


def _workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _uses(job: dict[str, Any]) -> list[str]:
    return [step["uses"] for step in job["steps"] if "uses" in step]


def test_the_jobs_run_tests_package_plan_and_apply_in_order() -> None:
    jobs = _workflow()["jobs"]
    assert list(jobs) == ["test", "plan", "apply"]
    assert "make test" in _runs(jobs["test"]) and "make package" in _runs(jobs["test"])
    assert jobs["plan"]["needs"] == "test" and jobs["apply"]["needs"] == "plan"
    assert "terraform plan -input=false -out=plan.tfplan" in _runs(jobs["plan"])
    assert "terraform validate" in _runs(jobs["plan"])
    assert "terraform apply -input=false plan.tfplan" in _runs(jobs["apply"])
    assert jobs["apply"]["environment"] == "production", "a person approves every apply"
    assert "refs/heads/main" in jobs["plan"]["if"]


def test_it_signs_in_with_workload_identity_federation_and_no_key() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "credentials_json" not in text and "GOOGLE_APPLICATION_CREDENTIALS" not in text
    jobs = _workflow()["jobs"]
    for name in ("plan", "apply"):
        assert jobs[name]["permissions"]["id-token"] == "write", name
        (auth,) = [s for s in jobs[name]["steps"] if s.get("uses", "").startswith(
            "google-github-actions/auth@")]  # fmt: skip
        assert set(auth["with"]) == {"workload_identity_provider", "service_account"}
    assert "id-token" not in jobs["test"].get("permissions", {}), "tests need no cloud access"
    assert _workflow()["permissions"] == {"contents": "read"}


def test_every_action_is_pinned_to_a_version() -> None:
    for job in _workflow()["jobs"].values():
        for action in _uses(job):
            assert "@" in action and not action.endswith(("@main", "@master")), action
