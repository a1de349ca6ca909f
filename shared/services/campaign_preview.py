"""Preview and test send: render every variant before a single real message goes out.

`preview` renders each variant exactly as the render stage will (same compiled template, same
Renderer) for a few subscribers from the audience plus synthetic edge cases (no first name, no
attributes, non-ASCII and markup in the name). A failure is reported with the template file and
line, found by rendering the unflattened source in a diagnostic sandbox, so a broken template is
caught before the campaign starts, never at message 40,000.

`test_send` renders one message per variant for one address and queues it on send-requests as
its own batch: not the campaign's audience, not the campaign's ledger or statistics (the links
carry no campaign id), subject prefixed with [TEST].
"""

from __future__ import annotations

import sys
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared import topology
from shared.domain.addresses import normalize_address
from shared.domain.campaign import RESERVED_CONTEXT, Campaign
from shared.domain.errors import InvalidInput, NotFound, PermanentFailure
from shared.domain.events import stable_id
from shared.domain.messages import MARKETING, TRANSACTIONAL, RenderRequest, SendBatch
from shared.domain.subscriber import CONFIRMED, Subscriber
from shared.ports import BlobStore, OutgoingEmail
from shared.repositories.audience import AudiencePages
from shared.repositories.subscribers import Subscribers
from shared.services.audience import AudiencePlan, recipient
from shared.services.publishing import Outbox
from shared.services.rendering import Renderer
from shared.services.templating import (
    CompiledEmail,
    StylesheetLinked,
    TemplateCatalog,
    TestableUndefined,
    email_source_names,
)

SAMPLE_PAGES = 3  # how far into the audience to look for sample subscribers (in pages)
# The first look reads this many subscribers, each next one four times as many: a whole-list
# campaign finds its samples for ~10 reads, not a page of 500 (a page of reads costs more than
# the rest of a 5,000-recipient campaign's dispatch), a narrow segment still looks as far.
SAMPLE_FIRST_LOOK = 10

SYNTHETIC = (
    Subscriber(id="preview-no-name", email="no.name@example.com", status=CONFIRMED),
    Subscriber(id="preview-unicode", email="zoe+preview@example.org", status=CONFIRMED,
               first_name="Zoë Łukasiewicz-O'Brien 山田", attributes={"city": "Zürich"}),
    Subscriber(id="preview-markup", email="markup@example.net", status=CONFIRMED,
               first_name='<b>Bob</b> & "friends"', attributes={"plan": None}),
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """One way a variant fails, with the template file and line when they are known."""

    variant: str | None
    template: str
    recipient: str
    message: str
    file: str | None = None
    line: int | None = None

    def describe(self) -> str:
        where = f"{self.file} line {self.line}" if self.file and self.line else self.template
        label = f"variant {self.variant} " if self.variant else ""
        return f"{label}({where}) for {self.recipient}: {self.message}"


@dataclass
class VariantPreview:
    variant: str | None
    template: str
    rendered: int = 0
    subjects: list[str] = field(default_factory=list)
    html_bytes: int = 0
    text_excerpt: str = ""
    problems: list[Problem] = field(default_factory=list)
    # Worth a look, not a failure: empty values the template prints ("Hello ,"), a small HTML
    # part with an image.
    warnings: list[Problem] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)  # name -> where its value comes from


@dataclass
class PreviewReport:
    campaign_id: str
    samples: list[str]
    variants: list[VariantPreview]

    @property
    def ok(self) -> bool:
        return not any(v.problems for v in self.variants)

    @property
    def problems(self) -> list[Problem]:
        return [p for v in self.variants for p in v.problems]

    @property
    def warnings(self) -> list[Problem]:
        return [w for v in self.variants for w in v.warnings]

    def summary(self) -> str:
        if self.ok:
            warned = f", {len(self.warnings)} warning(s)" if self.warnings else ""
            return (f"preview ok: {len(self.variants)} variant(s) rendered for "
                    f"{len(self.samples)} sample recipients{warned}")  # fmt: skip
        first = self.problems[0]
        more = len(self.problems) - 1
        return f"preview failed: {first.describe()}" + (f" (and {more} more)" if more else "")


