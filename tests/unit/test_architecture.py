"""The layering rules, enforced: domain and services import no SDK, web framework or driver,
and nothing builds a client or reads the environment at import time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from shared.topology import REPO_ROOT

SHARED = REPO_ROOT / "shared"
FORBIDDEN_IN_CORE = (
    "google", "flask", "werkzeug", "functions_framework", "sqlite3", "duckdb", "boto3",
    "botocore", "requests", "aiosmtpd", "smtplib", "click", "rich",
    "shared.adapters", "shared.runner", "shared.entrypoints", "shared.cli", "shared.bootstrap",
)  # fmt: skip
CORE_PACKAGES = ("domain", "services", "repositories")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def core_files() -> list[Path]:
    return sorted(p for pkg in CORE_PACKAGES for p in (SHARED / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_core_imports_no_sdk_framework_or_driver(path: Path) -> None:
    bad = sorted(
        name
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_CORE)
    )
    assert not bad, f"{path.relative_to(REPO_ROOT)} imports {bad}"


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text("import sqlite3\nfrom google.cloud import firestore\nfrom . import x\n")
    assert imported_modules(sample) == {"sqlite3", "google.cloud"}


def test_only_settings_reads_the_environment() -> None:
    offenders = []
    for path in sorted(SHARED.rglob("*.py")):
        if path.name == "settings.py":
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text:
            offenders.append(str(path.relative_to(REPO_ROOT)))
    assert not offenders, f"read the environment outside shared/settings.py: {offenders}"


def _module_level_calls(path: Path) -> list[str]:
    """Calls executed at import time (module body, outside functions and classes)."""
    tree = ast.parse(path.read_text())
    calls = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                calls.append(ast.unparse(sub.func))
    return calls


CLIENT_FACTORIES = ("Client(", "connect(", "container(", "Controller(", "SqliteBus(")


@pytest.mark.parametrize(
    "path",
    sorted([*(REPO_ROOT / "functions").rglob("main.py"), *SHARED.rglob("*.py")]),
    ids=lambda p: str(p.relative_to(REPO_ROOT)),
)
def test_nothing_builds_clients_at_import_time(path: Path) -> None:
    calls = [c + "(" for c in _module_level_calls(path)]
    built = [c for c in calls if any(c.endswith(f) for f in CLIENT_FACTORIES)]
    assert not built, f"{path.relative_to(REPO_ROOT)} builds {built} at import time"


def test_function_entry_points_are_thin() -> None:
    for main in sorted((REPO_ROOT / "functions").rglob("main.py")):
        lines = [ln for ln in main.read_text().splitlines() if ln.strip()]
        assert len(lines) <= 60, f"{main} has {len(lines)} lines; move logic into a service"
