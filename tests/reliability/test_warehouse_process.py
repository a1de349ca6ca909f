"""The local warehouse process: while it runs, appends leave merging landing parts to it;
when it is gone they merge inline again. And a process that only appends never loads DuckDB."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.adapters.local import warehouse_service
from shared.adapters.local.duckdb_warehouse import LANDING_PARTS, DuckDbWarehouse
from shared.domain.errors import InvalidInput
from shared.runner import warehouse_process
from shared.topology import REPO_ROOT


def event(n: int) -> dict:
    return {"event_id": f"e{n}", "event_type": "send", "occurred_at": "2026-11-30T08:00:00Z",
            "subscriber_id": f"s{n}", "campaign_id": "c1", "properties": {}}  # fmt: skip


def fill(warehouse: DuckDbWarehouse, parts: int, start: int = 0) -> None:
    for n in range(start, start + parts):
        warehouse.append([event(n)])


def parquet_parts(root: Path) -> list[Path]:
    return sorted((root / "events").glob("*.parquet"))


def sent(warehouse: DuckDbWarehouse) -> int:
    return int(warehouse.query("SELECT count(*) AS n FROM events")[0]["n"])


def test_without_a_compactor_the_append_that_completes_a_merge_does_it(tmp_path: Path) -> None:
    warehouse = DuckDbWarehouse(tmp_path, snapshot_reads=False)

    fill(warehouse, LANDING_PARTS)

    assert not warehouse.compactor_running()
    assert len(parquet_parts(tmp_path)) == 1 and warehouse.landing_count() == 0
    assert sent(warehouse) == LANDING_PARTS


def test_while_a_compactor_holds_its_lock_appends_leave_the_merging_to_it(
    tmp_path: Path,
) -> None:
    warehouse = DuckDbWarehouse(tmp_path, snapshot_reads=False)
    with DuckDbWarehouse(tmp_path).compactor_lock() as held:
        assert held and warehouse.compactor_running()
        with warehouse.compactor_lock() as also_held:
            assert not also_held  # one holder at a time, and asking does not wait
        fill(warehouse, LANDING_PARTS)
        assert parquet_parts(tmp_path) == [] and warehouse.landing_count() == LANDING_PARTS
    assert not warehouse.compactor_running()  # the lock goes with its holder


def test_the_compactor_merges_what_gathered_then_appends_merge_inline_again(
    tmp_path: Path,
) -> None:
    warehouse = DuckDbWarehouse(tmp_path, snapshot_reads=False)
    with warehouse.compactor_lock() as held:
        assert held
        fill(warehouse, LANDING_PARTS)
    stop = threading.Event()
    compactor = threading.Thread(
        target=warehouse_process.compact_until,
        args=(DuckDbWarehouse(tmp_path), stop, os.getppid()),
    )
    compactor.start()
    try:
        _until(lambda: warehouse.landing_count() == 0)
    finally:
        stop.set()
        compactor.join(timeout=10)

    assert len(parquet_parts(tmp_path)) == 1
    assert sent(warehouse) == LANDING_PARTS
    fill(warehouse, LANDING_PARTS, start=LANDING_PARTS)
    assert len(parquet_parts(tmp_path)) == 2 and sent(warehouse) == 2 * LANDING_PARTS


def test_a_compactor_whose_runner_died_stops(tmp_path: Path) -> None:
    stop = threading.Event()
    thread = threading.Thread(
        target=warehouse_process.compact_until,
        args=(DuckDbWarehouse(tmp_path), stop, os.getppid() + 1),  # not our parent
    )
    thread.start()
    thread.join(timeout=10)

    assert not thread.is_alive()
    assert not DuckDbWarehouse(tmp_path).compactor_running()


def test_a_warehouse_process_whose_runner_is_already_gone_exits(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    env = {**os.environ, "MAILPIPE_DATA_DIR": str(tmp_path)}
    process = subprocess.run(
        [sys.executable, "-m", "shared.runner.warehouse_process", str(dead.pid)],
        cwd=REPO_ROOT, env=env, timeout=30, check=False,
    )  # fmt: skip

    assert process.returncode == 0  # it exited (the timeout would have raised)


def test_waiting_for_another_holder_stops_when_asked(tmp_path: Path) -> None:
    stop = threading.Event()
    with DuckDbWarehouse(tmp_path).compactor_lock():
        thread = threading.Thread(
            target=warehouse_process.compact_until,
            args=(DuckDbWarehouse(tmp_path), stop, os.getppid()),
        )
        thread.start()
        time.sleep(0.2)
        assert thread.is_alive()  # waiting its turn
        stop.set()
        thread.join(timeout=5)

    assert not thread.is_alive()


def test_a_process_that_only_appends_never_loads_duckdb(tmp_path: Path) -> None:
    output = in_a_fresh_process(
        f"w = DuckDbWarehouse({str(tmp_path)!r})\n"
        "w.append([{'event_id': 'e1', 'event_type': 'send', 'properties': {}}])\n"
        "print('duckdb' in sys.modules)\n"
    )

    assert output == "False"


def in_a_fresh_process(script: str) -> str:
    """What `script` prints, run by a new interpreter that has imported DuckDbWarehouse."""
    preamble = "import sys\nfrom shared.adapters.local.duckdb_warehouse import DuckDbWarehouse\n"
    result = subprocess.run([sys.executable, "-c", preamble + script], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)  # fmt: skip
    return result.stdout.strip()


def _until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- the query service ----------------------------------------------------------------------


def test_the_pipelines_queries_are_answered_by_the_service_without_loading_duckdb(
    tmp_path: Path,
) -> None:
    serving = DuckDbWarehouse(tmp_path, snapshot_reads=False)
    fill(serving, 3)
    serving.serve_queries()
    output = in_a_fresh_process(
        f"w = DuckDbWarehouse({str(tmp_path)!r}, snapshot_reads=False, via_service=True)\n"
        "rows = w.query('SELECT subscriber_id FROM events ORDER BY 1')\n"
        "print([r['subscriber_id'] for r in rows], 'duckdb' in sys.modules)\n"
    )

    assert output == "['s0', 's1', 's2'] False"


def test_a_large_result_is_streamed_by_the_service_a_page_at_a_time(tmp_path: Path) -> None:
    serving = DuckDbWarehouse(tmp_path, snapshot_reads=False)
    fill(serving, 5)
    serving.serve_queries()
    output = in_a_fresh_process(
        f"w = DuckDbWarehouse({str(tmp_path)!r}, snapshot_reads=False, via_service=True)\n"
        "pages = w.query_pages('SELECT subscriber_id FROM events ORDER BY 1', None, 2)\n"
        "print([[r['subscriber_id'] for r in p] for p in pages], 'duckdb' in sys.modules)\n"
    )

    assert output == "[['s0', 's1'], ['s2', 's3'], ['s4']] False"


def test_without_a_service_pages_come_from_this_process(tmp_path: Path) -> None:
    warehouse = DuckDbWarehouse(tmp_path, snapshot_reads=False, via_service=True)
    fill(warehouse, 3)

    assert warehouse_service.ask_pages(tmp_path / "events", "SELECT 1 AS n", None, 2) is None
    pages = list(warehouse.query_pages("SELECT subscriber_id FROM events ORDER BY 1", None, 2))
    assert [len(page) for page in pages] == [2, 1]


def test_a_paged_query_that_fails_midway_raises_after_the_pages_it_gave(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()

    def first_page_then_trouble(sql, params, size):
        yield [{"n": 1}]
        raise ValueError("a part vanished")

    warehouse_service.serve(folder, lambda sql, params: [], first_page_then_trouble)
    pages = warehouse_service.ask_pages(folder, "SELECT 1 AS n", None, 1)

    assert pages is not None
    assert next(pages) == [{"n": 1}]
    with pytest.raises(RuntimeError, match="ValueError: a part vanished"):
        next(pages)


def test_a_refused_paged_query_says_why(tmp_path: Path) -> None:
    DuckDbWarehouse(tmp_path, snapshot_reads=False).serve_queries()
    asking = DuckDbWarehouse(tmp_path, snapshot_reads=False, via_service=True)

    with pytest.raises(RuntimeError, match=r"BinderException.*no_such_column"):
        list(asking.query_pages("SELECT no_such_column FROM events", None, 10))
    with pytest.raises(InvalidInput, match="only SELECT"):
        list(asking.query_pages("DELETE FROM events", None, 10))


def test_without_a_service_the_query_runs_in_process(tmp_path: Path) -> None:
    warehouse = DuckDbWarehouse(tmp_path, snapshot_reads=False, via_service=True)
    fill(warehouse, 2)

    assert warehouse_service.ask(tmp_path / "events", "SELECT 1 AS n", None) is None
    assert sent(warehouse) == 2


def test_a_failing_query_says_why_and_the_service_answers_on(tmp_path: Path) -> None:
    DuckDbWarehouse(tmp_path, snapshot_reads=False).serve_queries()
    asking = DuckDbWarehouse(tmp_path, snapshot_reads=False, via_service=True)

    with pytest.raises(RuntimeError, match=r"BinderException.*no_such_column"):
        asking.query("SELECT no_such_column FROM events")
    with pytest.raises(InvalidInput, match="only SELECT"):
        asking.query("DELETE FROM events")
    assert asking.query("SELECT 41 + 1 AS n") == [{"n": 42}]


def test_a_caller_without_the_key_gets_no_answer(tmp_path: Path) -> None:
    DuckDbWarehouse(tmp_path, snapshot_reads=False).serve_queries()
    key = tmp_path / "events" / warehouse_service.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600
    key.write_bytes(b"not the key")

    assert warehouse_service.ask(tmp_path / "events", "SELECT 1 AS n", None) is None


def test_a_silent_connection_does_not_stall_the_service(tmp_path: Path) -> None:
    serving = DuckDbWarehouse(tmp_path, snapshot_reads=False)
    fill(serving, 1)
    serving.serve_queries()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(warehouse_service.address(tmp_path / "events"))
        asking = DuckDbWarehouse(tmp_path, snapshot_reads=False, via_service=True)

        answer = warehouse_service.ask(tmp_path / "events", "SELECT count(*) AS n FROM events", {})

    assert answer == [{"n": 1}]
    assert sent(asking) == 1


def test_a_stranger_on_the_address_means_asking_duckdb_directly(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / warehouse_service.KEY_FILE).write_bytes(b"k" * 32)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stranger:
        stranger.bind(warehouse_service.address(folder))
        stranger.listen()

        def greet_wrongly() -> None:
            peer, _ = stranger.accept()
            with peer:
                peer.sendall(b"\x00\x00\x00\x05hello")

        threading.Thread(target=greet_wrongly, daemon=True).start()

        assert warehouse_service.ask(folder, "SELECT 1 AS n", {}) is None


def test_a_runner_that_cannot_start_leaves_no_child_behind(local_settings) -> None:
    from shared.bootstrap import Container
    from shared.runner.local_runner import LocalRunner

    with socket.socket() as taken:
        taken.bind((local_settings.host, local_settings.port))
        taken.listen()
        runner = LocalRunner(Container(local_settings), with_smtp_sink=False)
        with pytest.raises(OSError, match="in use"):  # `mailpipe run` says so, no trace
            runner.start()

    assert runner.processes, "the warehouse process had started"
    assert all(process.poll() is not None for process in runner.processes)
