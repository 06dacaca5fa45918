"""Pure domain tests: decide/evolve, normalisation, and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contacts.domain import contact as d
from services.contacts.domain.identity import identity_stream, normalise_email, normalise_phone
from shared.domain.errors import Invalid

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def registered(**kw: object) -> d.Contact:
    [(t, data)] = d.decide_register("c1", d.ProfileInput(**kw))  # type: ignore[arg-type]
    return d.evolve(None, t, data, T0, 0)


def test_register_normalises_identities() -> None:
    c = registered(email=" Ada@Example.COM ", phone="+44 20 7946 0958", tags=["VIP", "vip", "b2b"])
    assert (c.email, c.phone, c.tags) == ("ada@example.com", "+442079460958", ("vip", "b2b"))
    assert c.identities() == {"email": "ada@example.com", "phone": "+442079460958"}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "IDENTITY_REQUIRED"),
        ({"email": "not-an-email"}, "INVALID_EMAIL"),
        ({"phone": "12345"}, "INVALID_PHONE"),
        ({"phone": "+1 555"}, "INVALID_PHONE"),
        ({"external_id": "x" * 256}, "INVALID_EXTERNAL_ID"),
        ({"email": "a@b.co", "first_name": "x" * 201}, "FIELD_TOO_LONG"),
        ({"email": "a@b.co", "tags": ["bad tag"]}, "INVALID_TAG"),
        ({"email": "a@b.co", "tags": [f"t{i}" for i in range(101)]}, "TOO_MANY_TAGS"),
    ],
)
def test_register_rejects_bad_input(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(Invalid) as info:
        d.decide_register("c1", d.ProfileInput(**fields))  # type: ignore[arg-type]
    assert info.value.reason == reason


def test_update_changes_only_masked_fields_and_reports_identity_moves() -> None:
    c = registered(email="a@b.co", first_name="A")
    events = d.decide_update(
        c,
        ["email", "last_name"],
        d.ProfileInput(email="NEW@b.co", last_name="L", first_name="ignored"),
    )
    [(t, data)] = events
    after = d.evolve(c, t, data, T0, 1)
    assert (after.email, after.first_name, after.last_name, after.version) == (
        "new@b.co",
        "A",
        "L",
        1,
    )
    assert d.identity_changes(c, after) == ({"email": "new@b.co"}, {"email": "a@b.co"})


def test_update_without_change_decides_nothing() -> None:
    c = registered(email="a@b.co", first_name="A")
    assert d.decide_update(c, ["first_name"], d.ProfileInput(first_name="A")) == []


def test_update_cannot_remove_last_identity_or_use_unknown_paths() -> None:
    c = registered(email="a@b.co")
    with pytest.raises(Invalid, match="identity"):
        d.decide_update(c, ["email"], d.ProfileInput(email=""))
    with pytest.raises(Invalid) as info:
        d.decide_update(c, ["contact_id"], d.ProfileInput())
    assert info.value.reason == "INVALID_FIELD_MASK"


def test_identity_stream_hides_the_value() -> None:
    s = identity_stream("email", "ada@example.com")
    assert s.startswith("contactidentity-") and "ada" not in s
    assert s == identity_stream("email", normalise_email("ADA@example.com"))


names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)
tags = st.lists(st.from_regex(r"[a-z0-9][a-z0-9_]{0,10}", fullmatch=True), max_size=5)


@given(first=names, last=names, tag_list=tags, new_first=names, new_tags=tags)
def test_fold_of_decided_events_equals_requested_profile(
    first: str, last: str, tag_list: list[str], new_first: str, new_tags: list[str]
) -> None:
    c = registered(external_id="ext-1", first_name=first, last_name=last, tags=tag_list)
    assert (c.first_name, c.last_name) == (first.strip(), last.strip())
    events = d.decide_update(
        c, ["first_name", "tags"], d.ProfileInput(first_name=new_first, tags=new_tags)
    )
    after = c
    for i, (t, data) in enumerate(events):
        after = d.evolve(after, t, data, T0, c.version + i + 1)
    assert after.first_name == new_first.strip()
    assert after.tags == tuple(dict.fromkeys(new_tags))
    assert (after.last_name, after.external_id) == (c.last_name, "ext-1")
    assert after.version == c.version + len(events)


@given(st.sampled_from(["+14155552671", "+442079460958", "+4930123456", "+81312345678"]))
def test_phone_normalisation_is_idempotent(phone: str) -> None:
    once = normalise_phone(phone)
    assert normalise_phone(once) == once and once.startswith("+")


local_part = st.from_regex(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,20}", fullmatch=True)
domain = st.from_regex(r"([A-Za-z0-9-]{1,10}\.){1,3}[A-Za-z0-9]{1,6}", fullmatch=True)


@given(local=local_part, dom=domain)
def test_email_fast_path_agrees_with_email_validator(local: str, dom: str) -> None:
    from email_validator import EmailNotValidError, validate_email

    from services.contacts.domain.identity import _fast_email

    address = f"{local}@{dom}"
    fast = _fast_email(address)
    if fast is None:
        return  # the slow path decides
    try:
        slow = validate_email(address, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise AssertionError(f"fast path accepted {address!r}, email_validator: {exc}") from None
    assert fast == slow
