"""Pure tests of the consent ledger: validation, decide/evolve, double opt-in, suppression."""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.contacts.domain import consent as d
from shared.domain.errors import Invalid, NotFound, Precondition

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(hours=48)
CID = "6a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"


class Clerk:
    """Runs commands against a ledger as the application does, with a settable clock."""

    def __init__(self) -> None:
        self.ledger = d.Ledger(CID)
        self.now = T0
        self.events: list[tuple[str, dict[str, object], datetime, int]] = []

    def apply(self, decided: list[d.Event]) -> list[d.Event]:
        for t, data in decided:
            version = self.ledger.version + 1
            self.ledger = d.evolve(self.ledger, t, data, self.now, version)
            self.events.append((t, data, self.now, version))
        self.now += timedelta(seconds=1)
        return decided

    def record(
        self, state: str, basis: str = "consent", policy: str = "v1", **kw: Any
    ) -> list[d.Event]:
        cmd = d.validate_record(
            d.RecordConsent("email", state, d.Terms(basis, "checkout", policy), **kw),
            self.now,
        )
        return self.apply(d.decide_record(self.ledger, cmd, now=self.now, ttl=TTL, token_hash=""))

    def request(self) -> str:
        token = d.make_token(CID, os.urandom(32))
        cmd = d.validate_record(
            d.RecordConsent(
                "email", d.SUBSCRIBED, d.Terms("consent", "form", "v2"), double_opt_in=True
            ),
            self.now,
        )
        decided = d.decide_record(
            self.ledger, cmd, now=self.now, ttl=TTL, token_hash=d.token_sha256(token)
        )
        self.apply(decided)
        return token

    def confirm(self, token: str) -> list[d.Event]:
        return self.apply(
            d.decide_confirm(self.ledger, d.token_sha256(token), d.Evidence("10.0.0.1"), self.now)
        )

    @property
    def email(self) -> d.ChannelConsent:
        return self.ledger.channel("email")


def reason_of(exc: pytest.ExceptionInfo[Exception]) -> str:
    return exc.value.reason  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (d.RecordConsent("", d.SUBSCRIBED, d.Terms("consent")), "CHANNEL_REQUIRED"),
        (d.RecordConsent("fax", d.SUBSCRIBED, d.Terms("consent")), "INVALID_CHANNEL"),
        (d.RecordConsent("#9", d.SUBSCRIBED, d.Terms("consent")), "INVALID_CHANNEL"),
        (d.RecordConsent("email", "", d.Terms("consent")), "STATE_REQUIRED"),
        (d.RecordConsent("email", d.PENDING, d.Terms("consent")), "INVALID_STATE"),
        (d.RecordConsent("email", d.NEVER, d.Terms("consent")), "INVALID_STATE"),
        (d.RecordConsent("email", d.SUBSCRIBED), "LEGAL_BASIS_REQUIRED"),
        (d.RecordConsent("email", d.SUBSCRIBED, d.Terms("#7")), "INVALID_LEGAL_BASIS"),
        (d.RecordConsent("email", d.SUBSCRIBED, d.Terms("consent", "s" * 201)), "FIELD_TOO_LONG"),
        (
            d.RecordConsent("email", d.SUBSCRIBED, d.Terms("consent", "", "p" * 65)),
            "FIELD_TOO_LONG",
        ),
        (
            d.RecordConsent("email", d.SUBSCRIBED, d.Terms("consent"), d.Evidence("", "u" * 513)),
            "FIELD_TOO_LONG",
        ),
        (
            d.RecordConsent("email", d.SUBSCRIBED, d.Terms("consent"), d.Evidence("300.1.1.1")),
            "INVALID_IP",
        ),
        (
            d.RecordConsent("email", d.UNSUBSCRIBED, double_opt_in=True),
            "INVALID_DOUBLE_OPT_IN",
        ),
        (
            d.RecordConsent("email", d.UNSUBSCRIBED, occurred_at=T0 + timedelta(hours=1)),
            "INVALID_OCCUR_TIME",
        ),
    ],
)
def test_record_validation(cmd: d.RecordConsent, reason: str) -> None:
    with pytest.raises(Invalid) as info:
        d.validate_record(cmd, T0)
    assert reason_of(info) == reason


