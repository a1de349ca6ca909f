"""Builds one reproducible zip per Cloud Function: `python -m shared.packaging dist`.

Each `dist/<function>.zip` holds exactly what Cloud Functions (2nd gen, python311) needs:

    main.py             functions/<folder>/main.py
    requirements.txt    the runtime dependencies, pinned with `==` to constraints.txt
    shared/...          the shared package, minus local-only code (EXCLUDED_FROM_ZIPS)

The same sources give the same bytes: entries are sorted, every timestamp is 1980-01-01 and
every file is mode 0644, so Terraform only redeploys a function whose zip really changed (the
source object's name carries the zip's sha256). `dist/manifest.json` maps each function to its
zip and sha256. The command also refreshes terraform/topology.auto.tfvars.json.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared import topology, topology_export
from shared.domain.errors import ConfigurationError

# Paths under the repository root that never go into a function zip: they serve local mode,
# development or packaging only, and would pull in local-only dependencies (DuckDB, aiosmtpd,
# click, rich ...). Directories end with "/". __pycache__ and *.pyc are always left out too.
EXCLUDED_FROM_ZIPS: tuple[str, ...] = (
    "shared/adapters/local/",  # SQLite bus and store, filesystem blobs, DuckDB warehouse
    "shared/runner/",  # the local all-in-one runner
    "shared/cli/",  # the `mailpipe` command
    "shared/bench/",  # benchmarks
    "shared/packaging.py",  # this builder
    "shared/topology_export.py",  # writes terraform/topology.auto.tfvars.json
)

# Besides shared/, per function: the admin function serves the console (/dashboard), so it
# carries the console's and the dashboards' page templates and the dashboards' SQL.
EXTRA_FILES: Mapping[str, tuple[str, ...]] = {
    "admin": ("templates/dashboard/", "templates/console/", "sql/"),
}
# pyproject optional-dependency groups a function ships beside the runtime dependencies: the
# admin function serves the console, whose dashboard pages need sqlglot and matplotlib; dispatch
# (audience snapshots) and send (the send-time re-check) compile segments to SQL with sqlglot.
EXTRA_REQUIREMENTS: Mapping[str, tuple[str, ...]] = {
    "admin": ("console",),
    "dispatch": ("audience",),
    "send": ("audience",),
}

# The Cloud Functions runtime the requirements are resolved for (markers such as
# `python_version < "3.12"` are evaluated against it, not against the building machine).
TARGET_ENVIRONMENT: Mapping[str, str] = {
    "implementation_name": "cpython",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.11.0",
    "python_version": "3.11",
    "sys_platform": "linux",
}

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest timestamp a zip entry can hold
FILE_MODE = 0o100644  # regular file, rw-r--r--


@dataclass(frozen=True)
class BuiltZip:
    function: str
    path: Path
    size: int
    sha256: str


def _is_excluded(relative: str) -> bool:
    parts = PurePosixPath(relative).parts
    if "__pycache__" in parts or relative.endswith((".pyc", ".pyo")):
        return True
    return any(
        relative.startswith(rule) if rule.endswith("/") else relative == rule
        for rule in EXCLUDED_FROM_ZIPS
    )


def shared_files(repo_root: Path = topology.REPO_ROOT) -> list[str]:
    """Repository-relative POSIX paths of the shared/ files that go into every zip, sorted."""
    shared_dir = repo_root / "shared"
    found = (p.relative_to(repo_root).as_posix() for p in shared_dir.rglob("*") if p.is_file())
    return sorted(rel for rel in found if not _is_excluded(rel))


def extra_files(function: topology.Function, repo_root: Path = topology.REPO_ROOT) -> list[str]:
    """The files under EXTRA_FILES' directories for `function`, sorted."""
    found: list[str] = []
    for folder in EXTRA_FILES.get(function.name, ()):
        found += [p.relative_to(repo_root).as_posix() for p in (repo_root / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts]  # fmt: skip
    return sorted(found)


def _constraints(path: Path) -> dict[str, tuple[str, str]]:
    """canonical name -> (name as written, version) from a `name==version` constraints file."""
    pins: dict[str, tuple[str, str]] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ConfigurationError(f"{path.name}: {line!r} is not pinned with ==")
        pins[canonicalize_name(name.strip())] = (name.strip(), version.strip())
    return pins


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**TARGET_ENVIRONMENT, "extra": e}) for e in extras)