class CampaignPreview:
    def __init__(
        self,
        catalog: TemplateCatalog,
        renderer: Renderer,
        blobs: BlobStore,
        pages: AudiencePages,
        subscribers: Subscribers,
        outbox: Outbox,
        clock: Callable[[], float],
    ) -> None:
        self._catalog = catalog
        self._renderer = renderer
        self._blobs = blobs
        self._pages = pages
        self._subscribers = subscribers
        self._outbox = outbox
        self._clock = clock

    # -- preview -------------------------------------------------------------------------

    def missing_templates(self, campaign: Campaign) -> list[str]:
        """Templates the campaign names that do not exist in the template store."""
        names = {campaign.content(v)[0] for v in campaign.variant_names()}
        return sorted(n for n in names if not self._blobs.list(email_source_names(n)[0]))

    def preview(self, campaign: Campaign, sample_size: int = 3) -> PreviewReport:
        samples = [*self._audience_sample(campaign, sample_size), *SYNTHETIC]
        variants = [self._variant(campaign, v, samples) for v in campaign.variant_names()]
        return PreviewReport(campaign.id, [_label(s) for s in samples], variants)

    def message(self, campaign: Campaign, variant: str | None, sample: str) -> OutgoingEmail:
        """`variant` rendered for `sample` (a subscriber id, or a synthetic sample's label).
        NotFound for an unknown variant or subscriber; the template's own error otherwise."""
        if variant not in campaign.variant_names():
            raise NotFound(f"campaign {campaign.id!r} has no variant {variant!r}")
        synthetic = {_label(s): s for s in SYNTHETIC}
        subscriber = synthetic.get(sample) or self._subscribers.get(sample)
        compiled = self._catalog.email(campaign.content(variant)[0])
        request = self._request(campaign, variant, f"preview:{campaign.id}")
        return self._renderer.render(compiled, request, recipient(subscriber))

    def _audience_sample(self, campaign: Campaign, size: int) -> list[Subscriber]:
        plan = AudiencePlan.of(campaign, {})  # engagement is not looked up for a preview
        found: list[Subscriber] = []
        cursor: str | None = None
        reach, look = SAMPLE_PAGES * self._pages.page_size, SAMPLE_FIRST_LOOK
        while reach > 0:
            limit = min(look, reach)
            page = self._pages.first(cursor, limit)
            found += [s for s in page if plan.eligible(s)][: size - len(found)]
            if len(found) >= size or len(page) < limit:
                break
            cursor, reach, look = page[-1].id, reach - limit, look * 4
        return found

    def _variant(
        self, campaign: Campaign, variant: str | None, samples: Sequence[Subscriber]
    ) -> VariantPreview:
        template, _ = campaign.content(variant)
        result = VariantPreview(variant, template)
        try:
            compiled = self._catalog.email(template)
        except (NotFound, PermanentFailure) as exc:
            file, line, message = self._diagnose_compile(template, exc)
            result.problems.append(Problem(variant, template, "every recipient", message,
                                           file, line))  # fmt: skip
            return result
        request = self._request(campaign, variant, f"preview:{campaign.id}")
        for subscriber in samples:
            try:
                email = self._renderer.render(compiled, request, recipient(subscriber))
            except (jinja2.TemplateError, ValueError) as exc:
                result.problems.append(self._diagnose(compiled, request, subscriber, exc))
                continue
            _record(result, email)
            result.warnings += self._empty_prints(compiled, request, subscriber)
            if not any(w.message.startswith(_IMAGE_ONLY) for w in result.warnings):
                result.warnings += _image_only(request, subscriber, email)
        result.variables = variable_origins(compiled.variables, request.context, samples)
        return result

    def _request(self, campaign: Campaign, variant: str | None, batch: str) -> RenderRequest:
        template, subject = campaign.content(variant)
        return RenderRequest(
            batch_id=batch,
            template=template,
            kind=MARKETING,
            audience_at=self._clock(),
            recipients=[],
            campaign_id=None,  # links in previews and tests count toward no campaign
            variant=variant,
            subject=subject,
            sender=campaign.sender,
            track_opens=campaign.track_opens,
            track_clicks=campaign.track_clicks,
            context=campaign.context,
        )

    # -- locating errors in the template source ------------------------------------------

    def _diagnostic_environment(
        self, finalize: Callable[[Any], Any] | None = None
    ) -> jinja2.Environment:
        def load(name: str) -> tuple[str, str, Callable[[], bool]]:
            try:
                return self._blobs.read(name).decode("utf-8"), name, lambda: False
            except NotFound:
                raise jinja2.TemplateNotFound(name) from None

        return ImmutableSandboxedEnvironment(
            loader=jinja2.FunctionLoader(load),
            autoescape=True,
            undefined=TestableUndefined,
            finalize=finalize,
        )

    def _empty_prints(
        self, compiled: CompiledEmail, request: RenderRequest, subscriber: Subscriber
    ) -> list[Problem]:
        """Where the template printed an empty value for this subscriber (a missing first name
        in "Hello {{ first_name }},"): the unflattened source is rendered again with a hook on
        every printed value, which notes the template line that printed an empty one."""
        printed_empty: list[tuple[str, int, str]] = []
        environment = self._diagnostic_environment(_empty_value_recorder(printed_empty))
        html_name, _ = email_source_names(request.template)
        context = self._renderer.template_context(compiled, request, recipient(subscriber))
        try:
            environment.get_template(html_name).render(context)
        except jinja2.TemplateError:
            return []  # the real render succeeded; nothing more to learn here
        warnings: list[Problem] = []
        for file, code_line, what in dict.fromkeys(printed_empty):
            line = environment.get_template(file).get_corresponding_lineno(code_line)
            source = self._blobs.read(file).decode("utf-8").splitlines()[line - 1].strip()
            message = f"prints {what}: {source[:160]}"
            warnings.append(Problem(request.variant, request.template, _label(subscriber),
                                    message, file, line))  # fmt: skip
        return warnings

    def _diagnose_compile(
        self, template: str, exc: Exception
    ) -> tuple[str | None, int | None, str]:
        if isinstance(exc, StylesheetLinked):
            return exc.file, exc.line, exc.reason
        html_name, _ = email_source_names(template)
        try:
            self._diagnostic_environment().get_template(html_name)
        except jinja2.TemplateSyntaxError as syntax:
            return syntax.filename or syntax.name, syntax.lineno, syntax.message or str(syntax)
        except jinja2.TemplateNotFound as missing:
            return None, None, f"template {missing.name!r} does not exist"
        return None, None, str(exc)

    def _diagnose(
        self,
        compiled: CompiledEmail,
        request: RenderRequest,
        subscriber: Subscriber,
        exc: Exception,
    ) -> Problem:
        """Render the unflattened source to find the file and line of a runtime error (with
        the renderer's own context; building it fails first when the subject is at fault)."""
        html_name, _ = email_source_names(request.template)
        file: str | None = None
        line: int | None = None
        try:
            context = self._renderer.template_context(compiled, request, recipient(subscriber))
            self._diagnostic_environment().get_template(html_name).render(context)
        except jinja2.TemplateError as again:
            file, line = _template_frame(again)
        return Problem(request.variant, request.template, _label(subscriber), str(exc), file, line)

    # -- test send -----------------------------------------------------------------------

    def test_send(
        self, campaign: Campaign, to: str, variant: str | None = None
    ) -> list[OutgoingEmail]:
        """Queue one [TEST] message per variant (or just `variant`) for address `to`."""
        address = normalize_address(to)
        subscriber = self._subscribers.find(self._subscribers.id_for(address)) or Subscriber(
            id="test-" + stable_id("test-send", address)[:16], email=address, status=CONFIRMED
        )
        if variant is not None:
            ab = campaign.ab_test
            if ab is None:
                raise InvalidInput(f"campaign {campaign.id!r} has no variants", field="variant")
            ab.variant(variant)  # InvalidInput naming the variants when unknown
        names = [variant] if variant else campaign.variant_names()
        return [self._test_message(campaign, name, subscriber, len(names) > 1) for name in names]

    def render_for(
        self, campaign: Campaign, variant: str | None, subscriber: Subscriber, batch: str
    ) -> OutgoingEmail:
        """`variant` of `campaign` rendered for `subscriber`, not sent."""
        request = self._request(campaign, variant, batch)
        compiled = self._catalog.email(request.template)
        try:
            return self._renderer.render(compiled, request, recipient(subscriber))
        except (jinja2.TemplateError, ValueError) as exc:
            problem = self._diagnose(compiled, request, subscriber, exc)
            raise InvalidInput(f"cannot render: {problem.describe()}") from exc

    def _test_message(
        self, campaign: Campaign, variant: str | None, subscriber: Subscriber, label: bool
    ) -> OutgoingEmail:
        batch = f"test:{campaign.id}:{uuid.uuid4().hex[:12]}"
        request = self._request(campaign, variant, batch)
        compiled = self._catalog.email(request.template)
        prefix = f"[TEST] [{variant}] " if label else "[TEST] "
        try:
            email = self._renderer.render(
                compiled, request, recipient(subscriber), subject_prefix=prefix
            )
        except (jinja2.TemplateError, ValueError) as exc:
            problem = self._diagnose(compiled, request, subscriber, exc)
            raise InvalidInput(f"test message not sent: {problem.describe()}") from exc
        now = self._clock()
        # Sent as its own transactional batch: suppression is checked by direct lookup.
        send = SendBatch(batch, TRANSACTIONAL, now, [email], campaign_id=None, variant=variant)
        self._outbox.publish_bytes(topology.SEND_REQUESTS, [send.encode()])
        return email