def test_validation_lists_every_problem_and_normalises() -> None:
    with pytest.raises(Invalid) as info:
        d.validate_record(d.RecordConsent("", "", d.Terms("", "x" * 300), d.Evidence("nope")), T0)
    assert [f for f, _, _ in info.value.violations] == ["channel", "state", "source", "evidence.ip"]
    ok = d.validate_record(
        d.RecordConsent(
            "sms",
            d.UNSUBSCRIBED,
            d.Terms("", " footer link "),
            d.Evidence("2001:DB8:0:0::1", " UA "),
        ),
        T0,
    )
    assert ok.terms.source == "footer link" and ok.evidence == d.Evidence("2001:db8::1", "UA")


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (d.Suppress("", "manual"), "CHANNEL_REQUIRED"),
        (d.Suppress("email", ""), "REASON_REQUIRED"),
        (d.Suppress("email", "#5"), "INVALID_REASON"),
        (d.Suppress("email", "manual", "n" * 501), "FIELD_TOO_LONG"),
    ],
)
def test_suppress_validation(cmd: d.Suppress, reason: str) -> None:
    with pytest.raises(Invalid) as info:
        d.validate_suppress(cmd)
    assert reason_of(info) == reason


def test_subscribe_unsubscribe_and_repeats_are_no_ops() -> None:
    c = Clerk()
    assert c.email.state == d.NEVER and c.email.effective_state(c.now) == d.NEVER
    [(t, data)] = c.record(d.SUBSCRIBED, evidence=d.Evidence("10.0.0.1", "UA"))
    assert t == d.GRANTED
    assert data == {
        "contact_id": CID,
        "channel": "email",
        "legal_basis": "consent",
        "source": "checkout",
        "policy_version": "v1",
        "evidence": {"ip": "10.0.0.1", "user_agent": "UA"},
    }
    assert c.email.state == d.SUBSCRIBED and c.email.terms.policy_version == "v1"
    assert c.record(d.SUBSCRIBED) == []  # identical: no event
    assert c.record(d.SUBSCRIBED, basis="consent", policy="v1") == []
    [(t, _)] = c.record(d.SUBSCRIBED, policy="v2")  # new terms: a new statement
    assert t == d.GRANTED and c.email.terms.policy_version == "v2"
    [(t, _)] = c.record(d.UNSUBSCRIBED, basis="")
    assert t == d.WITHDRAWN and c.email.state == d.UNSUBSCRIBED
    assert c.record(d.UNSUBSCRIBED, basis="") == []
    assert c.ledger.channel("sms").state == d.NEVER


def test_opting_out_before_ever_subscribing_is_recorded() -> None:
    c = Clerk()
    [(t, _)] = c.record(d.UNSUBSCRIBED, basis="")
    assert t == d.WITHDRAWN and c.email.state == d.UNSUBSCRIBED


def test_double_opt_in_confirm() -> None:
    c = Clerk()
    token = c.request()
    t, data = c.events[-1][:2]
    assert t == d.REQUESTED and data["token_sha256"] == d.token_sha256(token)
    assert data["expire_time"] == d.ts(T0 + TTL)
    assert token not in str(data)
    assert c.email.state == d.NEVER and c.email.effective_state(c.now) == d.PENDING
    [(t, data)] = c.confirm(token)
    assert t == d.CONFIRMED and data["policy_version"] == "v2" and data["source"] == "form"
    assert c.email.effective_state(c.now) == d.SUBSCRIBED and c.email.pending is None
    with pytest.raises(Precondition) as info:
        c.confirm(token)
    assert reason_of(info) == "TOKEN_ALREADY_USED"


def test_double_opt_in_expiry() -> None:
    c = Clerk()
    c.record(d.UNSUBSCRIBED, basis="")
    token = c.request()
    requested = c.now
    assert c.email.effective_state(requested + TTL - timedelta(seconds=2)) == d.PENDING
    # after the expiry the channel shows its stated consent again, with no event needed
    assert c.email.effective_state(requested + TTL) == d.UNSUBSCRIBED
    c.now = requested + TTL
    with pytest.raises(Precondition) as info:
        c.confirm(token)
    assert reason_of(info) == "TOKEN_EXPIRED"
    assert info.value.metadata["expire_time"] == d.ts(c.email.pending.expires_at)  # type: ignore[union-attr]


