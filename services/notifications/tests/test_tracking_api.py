"""The tracking endpoints over a real socket: the serve role built from its spec, its HTTP server
on a free port, contacts served for real beside it (the unsubscription is recorded there over
gRPC). Opens and clicks become events; a click goes only to the URL recorded for that message
and link; GET on the unsubscribe URL writes nothing; the POST withdraws the consent with its
evidence, once, and the next marketing message is skipped NO_CONSENT; bad tokens and bodies
are 4xx and write nothing; erasure takes the recorded links."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from crm.contacts.v1 import consent_pb2 as kpb
from crm.contacts.v1 import consent_pb2_grpc, contacts_pb2_grpc
from crm.contacts.v1 import contacts_pb2 as cpb
from crm.notifications.v1 import events_pb2 as epb
from crm.notifications.v1 import notifications_pb2 as pb
from crm.notifications.v1 import notifications_pb2_grpc
from services.contacts import spec as contacts_spec
from services.notifications import spec
from services.notifications.app import NotificationsApi
from services.notifications.domain.tracking import TrackingTokens
from services.notifications.domain.unsubscribe import Unsubscribe
from services.notifications.tests.conftest import Env
from services.notifications.tests.test_messages_api import _contact, _notifications_data
from services.orders import spec as orders_spec
from shared.eventstore.postgres import PostgresEventStore
from shared.testing.service_env import free_port, serving

BASE = "https://t.shop.example"  # what the emails say; the tests call the server's own port
SECRET = "tracking-test-secret"
TOKENS = TrackingTokens(BASE, SECRET.encode())
UNSUBSCRIBE = Unsubscribe(BASE, SECRET.encode())
MARKETING = epb.MESSAGE_KIND_MARKETING
HTML = (
    "<html><body><p>Hi {{ contact.first_name }}</p>"
    '<a href="https://shop.example/tea?who={{ contact.contact_id }}">tea</a>'
    '<a href="mailto:help@shop.example">help</a></body></html>'
)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@dataclass
class Tracked:
    env: Env
    http: aiohttp.ClientSession
    root: str  # http://127.0.0.1:<port>

    def url(self, emailed: str) -> str:
        assert emailed.startswith(BASE + "/"), emailed
        return self.root + emailed.removeprefix(BASE)


@pytest.fixture
async def tracked(dsn: str) -> AsyncIterator[Tracked]:
    store = await PostgresEventStore.connect(dsn, max_size=10)
    api = NotificationsApi(any_http_port=True)
    async with (
        serving(contacts_spec.SPEC, dsn, store=store) as contacts,
        serving(
            orders_spec.SPEC,
            dsn,
            store=store,
            settings={"contacts_target": contacts.target, "webhook_port": 0},
        ) as orders,
        serving(
            spec.SPEC,
            dsn,
            store=store,
            api=api,
            settings={
                "contacts_target": contacts.target,
                "orders_target": orders.target,
                "tracking_base_url": BASE,
                "tracking_secret": SECRET,
                "trusted_proxies": "127.0.0.1",  # the tests' client plays an Ingress
            },
        ) as s,
        aiohttp.ClientSession() as http,
    ):
        env = Env(
            notifications_pb2_grpc.NotificationsServiceStub(s.channel),
            store,
            s,
            contacts_pb2_grpc.ContactsServiceStub(contacts.channel),
            consent_pb2_grpc.ConsentServiceStub(contacts.channel),
            contacts,
        )
        yield Tracked(env, http, f"http://127.0.0.1:{api.http_port}")
    await store.close()


async def _template(env: Env) -> str:
    variant = epb.TemplateVariant(subject="News", text="Tea at https://shop.example", html=HTML)
    made = await env.stub.CreateTemplate(
        pb.CreateTemplateRequest(
            key=f"news-{uuid.uuid4().hex[:6]}",
            name="News",
            channel=epb.CHANNEL_EMAIL,
            variants=[variant],
        )
    )
    return str(made.template.template_id)


async def _send(env: Env, cid: str, tid: str, request_id: str) -> pb.Message:
    sent = await env.stub.SendMessage(
        pb.SendMessageRequest(
            contact_id=cid, template_id=tid, kind=MARKETING, request_id=request_id
        )
    )
    return sent.message


async def _emailed(env: Env, message_id: str) -> tuple[list[str], str]:
    """The tracked URLs (clicks, then the pixel) and the List-Unsubscribe URL of an email."""
    row = await env.store.pool.fetchrow(
        "SELECT html, headers FROM notifications_pipeline.outbox WHERE message_id = $1",
        uuid.UUID(message_id),
    )
    urls = [part.split('"', 1)[0] for part in row["html"].split(f'="{BASE}/')[1:]]
    [unsubscribe] = [v for n, v in json.loads(row["headers"]) if n == "List-Unsubscribe"]
    return [f"{BASE}/{u}" for u in urls], unsubscribe.split("<", 1)[1].split(">", 1)[0]


async def _facts(env: Env) -> int:
    """Events other than the audit trail's reads of personal data (reading a contact is one)."""
    return int(
        await env.store.pool.fetchval(
            "SELECT count(*) FROM eventstore.events WHERE type <> 'crm.audit.v1.PersonalDataRead'"
        )
    )


