"""Tracking's application on a real store and the pipeline's real tables, contacts faked behind
its ports and a movable clock: links recorded with the decision, the dedup window of opens and
clicks, and an unsubscription's effects (once per subscription, whatever the retries)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

from services.notifications.adapters.tracking_tables import PostgresLinks
from services.notifications.application.tracking import (
    ONE_CLICK,
    PAGE,
    Evidence,
    Result,
    Tracking,
)
from services.notifications.domain import policy, tracking
from services.notifications.domain.unsubscribe import Unsubscribe
from services.notifications.domain.variant import EMAIL, Variant
from services.notifications.tests.pipeline_env import ADA, Pipe

BASE = "https://t.shop.example"
TOKENS = tracking.TrackingTokens(BASE, b"secret")
UNSUBSCRIBE = Unsubscribe(BASE, b"secret")
HTML = (
    '<p>Hi {{ contact.first_name }} <a href="https://shop.example/tea?c={{ contact.contact_id }}">'
    'tea</a> <a href="mailto:help@shop.example">help</a></p>'
)
SEEN = Evidence("192.0.2.7", "Mail/1.0")


@dataclass
class FakeLedger:
    """Contacts' RecordConsent: once per request id, the consent then withdrawn."""

    pipe: Pipe
    calls: list[tuple[str, str, str, Evidence, str]] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    async def withdraw(
        self, contact_id: str, channel: str, source: str, evidence: Evidence, request_id: str
    ) -> bool:
        self.calls.append((contact_id, channel, source, evidence, request_id))
        if request_id in self.done:
            return True  # the first answer, as contacts replays it
        self.done.add(request_id)
        was = (await self.pipe.contacts.consent(contact_id, channel)).state
        self.pipe.contacts.subscribe(contact_id, channel, "CONSENT_STATE_UNSUBSCRIBED")
        return was != "CONSENT_STATE_UNSUBSCRIBED"


def tracking_of(pipe: Pipe, ledger: FakeLedger) -> Tracking:
    pipe.messages.pipeline = replace(pipe.messages.pipeline, tracking=TOKENS)
    links = PostgresLinks(pipe.store.pool)
    return Tracking(pipe.store, links, pipe.contacts, ledger, TOKENS, UNSUBSCRIBE, pipe.clock)


async def sent_with_links(pipe: Pipe, kind: str = policy.MARKETING) -> str:
    t = await pipe.templates.create(
        "news",
        EMAIL,
        "News",
        [Variant("", subject="Hi", text="Tea: https://shop.example", html=HTML)],
    )
    return (await pipe.send(t, kind=kind)).message_id


async def _types(pipe: Pipe, message_id: str) -> list[str]:
    return [e.type.rsplit(".", 1)[1] for e in await pipe.events(message_id)]


async def test_links_are_recorded_with_the_decision(pipe: Pipe) -> None:
    track = tracking_of(pipe, FakeLedger(pipe))
    pipe.contacts.add()
    mid = await sent_with_links(pipe)
    [row] = await pipe.rows("outbox")
    assert "https://shop.example/tea" not in row["html"] and f"{BASE}/c/" in row["html"]
    assert "mailto:help@shop.example" in row["html"] and f"{BASE}/o/" in row["html"]
    assert row["text"] == "Tea: https://shop.example"  # the text part keeps the original URLs
    [link] = await pipe.store.pool.fetch("SELECT * FROM notifications_pipeline.links")
    assert (str(link["message_id"]), link["link"], str(link["contact_id"])) == (mid, 0, ADA)
    assert link["url"] == f"https://shop.example/tea?c={ADA}"
    assert await track.click(TOKENS.click_token(mid, 0)) == (Result.RECORDED, link["url"])
    assert await track.click(TOKENS.click_token(mid, 1)) == (Result.UNKNOWN, "")


async def test_sms_and_email_without_html_are_not_tracked(pipe: Pipe) -> None:
    tracking_of(pipe, FakeLedger(pipe))
    pipe.contacts.add()
    await pipe.send(await pipe.template("plain"))
    [row] = await pipe.rows("outbox")
    assert row["html"] == "" and await pipe.rows("links") == []


