"""The trigger definitions, read from the template store (templates/triggers/triggers.yaml
locally, the same object in the template bucket on GCP) and validated against the email
templates that exist there.

A new upload is picked up without a redeploy: the blob's version is re-checked at most every
`check_interval_s`. A broken upload raises InvalidTriggers (a ConfigurationError), so the
messages that needed it are retried and then dead-lettered, not acted on with a guess; an
absent file declares no triggers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared.domain import trigger_definitions
from shared.domain.errors import NotFound
from shared.domain.triggers import TriggerSet
from shared.ports import BlobStore

log = logging.getLogger(__name__)
EMPTY = TriggerSet()


class TriggerCatalog:
    def __init__(
        self,
        blobs: BlobStore,
        blob_name: str,
        check_interval_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blobs = blobs
        self._name = blob_name
        self._interval = check_interval_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._loaded: tuple[str, TriggerSet] | None = None
        self._checked_at = float("-inf")

    def current(self) -> TriggerSet:
        """The definitions in force. Raises InvalidTriggers for a broken file."""
        with self._lock:
            if self._loaded and self._monotonic() - self._checked_at < self._interval:
                return self._loaded[1]
            version = self._version()
            if self._loaded is None or self._loaded[0] != version:
                self._loaded = (version, self._load(version))
            self._checked_at = self._monotonic()
            return self._loaded[1]

    def known_templates(self) -> set[str]:
        """Names of the email templates in the store (email/<name>.html)."""
        stems = (b.removeprefix("email/").removesuffix(".html") for b in self._blobs.list("email/"))
        return {s for s in stems if "/" not in s and "." not in s}

    def validate(self, text: str, source: str) -> TriggerSet:
        """Definitions in `text`, checked against the store's templates (the CLI uses it)."""
        return trigger_definitions.load_yaml(text, self.known_templates(), source)

    def _version(self) -> str:
        try:
            return self._blobs.version(self._name)
        except NotFound:
            return ""

    def _load(self, version: str) -> TriggerSet:
        if not version:
            log.warning("no trigger definitions at %s: no behavioural triggers", self._name)
            return EMPTY
        try:
            text = self._blobs.read(self._name).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise trigger_definitions.InvalidTriggers(
                self._name, [f"not UTF-8 text: {exc}"]
            ) from exc
        triggers = self.validate(text, self._name)
        log.info("loaded %d trigger definitions from %s", len(triggers.triggers), self._name)
        return triggers
