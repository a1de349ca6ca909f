"""FilesystemBlobs: the BlobStore port on a directory (by default the repo's templates/)."""

from __future__ import annotations

import os
from pathlib import Path

from shared.domain.errors import InvalidInput, NotFound


class FilesystemBlobs:
    def __init__(self, root: Path) -> None:
        self._root = Path(root).resolve()

    def _path(self, name: str) -> Path:
        path = (self._root / name).resolve()
        if not path.is_relative_to(self._root):
            raise InvalidInput(f"blob name {name!r} escapes the store", field="name")
        return path

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound(f"no blob {name!r}") from exc

    def version(self, name: str) -> str:
        try:
            stat = self._path(name).stat()
        except FileNotFoundError as exc:
            raise NotFound(f"no blob {name!r}") from exc
        return f"{stat.st_mtime_ns}-{stat.st_size}"

    def read_range(self, name: str, start: int, end: int) -> bytes:
        try:
            with self._path(name).open("rb") as handle:
                handle.seek(start)
                return handle.read(max(0, end - start))
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound(f"no blob {name!r}") from exc

    def size(self, name: str) -> int:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(f"no blob {name!r}") from exc

    def list(self, prefix: str = "") -> list[str]:
        if not self._root.exists():
            return []
        names = (p.relative_to(self._root).as_posix() for p in self._root.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix))

    def write(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
