"""`mailpipe subscribers import --no-wait`, `imports`, `import-status --wait` and
`import-rejects`, as a user runs them (a real subprocess on a fresh data directory)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support import REPO


def mailpipe(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MAILPIPE_DATA_DIR": str(tmp_path / "var"),
           "MAILPIPE_TEMPLATE_ROOT": str(REPO / "templates"), "COLUMNS": "200"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "shared.cli.main", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_queue_follow_list_and_download_rejects(tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("E-Mail;Vorname;Plan\nann@example.com;Ann;pro\nnope;X;free\n"
                      "ANN@example.com;Annie;pro\n", encoding="utf-8")  # fmt: skip
    queued = mailpipe(tmp_path, "subscribers", "import", str(people), "--no-wait",
                      "--map", "Plan=ignore")  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    import_id = re.search(r"Import (\S+) queued", queued.stdout).group(1)  # type: ignore[union-attr]

    followed = mailpipe(tmp_path, "subscribers", "import-status", import_id, "--wait")
    assert followed.returncode == 0, followed.stderr
    assert ": done, 3 of 3 rows" in followed.stdout
    assert "1 created" in followed.stdout and "1 rejected" in followed.stdout
    assert "1 duplicate(s) in the file" in followed.stdout

    listed = mailpipe(tmp_path, "subscribers", "imports")
    assert import_id in listed.stdout and "people.csv" in listed.stdout
    out = tmp_path / "bad.csv"
    rejects = mailpipe(tmp_path, "subscribers", "import-rejects", import_id, "-o", str(out))
    assert rejects.returncode == 0, rejects.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "line,email,reason" and lines[1].startswith("3,nope,")
    shown = mailpipe(tmp_path, "subscribers", "show", "ann@example.com")
    assert '"first_name": "Annie"' in shown.stdout and '"attributes": {}' in shown.stdout


def test_a_refused_file_exits_non_zero_and_an_unknown_import_is_a_clear_error(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"email,first_name\nzoe@example.com,Zo\xeb\n")
    refused = mailpipe(tmp_path, "subscribers", "import", str(broken))
    assert refused.returncode == 1
    assert "the file was refused: the file is not UTF-8 text: line 2" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = mailpipe(tmp_path, "subscribers", "import-status", "nope")
    assert missing.returncode == 1 and "no import 'nope'" in missing.stderr
