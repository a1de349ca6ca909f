"""GcsBlobs: the BlobStore port on one Cloud Storage bucket (the Jinja templates).

`version` is the object's generation, which changes on every upload, so the template catalog
(shared/services/templating.py) recompiles a template exactly when a new version was uploaded,
checking at most once per check interval (one metadata read). Storage operations are not
metered: a warm instance reads each template once per generation, a fraction of a cent a month.
"""

from __future__ import annotations

import google.cloud.storage as storage
from google.api_core import exceptions as gexc

from shared.adapters.gcp import clients
from shared.adapters.gcp.errors import translated
from shared.domain.errors import InvalidInput
from shared.metering import NULL_METER, OperationMeter
from shared.settings import Settings


class GcsBlobs:
    def __init__(self, client: storage.Client, bucket: str) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)

    @classmethod
    def from_settings(cls, settings: Settings, meter: OperationMeter = NULL_METER) -> GcsBlobs:
        """The bucket `settings.template_bucket`; `meter` is accepted like every adapter's."""
        return cls(clients.storage_client(settings), settings.template_bucket)

    def _blob(self, name: str) -> storage.Blob:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise InvalidInput(f"invalid blob name {name!r}", field="name")
        return self._bucket.blob(name)

    def read(self, name: str) -> bytes:
        blob = self._blob(name)
        with translated(f"read gs://{self._bucket.name}/{name}"):
            return bytes(blob.download_as_bytes())

    def version(self, name: str) -> str:
        blob = self._blob(name)
        with translated(f"stat gs://{self._bucket.name}/{name}"):
            blob.reload()  # metadata only; NotFound when absent
        return str(blob.generation)

    def read_range(self, name: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        blob = self._blob(name)
        with translated(f"read gs://{self._bucket.name}/{name}"):
            try:  # `end` is inclusive in the client
                return bytes(blob.download_as_bytes(start=start, end=end - 1))
            except gexc.RequestRangeNotSatisfiable:
                return b""  # past the end

    def size(self, name: str) -> int:
        blob = self._blob(name)
        with translated(f"stat gs://{self._bucket.name}/{name}"):
            blob.reload()
        return int(blob.size or 0)

    def list(self, prefix: str = "") -> list[str]:
        with translated(f"list gs://{self._bucket.name}/{prefix}"):
            names = [b.name for b in self._client.list_blobs(self._bucket, prefix=prefix or None)]
        return sorted(n for n in names if not n.endswith("/"))

    def write(self, name: str, data: bytes) -> None:
        blob = self._blob(name)
        with translated(f"write gs://{self._bucket.name}/{name}"):
            blob.upload_from_string(data)