async def test_opens_and_clicks_count_once_per_minute(pipe: Pipe) -> None:
    track = tracking_of(pipe, FakeLedger(pipe))
    pipe.contacts.add()
    mid = await sent_with_links(pipe)
    opened = TOKENS.open_token(mid)
    assert await track.open(opened) == Result.RECORDED
    assert await track.open(opened) == Result.REPEAT
    assert (await track.click(TOKENS.click_token(mid, 0)))[0] == Result.RECORDED
    assert (await track.click(TOKENS.click_token(mid, 0)))[0] == Result.REPEAT
    pipe.clock.advance(timedelta(minutes=1))
    assert await track.open(opened) == Result.RECORDED
    assert await _types(pipe, mid) == [
        "MessageDecided",
        "MessageOpened",
        "MessageClicked",
        "MessageOpened",
    ]
    clicked = (await pipe.events(mid))[2].data
    assert clicked == {"message_id": mid, "link": 0, "host": "shop.example"}
    state = await pipe.messages.get(mid)
    assert state.status == "MESSAGE_STATUS_QUEUED"  # tracking leaves the status as it was
    assert [t for _, t, _ in state.delivery] == [tracking.OPENED, tracking.CLICKED, tracking.OPENED]


async def test_an_unsubscription_happens_once_per_subscription(pipe: Pipe) -> None:
    ledger = FakeLedger(pipe)
    track = tracking_of(pipe, ledger)
    pipe.contacts.add()
    mid = await sent_with_links(pipe)
    token = UNSUBSCRIBE.token(mid)
    assert await track.unsubscribable(token) == Result.RECORDED  # the page: nothing written
    assert ledger.calls == [] and await _types(pipe, mid) == ["MessageDecided"]
    assert await track.unsubscribe_by(token, ONE_CLICK, SEEN) == Result.RECORDED
    assert await track.unsubscribe_by(token, PAGE, SEEN) == Result.REPEAT
    assert [c[:4] for c in ledger.calls] == [(ADA, EMAIL, ONE_CLICK, SEEN)]
    assert (await pipe.events(mid))[-1].data == {
        "message_id": mid,
        "contact_id": ADA,
        "channel": EMAIL,
        "source": ONE_CLICK,
        "changed": True,
    }
    # the next marketing message is not sent
    pipe.clock.advance(timedelta(days=2))
    again = await pipe.send(await pipe.templates.get(key="news"), request_id="again")
    assert again.last_decision["reason"] == policy.NO_CONSENT
    # subscribed again, the same link unsubscribes again
    pipe.contacts.subscribe(ADA, EMAIL)
    assert await track.unsubscribe_by(token, PAGE, SEEN) == Result.RECORDED
    assert len({c[4] for c in ledger.calls}) == 2
    assert (await _types(pipe, mid)).count("MessageUnsubscribed") == 2


async def test_a_retry_after_a_crash_between_contacts_and_the_event_has_one_effect(
    pipe: Pipe,
) -> None:
    ledger = FakeLedger(pipe)
    track = tracking_of(pipe, ledger)
    pipe.contacts.add()
    mid = await sent_with_links(pipe)
    token = UNSUBSCRIBE.token(mid)
    # contacts recorded the withdrawal, then the process died before the event
    await ledger.withdraw(ADA, EMAIL, ONE_CLICK, SEEN, f"unsubscribe:{mid}:0")
    assert await track.unsubscribe_by(token, ONE_CLICK, SEEN) == Result.RECORDED
    assert len(ledger.done) == 1
    assert (await _types(pipe, mid)).count("MessageUnsubscribed") == 1


async def test_bad_tokens_and_other_messages_write_nothing(pipe: Pipe) -> None:
    ledger = FakeLedger(pipe)
    track = tracking_of(pipe, ledger)
    pipe.contacts.add()
    mid = await sent_with_links(pipe)
    other = "0b0e7c9a-4d53-4b0f-9a55-1c8f9d2e3f41"  # signed, but no such message
    before = await pipe.store.head_position()
    assert await track.open(TOKENS.open_token(other)) == Result.UNKNOWN
    assert await track.open(TOKENS.click_token(mid, 0)) == Result.UNKNOWN
    assert await track.click(TOKENS.open_token(mid)) == (Result.UNKNOWN, "")
    assert await track.click(TOKENS.click_token(other, 0)) == (Result.UNKNOWN, "")
    assert await track.unsubscribe_by(TOKENS.open_token(mid), PAGE, SEEN) == Result.UNKNOWN
    assert await track.unsubscribe_by(UNSUBSCRIBE.token(other), PAGE, SEEN) == Result.UNKNOWN
    assert await track.unsubscribable("nonsense") == Result.UNKNOWN
    assert await pipe.store.head_position() == before and ledger.calls == []


async def test_a_contact_erased_since_is_gone(pipe: Pipe) -> None:
    ledger = FakeLedger(pipe)
    track = tracking_of(pipe, ledger)
    pipe.contacts.add()
    mid = await sent_with_links(pipe)
    pipe.contacts.add(erased=True)
    assert await track.unsubscribe_by(UNSUBSCRIBE.token(mid), PAGE, SEEN) == Result.GONE
    assert ledger.calls == [] and await _types(pipe, mid) == ["MessageDecided"]