def _closure(roots: Iterable[str]) -> set[str]:
    """Canonical names of `roots` and everything they need on the target runtime, read from
    the installed distributions' metadata (the venv is installed with constraints.txt)."""
    wanted: dict[str, set[str]] = {}  # name -> extras already expanded
    todo = [req for req in map(Requirement, roots) if _applies(req, [""])]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        seen = wanted.get(name)
        new_extras = set(requirement.extras) - (seen or set())
        if seen is not None and not new_extras:
            continue
        wanted[name] = (seen or set()) | set(requirement.extras)
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError as exc:
            raise ConfigurationError(f"{name} is not installed; run `make install`") from exc
        extras = ([""] if seen is None else []) + sorted(new_extras)
        children = map(Requirement, requires)
        todo.extend(child for child in children if _applies(child, extras))
    return set(wanted)


def runtime_requirements(repo_root: Path = topology.REPO_ROOT, extras: Iterable[str] = ()) -> str:
    """requirements.txt: pyproject's [project].dependencies (plus the optional groups named in
    `extras`) and everything they pull in on the target runtime, each pinned `==` to
    constraints.txt. Other groups (local, dev) never appear."""
    with (repo_root / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    roots = list(project["dependencies"])
    for extra in extras:
        roots += project["optional-dependencies"][extra]
    pins = _constraints(repo_root / "constraints.txt")
    names = _closure(roots)
    missing = sorted(names - pins.keys())
    if missing:
        raise ConfigurationError(f"constraints.txt pins no version for: {', '.join(missing)}")
    lines = [f"{pins[n][0]}=={pins[n][1]}" for n in sorted(names)]
    header = "# Generated by `make package` from pyproject.toml and constraints.txt.\n"
    return header + "\n".join(lines) + "\n"


def _entry(name: str, data: bytes) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so external_attr means the same everywhere
    info.external_attr = FILE_MODE << 16
    return info, data


def zip_entries(
    function: topology.Function, requirements: str, repo_root: Path = topology.REPO_ROOT
) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
    """Every entry of `function`'s zip, in name order."""
    source = repo_root / "functions" / function.folder / "main.py"
    if not source.is_file():
        raise ConfigurationError(f"function {function.name!r} has no {source}")
    files = {
        "main.py": source.read_bytes(),
        "requirements.txt": requirements.encode(),
        **{rel: (repo_root / rel).read_bytes() for rel in shared_files(repo_root)},
        **{rel: (repo_root / rel).read_bytes() for rel in extra_files(function, repo_root)},
    }
    for name in sorted(files):
        yield _entry(name, files[name])


def zip_bytes(entries: Iterable[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


def build(
    out_dir: Path,
    functions: Iterable[topology.Function] = topology.FUNCTIONS,
    repo_root: Path = topology.REPO_ROOT,
) -> list[BuiltZip]:
    """Write `<out_dir>/<function>.zip` for each function and `<out_dir>/manifest.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    requirements: dict[tuple[str, ...], str] = {}
    built = []
    for function in functions:
        extras = EXTRA_REQUIREMENTS.get(function.name, ())
        if extras not in requirements:
            requirements[extras] = runtime_requirements(repo_root, extras)
        data = zip_bytes(zip_entries(function, requirements[extras], repo_root))
        path = out_dir / f"{function.name}.zip"
        path.write_bytes(data)
        built.append(BuiltZip(function.name, path, len(data), hashlib.sha256(data).hexdigest()))
    names = {b.path.name for b in built}
    for stale in out_dir.glob("*.zip"):
        if stale.name not in names:
            stale.unlink()
    manifest = {b.function: {"zip": b.path.name, "sha256": b.sha256} for b in built}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One reproducible zip per Cloud Function.")
    parser.add_argument("out_dir", nargs="?", default="dist", type=Path)
    args = parser.parse_args(argv)
    try:
        built = build(args.out_dir)
    except ConfigurationError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    for b in built:
        print(f"{b.path.name:<24} {b.size:>9,} bytes  sha256:{b.sha256}")
    print(f"{args.out_dir / 'manifest.json'}")
    if topology_export.write():
        print(f"{topology_export.TFVARS_PATH.relative_to(topology.REPO_ROOT)} updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
