"""The BlobStore contract (shared/ports.py), for FilesystemBlobs and GcsBlobs (against
gcp-storage-emulator), and the template catalog's cache per object version on top of it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.domain.errors import NotFound
from shared.services.templating import TemplateCatalog


def test_write_then_read(blobs: Any) -> None:
    blobs.write("email/hello.html", b"<p>hi</p>")
    blobs.write("bin/all-bytes", bytes(range(256)))
    assert blobs.read("email/hello.html") == b"<p>hi</p>"
    assert blobs.read("bin/all-bytes") == bytes(range(256))


def test_missing_objects_are_not_found(blobs: Any) -> None:
    with pytest.raises(NotFound):
        blobs.read("email/missing.html")
    with pytest.raises(NotFound):
        blobs.version("email/missing.html")


def test_version_changes_with_every_write(blobs: Any) -> None:
    blobs.write("a.txt", b"one")
    first = blobs.version("a.txt")
    assert blobs.version("a.txt") == first  # stable while unchanged
    blobs.write("a.txt", b"two!")
    second = blobs.version("a.txt")
    assert second != first
    assert blobs.read("a.txt") == b"two!"


def test_list_is_sorted_and_filtered_by_prefix(blobs: Any) -> None:
    for name in ("pages/b.html", "email/z.html", "email/a.html", "email/sub/c.txt"):
        blobs.write(name, b"x")
    assert blobs.list("email/") == ["email/a.html", "email/sub/c.txt", "email/z.html"]
    assert blobs.list("email/a") == ["email/a.html"]
    assert blobs.list() == ["email/a.html", "email/sub/c.txt", "email/z.html", "pages/b.html"]
    assert blobs.list("nothing/") == []


def _email(version: str) -> bytes:
    page = f"<html><head><title>Hello {version}</title></head><body><p>{version}</p></body></html>"
    return page.encode()


def test_templates_are_cached_per_object_version(blobs: Any) -> None:
    """Upload v1, render; the cache holds while the object is unchanged; upload v2 and the next
    render (the check interval is 0) sees v2 without a restart."""
    blobs.write("email/hello.html", _email("v1"))
    catalog = TemplateCatalog(blobs, check_interval_s=0)
    first = catalog.email("hello")
    assert first.subject.render() == "Hello v1"
    assert catalog.email("hello") is first  # same version: not compiled again
    blobs.write("email/hello.html", _email("v2"))
    second = catalog.email("hello")
    assert second.subject.render() == "Hello v2"
    assert "v2" in second.html.render()
    assert second.version != first.version


def test_read_range_and_size(blobs: Any) -> None:
    data = bytes(range(256)) * 40
    blobs.write("imports/x/source.csv", data)
    assert blobs.size("imports/x/source.csv") == len(data)
    assert blobs.read_range("imports/x/source.csv", 0, 10) == data[:10]
    assert blobs.read_range("imports/x/source.csv", 1000, 5000) == data[1000:5000]
    assert blobs.read_range("imports/x/source.csv", len(data) - 3, len(data) + 100) == data[-3:]
    assert blobs.read_range("imports/x/source.csv", len(data) + 5, len(data) + 10) == b""
    with pytest.raises(NotFound):
        blobs.read_range("imports/missing.csv", 0, 10)
    with pytest.raises(NotFound):
        blobs.size("imports/missing.csv")
