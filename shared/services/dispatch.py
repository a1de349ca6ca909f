"""Dispatch: campaigns -> audience pages -> render batches. (Campaigns land with issue 4.)"""

from __future__ import annotations

from typing import Any

from shared.domain.errors import InvalidInput


class DispatchService:
    def handle(self, request: dict[str, Any]) -> int:
        if request.get("kind") == "sweep":
            return 0  # no scheduled campaigns exist before the campaign engine
        raise InvalidInput(f"unknown dispatch request kind {request.get('kind')!r}")