def sample_message(preview: CampaignPreview, campaign: Campaign) -> list[OutgoingEmail]:
    """One message per variant rendered for a made-up subscriber, sent nowhere (a draft's page
    in the dashboard shows them). InvalidInput naming the template line when one fails."""
    person = Subscriber(id="preview-sample", email="sample@example.com", status=CONFIRMED,
                        first_name="Ann")  # fmt: skip
    return [
        preview.render_for(campaign, name, person, f"sample:{campaign.id}")
        for name in campaign.variant_names()
    ]


BUILT_IN = "built-in"
CAMPAIGN_VARIABLE = "campaign variable"
# Not a failure: every sample rendered, so the template only tests the name or gives it a
# default (an optional `headline`), but a misspelt name looks the same.
UNKNOWN = "not set for any sample (no built-in, campaign variable or sample attribute)"


def variable_origins(
    names: frozenset[str], campaign_variables: dict[str, Any], samples: Sequence[Subscriber]
) -> dict[str, str]:
    """Where each name a template uses gets its value, in the renderer's order of precedence."""
    origins = {}
    for name in sorted(names - set(jinja2.defaults.DEFAULT_NAMESPACE)):
        having = sum(1 for s in samples if name in s.attributes)
        if name in RESERVED_CONTEXT:
            origins[name] = BUILT_IN
        elif name in campaign_variables:
            origins[name] = CAMPAIGN_VARIABLE
        elif having:
            origins[name] = f"subscriber attribute ({having} of {len(samples)} samples have it)"
        else:
            origins[name] = UNKNOWN
    return origins