def test_a_new_request_or_statement_supersedes_a_token() -> None:
    c = Clerk()
    first = c.request()
    second = c.request()  # "resend the confirmation": a new token
    with pytest.raises(Precondition) as info:
        c.confirm(first)
    assert reason_of(info) == "TOKEN_SUPERSEDED"
    c.record(d.UNSUBSCRIBED, basis="")  # an explicit unsubscribe cancels the request
    assert c.email.effective_state(c.now) == d.UNSUBSCRIBED
    with pytest.raises(Precondition) as info:
        c.confirm(second)
    assert reason_of(info) == "TOKEN_SUPERSEDED"
    with pytest.raises(NotFound):
        c.confirm(d.make_token(CID, b"x" * 32))


def test_re_consent_keeps_a_subscribed_channel_subscribed_until_confirmed() -> None:
    c = Clerk()
    c.record(d.SUBSCRIBED, policy="v1")
    token = c.request()  # new terms (v2) with double opt-in
    assert c.email.effective_state(c.now) == d.SUBSCRIBED
    assert c.email.terms.policy_version == "v1" and c.email.open_request(c.now) is not None
    c.confirm(token)
    assert c.email.terms.policy_version == "v2"


def test_suppression_is_independent_of_consent() -> None:
    c = Clerk()
    c.record(d.SUBSCRIBED)
    [(t, data)] = c.apply(d.decide_suppress(c.ledger, d.Suppress("email", "hard_bounce", "550")))
    assert t == d.SUPPRESSED and data["reason"] == "hard_bounce" and data["note"] == "550"
    assert c.email.state == d.SUBSCRIBED and c.email.suppression is not None
    assert d.decide_suppress(c.ledger, d.Suppress("email", "hard_bounce")) == []
    [(t, _)] = c.apply(d.decide_suppress(c.ledger, d.Suppress("email", "complaint")))
    assert c.email.suppression.reason == "complaint"
    c.record(d.UNSUBSCRIBED, basis="")  # an unsubscribe does not lift the suppression
    assert c.email.suppression is not None
    c.record(d.SUBSCRIBED, policy="v3")
    assert c.email.suppression is not None and c.email.state == d.SUBSCRIBED
    [(t, _)] = c.apply(d.decide_unsuppress(c.ledger, d.Unsuppress("email", "fixed")))
    assert t == d.UNSUPPRESSED and c.email.suppression is None and c.email.state == d.SUBSCRIBED
    assert d.decide_unsuppress(c.ledger, d.Unsuppress("email")) == []


def test_tokens_round_trip_and_reject_garbage() -> None:
    secret = os.urandom(32)
    token = d.make_token(CID, secret)
    assert len(token) == 64 and d.token_contact(token) == CID
    assert all(ch.isalnum() or ch in "-_" for ch in token)
    for bad in ["", "abc", token + "A", token[:-1], token.replace(token[5], "+"), "é" * 64]:
        if bad == token:
            continue
        with pytest.raises(Invalid):
            d.token_contact(bad)


# --- properties -------------------------------------------------------------------------------

COMMANDS = st.lists(
    st.tuples(
        st.sampled_from(["sub", "unsub", "doi", "confirm", "suppress", "unsuppress", "wait"]),
        st.sampled_from(d.CHANNELS),
        st.sampled_from(["v1", "v2"]),
        st.sampled_from(d.REASONS),
    ),
    max_size=40,
)


