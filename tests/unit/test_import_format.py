"""The import file's shape: delimiter sniffing, header synonyms, statuses, multi-values, and
the plain-address fast path agreeing with email-validator."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain import import_format as fmt
from shared.domain.addresses import normalize_address
from shared.domain.errors import InvalidAddress, InvalidInput


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [("email,first_name", ","), ("Email;Vorname;Liste", ";"), ("email\tname", "\t"),
     ('"Email, Address";"Name"', ";"), ("email", ",")],
)  # fmt: skip
def test_the_delimiter_is_sniffed_from_the_header(header: str, delimiter: str) -> None:
    assert fmt.sniff_delimiter(header) == delimiter


def test_headers_match_by_case_and_synonym() -> None:
    headers = ["Email Address", "FIRST NAME", "Tags", "Status", "UNSUB_TIME", "LEID",
               "attributes.Plan.Tier", "Company", "attributes"]  # fmt: skip
    assert fmt.default_mapping(headers) == {
        "Email Address": "email", "FIRST NAME": "first_name", "Tags": "tags",
        "Status": "status", "UNSUB_TIME": "unsubscribed_at", "LEID": "ignore",
        "attributes.Plan.Tier": "attributes.Plan.Tier", "Company": "attributes.company",
        "attributes": "attributes",
    }  # fmt: skip


def test_a_mapping_is_checked() -> None:
    headers = ["mail", "plan"]
    assert fmt.check_mapping(headers, {"plan": "ignore"}) == ["email", "ignore"]
    with pytest.raises(InvalidInput, match="more than one column is mapped to email"):
        fmt.check_mapping(headers, {"plan": "email"})
    with pytest.raises(InvalidInput, match="mapped to 'bogus'"):
        fmt.check_mapping(headers, {"plan": "bogus"})
    with pytest.raises(InvalidInput, match="does not have"):
        fmt.check_mapping(headers, {"other": "tags"})
    with pytest.raises(InvalidInput, match="no column holds the email address"):
        fmt.check_mapping(headers, {"mail": "ignore"})


@pytest.mark.parametrize(
    ("status", "unsub", "clean", "expected"),
    [("subscribed", "", "", (fmt.SUBSCRIBED, "")), ("", "", "", (fmt.SUBSCRIBED, "")),
     ("Unsubscribed", "", "", (fmt.UNSUBSCRIBED, "unsubscribed")),
     ("", "2024-01-01", "", (fmt.UNSUBSCRIBED, "unsubscribed")),
     ("subscribed", "", "2024-01-01", (fmt.SUPPRESSED, "hard_bounce")),
     ("cleaned", "", "", (fmt.SUPPRESSED, "hard_bounce")),
     ("blocklisted", "", "", (fmt.SUPPRESSED, "manual")),
     ("complained", "", "", (fmt.SUPPRESSED, "complaint")),
     ("unconfirmed", "", "", (fmt.PENDING, "")),
     ("disabled", "", "", (fmt.UNSUBSCRIBED, "unsubscribed"))],
)  # fmt: skip
def test_source_statuses_never_confirm_the_unsubscribed(
    status: str, unsub: str, clean: str, expected: tuple[str, str]
) -> None:
    targets = ["email", "status", "unsubscribed_at", "cleaned_at"]
    row = fmt.parse_cells(targets, ["a@example.com", status, unsub, clean])
    assert (row.status, row.suppression_reason) == expected


def test_multi_values_json_attributes_and_bad_cells() -> None:
    targets = ["email", "tags", "lists", "attributes", "attributes.plan.tier"]
    row = fmt.parse_cells(
        targets, ["a@example.com", '"VIP","Customer"', "weekly,offers", '{"city": "Oslo"}', "2"]
    )
    assert row.memberships == {"tags": ["VIP", "Customer"], "lists": ["weekly", "offers"]}
    assert row.attributes == {"city": "Oslo", "plan": {"tier": 2}}
    with pytest.raises(InvalidInput, match="JSON object"):
        fmt.parse_cells(["email", "attributes"], ["a@example.com", "[1]"])
    with pytest.raises(InvalidInput, match="unknown status"):
        fmt.parse_cells(["email", "status"], ["a@example.com", "maybe"])
    with pytest.raises(InvalidInput, match="more fields than the header"):
        fmt.parse_cells(["email"], ["a@example.com", "extra"])


_LOCAL = st.text(alphabet="abcXYZ019.!#$%&'*+/=?^_`{|}~-\"é @", min_size=0, max_size=70)
_DOMAIN = st.sampled_from(["example.com", "EXAMPLE.org", "bücher.de", "xn--bcher-kva.de",
                           "x.test", "localhost", "1.2.3.4", "-x.com", "a..com", "[1.2.3.4]",
                           "x.co."])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(local=_LOCAL, domain=_DOMAIN)
def test_the_plain_address_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    try:
        expected: str | None = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError:
        expected = None
    try:
        found: str | None = normalize_address(address)
    except InvalidAddress:
        found = None
    if address.strip() != address or not address.strip():
        return  # normalize_address strips first; validate_email would refuse the spaces
    assert found == expected
