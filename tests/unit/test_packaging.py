"""`make package`: one reproducible zip per function holding exactly main.py, a pinned
requirements.txt and the deployable part of shared/, and each zip loads on its own."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared import packaging, topology
from shared.domain.errors import ConfigurationError

REPO_ROOT = topology.REPO_ROOT
NEVER_SHIPPED = (
    "shared/adapters/local/",
    "shared/runner/",
    "shared/cli/",
    "shared/bench/",
    "shared/packaging.py",
    "tests/",
    "functions/",
)


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _requirement_names(text: str) -> set[str]:
    return {
        canonicalize_name(Requirement(line).name)
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [
        f.source.relative_to(REPO_ROOT) for f in topology.FUNCTIONS if not f.source.is_file()
    ]
    if missing:
        pytest.fail(f"cannot package functions without source: {', '.join(map(str, missing))}")
    out = tmp_path_factory.mktemp("dist")
    packaging.build(out)
    return out


def _zip(dist: Path, function: topology.Function) -> zipfile.ZipFile:
    return zipfile.ZipFile(dist / f"{function.name}.zip")


# --- the real build -----------------------------------------------------------------------------


def test_building_twice_gives_identical_bytes(dist: Path, tmp_path: Path) -> None:
    packaging.build(tmp_path)
    first = {p.name: p.read_bytes() for p in sorted(dist.iterdir())}
    second = {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())}
    assert (
        first.keys()
        == second.keys()
        == {
            *(f"{f.name}.zip" for f in topology.FUNCTIONS),
            "manifest.json",
        }
    )
    for name in first:
        assert first[name] == second[name], f"{name} differs between two builds"


def test_manifest_names_every_zip_and_its_sha256(dist: Path) -> None:
    manifest = json.loads((dist / "manifest.json").read_text())
    assert set(manifest) == {f.name for f in topology.FUNCTIONS}
    for name, entry in manifest.items():
        data = (dist / entry["zip"]).read_bytes()
        assert entry == {"zip": f"{name}.zip", "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("function", topology.FUNCTIONS, ids=lambda f: f.name)
def test_zip_holds_exactly_main_requirements_and_deployable_shared(
    dist: Path, function: topology.Function
) -> None:
    shared_sources = {
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "shared").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    deployable = {
        name
        for name in shared_sources
        if not any(name.startswith(rule) for rule in NEVER_SHIPPED)
        and name != "shared/topology_export.py"
    }
    with _zip(dist, function) as archive:
        infos = archive.infolist()
        names = [i.filename for i in infos]
        assert names == sorted(names), "entries must be sorted"
        # The admin function also serves the console: its page templates and dashboard SQL.
        pages = {
            p.relative_to(REPO_ROOT).as_posix()
            for folder in packaging.EXTRA_FILES.get(function.name, ())
            for p in (REPO_ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert set(names) == {"main.py", "requirements.txt", *deployable, *pages}
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert not [n for n in names if n.startswith(NEVER_SHIPPED)]
        assert archive.read("main.py") == function.source.read_bytes()
        for info in infos:
            assert info.date_time == (1980, 1, 1, 0, 0, 0), info.filename
            assert info.external_attr >> 16 == 0o100644, info.filename


def test_requirements_are_the_runtime_dependencies_pinned(dist: Path) -> None:
    with (REPO_ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    pins = _pins()
    texts = {}
    for function in topology.FUNCTIONS:
        with _zip(dist, function) as archive:
            texts[function.name] = archive.read("requirements.txt").decode()
    plain = {t for n, t in texts.items() if n not in packaging.EXTRA_REQUIREMENTS}
    assert len(plain) == 1, "every function without extras ships the same requirements"
    direct = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    for name, text in texts.items():
        lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        for line in lines:
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[^=\s]+", line), f"not pinned with ==: {line}"
            package, _, version = line.partition("==")
            assert pins[canonicalize_name(package)] == version, f"{line} differs from constraints"
        shipped = _requirement_names(text)
        assert direct <= shipped, f"{name}: runtime dependencies missing: {direct - shipped}"
        own = packaging.EXTRA_REQUIREMENTS.get(name, ())
        wanted = {canonicalize_name(Requirement(r).name)
                  for group in own for r in project["optional-dependencies"][group]}  # fmt: skip
        assert wanted <= shipped, f"{name}: its extras are missing: {wanted - shipped}"
        others = (
            {
                canonicalize_name(Requirement(r).name)
                for group, requirements in project["optional-dependencies"].items()
                for r in requirements
            }
            - wanted
            - {"mailpipe", "click"}
        )  # click is Flask's own dependency, so it ships anyway
        assert not (others & shipped), (
            f"{name}: local/dev-only packages shipped: {others & shipped}"
        )


def test_the_admin_function_ships_what_the_console_charts_need(dist: Path) -> None:
    with _zip(dist, topology.function("admin")) as archive:
        shipped = _requirement_names(archive.read("requirements.txt").decode())
    assert {"matplotlib", "sqlglot"} <= shipped


# Runs in a fresh interpreter whose PYTHONPATH is only the unzipped function; the venv's
# site-packages still provide the third-party libraries.
LOADER = r"""
import importlib.metadata, json, sys
before = set(sys.modules)
import functions_framework
root, target, source, signature = sys.argv[1:5]
functions_framework.create_app(target=target, source=source, signature_type=signature)
outside = sorted(
    name for name, module in sys.modules.items()
    if (name == "shared" or name.startswith("shared."))
    and not (getattr(module, "__file__", None) or "").startswith(root)
)
owners = importlib.metadata.packages_distributions()
top = {name.partition(".")[0] for name in set(sys.modules) - before}
print(json.dumps({
    "outside": outside,
    "shared": sorted(n for n in sys.modules if n == "shared" or n.startswith("shared.")),
    "distributions": sorted({d for name in top for d in owners.get(name, [])}),
}))
"""


@pytest.mark.parametrize("function", topology.FUNCTIONS, ids=lambda f: f.name)
def test_function_loads_from_its_zip_alone(
    dist: Path, function: topology.Function, tmp_path: Path
) -> None:
    root = tmp_path / "unzipped"
    with _zip(dist, function) as archive:
        archive.extractall(root)
        requirements = _requirement_names(archive.read("requirements.txt").decode())
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(root),
        # Loading must build no client and read no secret: a gcp backend without settings and
        # credentials that do not exist make any such attempt fail loudly.
        "MAILPIPE_BACKEND": "gcp",
        "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "no-such-credentials.json"),
        "NO_GCE_CHECK": "True",
    }
    signature = "http" if function.is_http else "cloudevent"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOADER,
            str(root),
            function.entry_point,
            str(root / "main.py"),
            signature,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{function.name} does not load from its zip:\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["outside"] == [], "shared modules imported from outside the zip"
    assert "shared" in report["shared"]
    third_party = {canonicalize_name(d) for d in report["distributions"]} - {"mailpipe"}
    unshipped = third_party - requirements
    assert not unshipped, f"{function.name} imports packages its zip does not require: {unshipped}"


# --- the builder on a made-up tree ---------------------------------------------------------


def test_builder_leaves_out_local_only_code_and_caches(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "constraints.txt"):
        (tmp_path / name).write_bytes((REPO_ROOT / name).read_bytes())
    files = {
        "functions/hello/main.py": "def hello(request):\n    return 'hi'\n",
        "shared/__init__.py": "",
        "shared/domain/model.py": "X = 1\n",
        "shared/adapters/gcp/store.py": "",
        "shared/adapters/local/sqlite.py": "",
        "shared/runner/main.py": "",
        "shared/cli/main.py": "",
        "shared/bench/run.py": "",
        "shared/packaging.py": "",
        "shared/topology_export.py": "",
        "shared/domain/__pycache__/model.cpython-311.pyc": "",
        "shared/stray.pyc": "",
        "tests/unit/test_x.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    hello = topology.Function("hello", "hello")
    built = packaging.build(tmp_path / "dist", [hello], repo_root=tmp_path)
    (zipped,) = built
    with zipfile.ZipFile(zipped.path) as archive:
        assert archive.namelist() == [
            "main.py",
            "requirements.txt",
            "shared/__init__.py",
            "shared/adapters/gcp/store.py",
            "shared/domain/model.py",
        ]
    os.utime(tmp_path / "shared/domain/model.py", (0, 0))  # timestamps do not matter
    (again,) = packaging.build(tmp_path / "dist2", [hello], repo_root=tmp_path)
    assert again.sha256 == zipped.sha256
    (tmp_path / "shared/domain/model.py").write_text("X = 2\n")  # content does
    (changed,) = packaging.build(tmp_path / "dist3", [hello], repo_root=tmp_path)
    assert changed.sha256 != zipped.sha256


def test_builder_refuses_a_function_without_source(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "constraints.txt"):
        (tmp_path / name).write_bytes((REPO_ROOT / name).read_bytes())
    (tmp_path / "shared").mkdir()
    with pytest.raises(ConfigurationError, match=r"has no .*main\.py"):
        packaging.build(tmp_path / "dist", [topology.Function("ghost", "ghost")], tmp_path)