async def _types(env: Env, message_id: str) -> list[str]:
    events = await env.store.read_stream(f"message-{message_id}")
    return [e.type.rsplit(".", 1)[1] for e in events]


async def _consent(env: Env, cid: str) -> kpb.ChannelConsent:
    got = await env.consent.GetConsent(kpb.GetConsentRequest(contact_id=cid))
    [email] = [c for c in got.channels if c.channel == kpb.CHANNEL_EMAIL]
    return email


async def test_open_click_and_one_click_unsubscribe(tracked: Tracked) -> None:
    env, http = tracked.env, tracked.http
    cid = await _contact(env)
    tid = await _template(env)
    m = await _send(env, cid, tid, "first")
    assert m.decisions[0].outcome == epb.OUTCOME_SEND
    (click, pixel), unsubscribe = await _emailed(env, m.message_id)
    assert click.startswith(f"{BASE}/c/") and pixel.startswith(f"{BASE}/o/")
    assert unsubscribe.startswith(f"{BASE}/u/")
    for url in (click, pixel, unsubscribe):  # no personal data in the URLs
        assert cid not in url and "example.com" not in url and "Ada" not in url

    async with http.get(tracked.url(pixel)) as r:
        assert (r.status, r.content_type) == (200, "image/gif")
        assert (await r.read()).startswith(b"GIF89a")
    async with http.get(tracked.url(click), allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == f"https://shop.example/tea?who={cid}"
    assert await _types(env, m.message_id) == ["MessageDecided", "MessageOpened", "MessageClicked"]

    # GET shows a page with a button and writes nothing: link scanners fetch URLs
    written = await env.written()
    async with http.get(tracked.url(unsubscribe)) as r:
        assert r.status == 200 and r.content_type == "text/html"
        page = await r.text()
        assert '<form method="post"' in page and "example.com" not in page
    assert await env.written() == written
    assert (await _consent(env, cid)).state == kpb.CONSENT_STATE_SUBSCRIBED

    # RFC 8058: the mailbox POSTs List-Unsubscribe=One-Click
    headers = {
        "User-Agent": "Mailbox-Unsubscriber/2.0",
        "X-Forwarded-For": "192.0.2.66, 198.51.100.7, 127.0.0.1",  # the client wrote the first
    }
    async with http.post(tracked.url(unsubscribe), data=ONE_CLICK, headers=headers) as r:
        assert r.status == 200
    assert (await _consent(env, cid)).state == kpb.CONSENT_STATE_UNSUBSCRIBED
    history = await env.consent.GetConsentHistory(kpb.GetConsentHistoryRequest(contact_id=cid))
    last = history.entries[-1]
    assert (last.state, last.source) == (kpb.CONSENT_STATE_UNSUBSCRIBED, "list-unsubscribe")
    # the nearest address the trusted proxies did not add
    assert (last.evidence.ip, last.evidence.user_agent) == ("198.51.100.7", headers["User-Agent"])
    assert (await _types(env, m.message_id))[-1] == "MessageUnsubscribed"

    # a repeated POST (the page's button too) changes nothing more
    count = await _facts(env)
    async with http.post(tracked.url(unsubscribe), data={"unsubscribe": "confirm"}) as r:
        assert r.status == 200
    multipart = aiohttp.FormData(ONE_CLICK, default_to_multipart=True)  # RFC 8058 allows both
    async with http.post(tracked.url(unsubscribe), data=multipart) as r:
        assert r.status == 200
    assert await _facts(env) == count

    # the next marketing message is skipped for consent
    again = await _send(env, cid, tid, "second")
    assert (again.decisions[0].outcome, again.decisions[0].reason) == (
        epb.OUTCOME_SKIP,
        "NO_CONSENT",
    )
    # GetMessage shows the tracking steps
    await env.settle()
    got = await env.stub.GetMessage(pb.GetMessageRequest(message_id=m.message_id))
    steps = [s.WhichOneof("step") for s in got.message.delivery]
    assert steps == ["opened", "clicked", "unsubscribed"]
    assert got.message.delivery[1].clicked.host == "shop.example"
    assert got.message.delivery[2].unsubscribed.source == "list-unsubscribe"
    assert got.message.status == pb.MESSAGE_STATUS_QUEUED


async def test_forged_and_unknown_links_are_refused_and_write_nothing(tracked: Tracked) -> None:
    env, http = tracked.env, tracked.http
    cid = await _contact(env)
    m = await _send(env, cid, await _template(env), "first")
    (click, pixel), unsubscribe = await _emailed(env, m.message_id)
    other = str(uuid.uuid4())
    forged = TrackingTokens(BASE, b"guessed").click_token(m.message_id, 0)
    written, events = await env.written(), await _facts(env)
    refused = {
        f"/c/{forged}": 404,  # signed with another secret
        f"/c/{TOKENS.click_token(m.message_id, 1)}": 404,  # no such link in that message
        f"/c/{TOKENS.click_token(other, 0)}": 404,  # no such message
        f"/c/{TOKENS.open_token(m.message_id)}": 404,  # a pixel's token
        f"/c/{click.rsplit('/', 1)[1][:-2]}": 404,  # cut short
        "/c/": 404,
        f"/o/{TOKENS.click_token(m.message_id, 0)}": 404,
        f"/o/{TOKENS.open_token(other)}": 404,
        "/o/%00%ff": 404,
        f"/u/{TOKENS.open_token(m.message_id)}": 404,
        f"/u/{UNSUBSCRIBE.token(other)}": 404,
    }
    for path, status in refused.items():
        async with http.get(tracked.root + path, allow_redirects=False) as r:
            assert r.status == status, path
            assert "Location" not in r.headers, path
    async with http.head(tracked.url(pixel)) as r:
        assert r.status == 405  # a HEAD is no open
    bad_posts = [
        (UNSUBSCRIBE.token(other), {"data": ONE_CLICK}, 404),
        (unsubscribe.rsplit("/", 1)[1], {"data": {"List-Unsubscribe": "yes"}}, 400),
        (unsubscribe.rsplit("/", 1)[1], {"data": b""}, 400),
        (unsubscribe.rsplit("/", 1)[1], {"json": {"List-Unsubscribe": "One-Click"}}, 400),
        (unsubscribe.rsplit("/", 1)[1], {"data": {"List-Unsubscribe": "One-Click" * 500}}, 400),
    ]
    for token, body, status in bad_posts:
        async with http.post(f"{tracked.root}/u/{token}", **body) as r:  # type: ignore[arg-type]
            assert r.status == status, body
    assert (await env.written(), await _facts(env)) == (written, events)
    assert (await _consent(env, cid)).state == kpb.CONSENT_STATE_SUBSCRIBED


async def test_erasure_takes_the_recorded_links(tracked: Tracked) -> None:
    env, http = tracked.env, tracked.http
    cid = await _contact(env, email="erin@example.com", first_name="Erin")
    m = await _send(env, cid, await _template(env), "first")
    (click, _), unsubscribe = await _emailed(env, m.message_id)
    async with http.get(tracked.url(click), allow_redirects=False) as r:
        assert r.status == 302
    before = await _notifications_data(env)
    rendered = f"shop.example/tea?who={cid}"  # the recorded URL (the contact's id in it)
    assert any(rendered in dump for dump in before)
    await env.contacts.EraseContact(cpb.EraseContactRequest(contact_id=cid, reason="art. 17"))
    await env.settle()
    for dump in await _notifications_data(env):
        assert "erin@example.com" not in dump and "Erin" not in dump
        assert rendered not in dump, dump[:300]
    async with http.get(tracked.url(click), allow_redirects=False) as r:
        assert r.status == 404 and "Location" not in r.headers
    events = await _facts(env)
    async with http.post(tracked.url(unsubscribe), data=ONE_CLICK) as r:
        assert r.status == 410
    assert await _facts(env) == events


async def test_contacts_away_is_503_and_writes_nothing(tracked: Tracked, dsn: str) -> None:
    env, http = tracked.env, tracked.http
    cid = await _contact(env)
    m = await _send(env, cid, await _template(env), "first")
    _, unsubscribe = await _emailed(env, m.message_id)
    away = NotificationsApi(any_http_port=True)  # a replica whose contacts cannot be reached
    settings = {
        "contacts_target": f"127.0.0.1:{free_port()}",
        "tracking_base_url": BASE,
        "tracking_secret": SECRET,
    }
    async with serving(
        spec.SPEC, dsn, store=env.store, api=away, settings=settings, projections=[]
    ):
        facts = await _facts(env)
        path = unsubscribe.removeprefix(BASE)
        async with http.post(f"http://127.0.0.1:{away.http_port}{path}", data=ONE_CLICK) as r:
            assert (r.status, r.headers["Retry-After"]) == (503, "60")
        assert await _facts(env) == facts
    assert (await _consent(env, cid)).state == kpb.CONSENT_STATE_SUBSCRIBED
    async with http.post(tracked.url(unsubscribe), data=ONE_CLICK) as r:  # the mailbox retries
        assert r.status == 200
    assert (await _consent(env, cid)).state == kpb.CONSENT_STATE_UNSUBSCRIBED


async def test_the_intake_is_served_beside_tracking(tracked: Tracked) -> None:
    """The serve role mounts the intake at /intake/ on the same HTTP server: an unsigned report
    is refused by the intake (no INTAKE_SECRET here: 401), not unknown (404)."""
    for path in ("/intake/bounces", "/intake/bounces/dsn", "/intake/complaints"):
        async with tracked.http.post(tracked.root + path, data=b"{}") as r:
            assert r.status == 401, path
            assert r.content_type == "application/json"
    async with tracked.http.post(tracked.root + "/intake/sms/status", data={"a": "b"}) as r:
        assert r.status == 401, await r.text()
