"""Email templates as a marketer edits them: the list, a template's source and its earlier
versions, a draft rendered before it is saved, and saving a new version.

A draft is rendered by the same preview the campaigns use (same compiled template, Renderer and
sample subscribers), over the template store with the draft laid on top, so its errors name the
file and line exactly as `mailpipe campaign preview` does. Saving keeps the version it replaces
under versions/<file>/<time>.html, so an edit can be looked at and undone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from shared.domain.campaign import TEMPLATE_NAME, Campaign
from shared.domain.errors import InvalidInput, NotFound
from shared.ports import BlobStore, OutgoingEmail
from shared.services.campaign_preview import CampaignPreview, PreviewReport
from shared.services.templating import email_source_names

VERSIONS = "versions/"
MAX_SOURCE_BYTES = 500_000
PreviewFor = Callable[[BlobStore], CampaignPreview]


@dataclass(frozen=True)
class Version:
    key: str  # the blob name under versions/
    saved_at: float
    size: int


@dataclass(frozen=True)
class Draft:
    """A draft rendered for one sample: the report (problems with file and line) and, when it
    rendered, the message."""

    report: PreviewReport
    message: OutgoingEmail | None


class DraftBlobs:
    """The template store with one file replaced by a draft (reads only)."""

    def __init__(self, base: BlobStore, name: str, data: bytes) -> None:
        self._base, self._name, self._data = base, name, data

    def read(self, name: str) -> bytes:
        return self._data if name == self._name else self._base.read(name)

    def version(self, name: str) -> str:
        if name == self._name:
            return "draft-" + hashlib.sha256(self._data).hexdigest()[:16]
        return self._base.version(name)

    def list(self, prefix: str = "") -> list[str]:
        names = set(self._base.list(prefix))
        if self._name.startswith(prefix):
            names.add(self._name)
        return sorted(names)

    def read_range(self, name: str, start: int, end: int) -> bytes:
        return (
            self.read(name)[start:end]
            if name == self._name
            else self._base.read_range(name, start, end)
        )

    def size(self, name: str) -> int:
        return len(self._data) if name == self._name else self._base.size(name)

    def write(self, name: str, data: bytes) -> None:
        raise NotImplementedError("a draft is never written")


class TemplateLibrary:
    def __init__(self, blobs: BlobStore, preview_for: PreviewFor, clock: Callable[[], float]):
        self._blobs = blobs
        self._preview_for = preview_for
        self._clock = clock

    def names(self) -> list[str]:
        """Email templates by name (email/<name>.html)."""
        return [n.removeprefix("email/").removesuffix(".html")
                for n in self._blobs.list("email/") if n.endswith(".html")]  # fmt: skip

    def source(self, name: str) -> str:
        return self._blobs.read(_html(name)).decode("utf-8")

    def versions(self, name: str) -> list[Version]:
        """Earlier versions, newest first."""
        found = []
        for key in self._blobs.list(f"{VERSIONS}{_html(name)}/"):
            stamp = key.rsplit("/", 1)[-1].removesuffix(".html")
            if stamp.isdigit():
                found.append(Version(key, int(stamp) / 1000, len(self._blobs.read(key))))
        return sorted(found, key=lambda v: -v.saved_at)

    def version_source(self, name: str, key: str) -> str:
        if not key.startswith(f"{VERSIONS}{_html(name)}/"):
            raise NotFound(f"no version {key!r} of template {name!r}")
        return self._blobs.read(key).decode("utf-8")

    def draft(self, name: str, source: str, sample: str = "") -> Draft:
        """Render `source` as template `name` for the preview's samples; the message for
        `sample` (default: the first sample) when it rendered."""
        data = _checked(source)
        preview = self._preview_for(DraftBlobs(self._blobs, _html(name), data))
        campaign = Campaign(id="template-draft", name=name, template=name)
        report = preview.preview(campaign, sample_size=1)
        chosen = sample if sample in report.samples else report.samples[0]
        if not report.ok:
            return Draft(report, None)
        return Draft(report, preview.message(campaign, None, chosen))

    def save(self, name: str, source: str) -> Draft:
        """Save a new version, after it rendered for every sample; InvalidInput (naming the
        file and line) when it did not, and nothing is saved."""
        draft = self.draft(name, source)
        if not draft.report.ok:
            raise InvalidInput(f"not saved: {draft.report.summary()}", field="source")
        target = _html(name)
        try:
            current = self._blobs.read(target)
        except NotFound:
            current = None
        if current is not None:
            stamp = int(self._clock() * 1000)
            self._blobs.write(f"{VERSIONS}{target}/{stamp:015d}.html", current)
        self._blobs.write(target, source.encode("utf-8"))
        return draft


def _html(name: str) -> str:
    if not TEMPLATE_NAME.match(name):
        raise InvalidInput(
            "template must name an email template (letters, digits, - or _), e.g. newsletter",
            field="name",
        )
    return email_source_names(name)[0]


def _checked(source: str) -> bytes:
    data = source.replace("\r\n", "\n").encode("utf-8")
    if len(data) > MAX_SOURCE_BYTES:
        raise InvalidInput(f"the template is larger than {MAX_SOURCE_BYTES:,} bytes", "source")
    return data
