"""Another tool's export through the import mapping: suggested columns, a changed mapping, the
preview's rejects, and the import itself (SubscriberImport, as the CLI runs it)."""

from __future__ import annotations

import pytest

from shared.domain.errors import InvalidInput, NotFound
from shared.services.import_mapping import suggest

EXPORT = (
    b"Email Address,FNAME,Tags,Plan Tier,Notes\n"
    b"ann@example.com,Ann,vip;b2b,pro,called\n"
    b"bad address,Bo,,free,\n"
    b"cy@example.com,Cy,,team,\n"
)


def test_columns_of_other_tools_are_suggested() -> None:
    assert [suggest(c) for c in ("E-mail", "First Name", "Groups", "Plan Tier", "tags")] == [
        "email", "first_name", "lists", "attributes.Plan_Tier", "tags"]  # fmt: skip


def test_inspect_map_differently_and_import(container) -> None:
    mapper = container.import_mapping
    upload_id = mapper.upload("export.csv", EXPORT)
    seen = mapper.inspect(upload_id)
    assert seen.rows == 3 and seen.error is None and seen.filename == "export.csv"
    assert seen.mapping["Notes"] == "attributes.Notes"
    assert seen.rejects == [(3, "email is not valid: An email address must have an @-sign.")]
    mapping = {**seen.mapping, "Notes": "", "Plan Tier": "attributes.plan.tier"}
    again = mapper.inspect(upload_id, mapping)
    assert again.preview[0] == {"email": "ann@example.com", "first_name": "Ann",
                                "tags": "vip;b2b", "attributes.plan.tier": "pro"}  # fmt: skip
    bad = mapper.inspect(upload_id, {**mapping, "FNAME": "email"})
    assert bad.error == "column(s) email appear twice"
    with pytest.raises(InvalidInput):
        mapper.run(upload_id, {**mapping, "Tags": "shoe_size"}, confirmed_consent=True)
    counted: list[int] = []
    summary = mapper.run(upload_id, mapping, confirmed_consent=True, on_row=counted.append)
    assert (summary.rows, summary.created, summary.rejected) == (3, 2, 1) and counted[-1] == 3
    ann = container.subscribers.get(container.subscribers.id_for("ann@example.com"))
    assert ann.tags == ["vip", "b2b"] and ann.attributes == {"plan": {"tier": "pro"}}
    assert ann.status == "confirmed" and ann.consent[0]["text_hash"] == upload_id
    assert mapper.run(upload_id, mapping, confirmed_consent=True).created == 0  # again: nothing
    with pytest.raises(NotFound):
        mapper.inspect("../templates/email/newsletter.html")
    with pytest.raises(InvalidInput):
        mapper.upload("latin1.csv", "email\nzoë@example.com\n".encode("latin-1"))
