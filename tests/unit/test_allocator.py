"""The bus-worker hosts cap glibc's malloc arenas; elsewhere the call says it did nothing."""

from __future__ import annotations

import platform

from shared.runner.allocator import cap_malloc_arenas


def test_arenas_are_capped_exactly_where_the_c_library_is_glibc():
    assert cap_malloc_arenas() is (platform.libc_ver()[0] == "glibc")