def _empty_value_recorder(found: list[tuple[str, int, str]]) -> Callable[[Any], Any]:
    """A Jinja `finalize` hook: notes (template file, compiled line) of each empty value
    printed; the frame that printed it is the template's compiled code, named after its file."""

    def finalize(value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            frame = sys._getframe(1)
            while frame and not frame.f_code.co_filename.startswith(("email/", "pages/")):
                frame = frame.f_back  # type: ignore[assignment]
            if frame:
                what = "None (a value that is not set)" if value is None else "an empty value"
                found.append((frame.f_code.co_filename, frame.f_lineno, what))
        return value

    return finalize


# SpamAssassin scores an HTML part with an image (the open pixel is one) by its size in bytes:
# HTML_IMAGE_ONLY_04 ... _32 add 0.6 to 2.8 points below 3,200 bytes.
IMAGE_ONLY_BYTES = 3_200
_IMAGE_ONLY = "the HTML part is small for an image"


def _image_only(
    request: RenderRequest, subscriber: Subscriber, email: OutgoingEmail
) -> list[Problem]:
    size = len(email.html.encode())
    if size >= IMAGE_ONLY_BYTES or "<img" not in email.html:
        return []
    message = (f"{_IMAGE_ONLY} (the open pixel counts): {size:,} bytes; SpamAssassin adds up "
               f"to 2.8 points (HTML_IMAGE_ONLY_*) below {IMAGE_ONLY_BYTES:,} bytes")  # fmt: skip
    return [Problem(request.variant, request.template, _label(subscriber), message)]


def _template_frame(exc: BaseException) -> tuple[str | None, int | None]:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return exc.filename or exc.name, exc.lineno
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(("email/", "pages/")):  # Jinja names frames after files
            return frame.filename, frame.lineno
    return None, None


def _record(result: VariantPreview, email: OutgoingEmail) -> None:
    result.rendered += 1
    if len(result.subjects) < 3:
        result.subjects.append(email.subject)
    result.html_bytes = max(result.html_bytes, len(email.html.encode()))
    if not result.text_excerpt:
        result.text_excerpt = email.text[:300]


def _label(subscriber: Subscriber) -> str:
    if subscriber.id.startswith("preview-"):
        return f"synthetic {subscriber.id.removeprefix('preview-')}"
    return subscriber.id
