"""Google's ZetaSQL reference implementation (the GoogleSQL engine that defines BigQuery's SQL
semantics), run locally so tests can execute BigQuery-dialect SQL without BigQuery.

The engine is ZetaSQL's `remote_server` (its LocalService over gRPC), shipped prebuilt for
linux-x86-64 inside the npm package @fivetrandevelopers/zetasql. On first use the pinned package
is fetched with `npm pack`, its checksum verified, and only the server binary and its .proto
files are kept under .cache/zetasql-engine at the repo root; Python stubs are generated from
those very .proto files with grpcio-tools, so client and server always agree. Nothing here
translates SQL: the server parses, analyzes and evaluates the query text it is given.

`zetasql_engine()` starts a server on a free loopback port and yields a `ZetaSqlEngine`;
`ZetaSqlEngine.query(sql, tables)` evaluates one query over in-memory tables.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import importlib
import json
import platform
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Any

import grpc

from shared.topology import REPO_ROOT

PACKAGE = "@fivetrandevelopers/zetasql"
VERSION = "1.13.0"
# The registry's sha512 for that exact tarball: a different file is refused, never run.
INTEGRITY = (
    "sha512-yX9Apa968np2Tc+Hrf4Bf6Gz77kQVLIDLaNwovM91VBwyDTDF1C6oglUqmlU6Fe5/"
    "TVCExsnIueWiPahrYEITQ=="
)
CACHE = REPO_ROOT / ".cache" / "zetasql-engine" / VERSION
_SERVER = "lib/zetasql/remote_server.so"  # the linux-x86-64 build
_PROTOS = "lib/zetasql/protos/"
START_TIMEOUT_S = 30.0
EPOCH = date(1970, 1, 1)

# BigQuery column types (terraform/schemas/*.json) -> ZetaSQL TypeKind numbers (type.proto).
TYPE_KINDS = {"INT64": 2, "INTEGER": 2, "BOOL": 5, "BOOLEAN": 5, "FLOAT64": 7, "FLOAT": 7,
              "STRING": 8, "DATE": 10, "TIMESTAMP": 19, "JSON": 26}  # fmt: skip
_KIND_NAMES = {2: "INT64", 5: "BOOL", 7: "FLOAT64", 8: "STRING", 10: "DATE", 19: "TIMESTAMP",
               26: "JSON"}  # fmt: skip
# BigQuery is ZetaSQL's external product mode; only the language features the dashboards use
# are switched on, so SQL that BigQuery would reject is not quietly accepted here either.
PRODUCT_EXTERNAL = 1
FEATURES = (
    "FEATURE_ANALYTIC_FUNCTIONS",
    "FEATURE_JSON_TYPE",
    "FEATURE_JSON_VALUE_EXTRACTION_FUNCTIONS",
    "FEATURE_V_1_1_SELECT_STAR_EXCEPT_REPLACE",
    "FEATURE_V_1_1_WITH_ON_SUBQUERY",
    "FEATURE_V_1_2_SAFE_FUNCTION_CALL",
)


@dataclass(frozen=True)
class Table:
    """A table's BigQuery schema (name -> BigQuery type, in column order) and its rows."""

    schema: Mapping[str, str]
    rows: Sequence[Mapping[str, Any]]