def run(commands: list[tuple[str, str, str, str]], *, with_suppression: bool) -> list[d.Event]:
    ledger, now, tokens, out = d.Ledger(CID), T0, list[str](), list[d.Event]()
    for op, ch, policy, reason in commands:
        decided: list[d.Event] = []
        terms = d.Terms("consent", "s", policy)
        if op in ("sub", "doi", "unsub"):
            state = d.UNSUBSCRIBED if op == "unsub" else d.SUBSCRIBED
            token = d.make_token(CID, uuid.uuid4().bytes * 2)
            cmd = d.RecordConsent(ch, state, terms, double_opt_in=op == "doi")
            decided = d.decide_record(
                ledger, cmd, now=now, ttl=TTL, token_hash=d.token_sha256(token)
            )
            if decided and decided[0][0] == d.REQUESTED:
                tokens.append(token)
        elif op == "confirm" and tokens:
            with contextlib.suppress(Precondition):  # expired, used or superseded: nothing
                decided = d.decide_confirm(ledger, d.token_sha256(tokens[-1]), d.Evidence(), now)
        elif op == "suppress" and with_suppression:
            decided = d.decide_suppress(ledger, d.Suppress(ch, reason))
        elif op == "unsuppress" and with_suppression:
            decided = d.decide_unsuppress(ledger, d.Unsuppress(ch))
        elif op == "wait":
            now += TTL / 2
        for t, data in decided:
            ledger = d.evolve(ledger, t, data, now, ledger.version + 1)
            out.append((t, data))
        now += timedelta(seconds=1)
    return out


@settings(max_examples=200, deadline=None)
@given(COMMANDS)
def test_consent_decisions_do_not_depend_on_suppression(
    cmds: list[tuple[str, str, str, str]],
) -> None:
    with_s = [
        e for e in run(cmds, with_suppression=True) if e[0] not in (d.SUPPRESSED, d.UNSUPPRESSED)
    ]
    without = run(cmds, with_suppression=False)
    strip = [(t, {k: v for k, v in data.items() if k != "token_sha256"}) for t, data in with_s]
    assert strip == [
        (t, {k: v for k, v in data.items() if k != "token_sha256"}) for t, data in without
    ]


@settings(max_examples=200, deadline=None)
@given(COMMANDS)
def test_channel_fold_equals_ledger_fold_and_no_op_repeats(
    cmds: list[tuple[str, str, str, str]],
) -> None:
    events = run(cmds, with_suppression=True)
    at = [T0 + timedelta(seconds=i) for i in range(len(events))]
    ledger = d.fold(CID, [(t, data, at[i], i) for i, (t, data) in enumerate(events)])
    channels = {c: d.ChannelConsent(c) for c in d.CHANNELS}
    for i, (t, data) in enumerate(events):
        name = str(data["channel"])
        channels[name] = d.evolve_channel(channels[name], t, data, at[i], i)
        assert t in d.TYPES and data["contact_id"] == CID
    for c in d.CHANNELS:
        assert channels[c] == ledger.channel(c)
        # at most one open token per channel, and it is the channel's pending request
        open_ = [h for h, tok in ledger.tokens.items() if tok.channel == c and tok.status == "open"]
        pending = ledger.channel(c).pending
        assert open_ == ([pending.token_sha256] if pending else [])
    # stating the current state again never appends
    for c in d.CHANNELS:
        now = ledger.channel(c)
        if now.state in (d.SUBSCRIBED, d.UNSUBSCRIBED) and now.pending is None:
            cmd = d.RecordConsent(c, now.state, now.terms)
            assert d.decide_record(ledger, cmd, now=T0, ttl=TTL, token_hash="") == []


def test_only_a_live_unmerged_contact_gets_new_entries() -> None:
    reg = (d.CONTACT_REGISTERED, {"contact_id": CID})
    d.check_writable(CID, [reg])
    d.check_writable(CID, [reg, (d.PREFIX + "ContactArchived", {})])  # withdrawals must work
    with pytest.raises(NotFound):
        d.check_writable(CID, [])
    with pytest.raises(Precondition) as info:
        d.check_writable(CID, [reg, (d.CONTACT_ERASED, {})])
    assert reason_of(info) == "CONTACT_ERASED"
    merged = (d.CONTACT_MERGED, {"survivor_id": "s-1"})
    with pytest.raises(Precondition) as info:
        d.check_writable(CID, [reg, merged])
    assert reason_of(info) == "CONTACT_MERGED" and info.value.metadata == {"survivor_id": "s-1"}
    d.check_writable(CID, [reg, merged, (d.CONTACT_UNMERGED, {})])