def install(cache: Path = CACHE) -> Path:
    """The cache directory with the server binary and generated stubs, made on first use
    (under a file lock, so parallel test workers install once). Raises when it cannot."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(f"the ZetaSQL engine runs on linux-x86-64, not {platform.machine()}")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / "ready").exists():
            _unpack(_download(cache), cache)
            _generate_stubs(cache)
            (cache / "ready").write_text(INTEGRITY)
    return cache


def _download(cache: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install the ZetaSQL engine")
    subprocess.run(
        [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(cache), "--silent"],
        check=True, capture_output=True, timeout=600, cwd=cache,
    )  # fmt: skip
    tarball = next(cache.glob("*.tgz"))
    digest = hashlib.sha512()
    with open(tarball, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if "sha512-" + base64.b64encode(digest.digest()).decode() != INTEGRITY:
        tarball.unlink()
        raise RuntimeError(f"{tarball.name} does not match the pinned checksum")
    return tarball


def _unpack(tarball: Path, cache: Path) -> None:
    """Keep only the linux server and the .proto files (the package holds four builds)."""
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            inner = member.name.removeprefix("package/")
            if member.isfile() and (inner == _SERVER or inner.startswith(_PROTOS)):
                member.name = inner
                archive.extract(member, cache, filter="data")
    (cache / _SERVER).chmod(0o755)
    tarball.unlink()


def _generate_stubs(cache: Path) -> None:
    import grpc_tools  # grpcio-tools, a dev dependency

    protos = cache / _PROTOS
    out = cache / "stubs"
    out.mkdir(exist_ok=True)
    sources = [str(p.relative_to(protos)) for p in protos.rglob("*.proto")]
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{protos}", f"-I{well_known}",
         f"--python_out={out}", f"--grpc_python_out={out}", *sources],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def _stubs(cache: Path) -> tuple[Any, Any]:
    if str(cache / "stubs") not in sys.path:
        sys.path.insert(0, str(cache / "stubs"))
    return importlib.import_module("local_service_pb2"), importlib.import_module(
        "local_service_pb2_grpc"
    )


@contextmanager
def zetasql_engine() -> Iterator[ZetaSqlEngine]:
    """A fresh ZetaSQL server on a free loopback port, stopped afterwards."""
    cache = install()
    port = _free_port()
    process = subprocess.Popen(
        [str(cache / _SERVER), "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_S)
        except grpc.FutureTimeoutError:
            process.kill()
            raise RuntimeError(
                f"ZetaSQL server did not start: {process.communicate()[1]}"
            ) from None
        pb, pb_grpc = _stubs(cache)
        yield ZetaSqlEngine(pb, pb_grpc.ZetaSqlLocalServiceStub(channel))
    finally:
        channel.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _free_port() -> int:
    # The server takes a port number, not 0: ask the OS for one that is free right now.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ZetaSqlEngine:
    """Evaluates GoogleSQL queries with ZetaSQL's reference implementation."""

    def __init__(self, pb: Any, stub: Any) -> None:
        self._pb = pb
        self._stub = stub

    def query(self, sql: str, tables: Mapping[str, Table]) -> list[dict[str, Any]]:
        """Rows of `sql` over `tables`, as dicts of Python values (INT64 -> int, FLOAT64 ->
        float, DATE -> date, TIMESTAMP -> UTC datetime, JSON -> parsed, NULL -> None).
        Raises grpc.RpcError with ZetaSQL's message when the engine rejects the query."""
        pb = self._pb
        request = pb.EvaluateQueryRequest(sql=sql, options=self._options())
        request.simple_catalog.name = "catalog"
        request.simple_catalog.builtin_function_options.language_options.CopyFrom(self._language())
        for name, table in tables.items():
            proto = request.simple_catalog.table.add(name=name)
            for column, kind in table.schema.items():
                proto.column.add(name=column).type.type_kind = TYPE_KINDS[kind]
            content = request.table_content[name].table_data
            for row in table.rows:
                cells = content.row.add().cell
                for column, kind in table.schema.items():
                    _encode(cells.add(), TYPE_KINDS[kind], row.get(column))
        response = self._stub.EvaluateQuery(request)
        columns = [(c.name, c.type.type_kind) for c in response.prepared.columns]
        return [
            {name: _decode(cell, kind) for (name, kind), cell in zip(columns, r.cell, strict=True)}
            for r in response.content.table_data.row
        ]

    def _language(self) -> Any:
        features = importlib.import_module("zetasql.public.options_pb2").LanguageFeature
        return importlib.import_module("zetasql.proto.options_pb2").LanguageOptionsProto(
            product_mode=PRODUCT_EXTERNAL,
            enabled_language_features=[features.Value(f) for f in FEATURES],
        )

    def _options(self) -> Any:
        options = importlib.import_module("zetasql.proto.options_pb2").AnalyzerOptionsProto(
            default_timezone="UTC"  # BigQuery's default time zone
        )
        options.language_options.CopyFrom(self._language())
        return options


def _encode(cell: Any, kind: int, value: Any) -> None:
    if value is None:
        return  # an empty ValueProto is NULL
    if kind == 19:
        cell.timestamp_value.FromDatetime(value.astimezone(UTC).replace(tzinfo=None))
    elif kind == 10:
        cell.date_value = (value - EPOCH).days
    elif kind == 26:
        cell.json_value = json.dumps(value, separators=(",", ":"), sort_keys=True)
    else:
        field = {2: "int64_value", 5: "bool_value", 7: "double_value", 8: "string_value"}[kind]
        setattr(cell, field, value)


def _decode(cell: Any, kind: int) -> Any:
    which = cell.WhichOneof("value")
    if which is None:
        return None
    if kind == 19:
        return cell.timestamp_value.ToDatetime(tzinfo=UTC)
    if kind == 10:
        return EPOCH + timedelta(days=cell.date_value)
    if kind == 26:
        return json.loads(cell.json_value)
    if kind not in _KIND_NAMES:
        raise TypeError(f"no decoding for ZetaSQL type kind {kind} ({which})")
    return getattr(cell, which)
