"""Tracking, pure: the signed tokens (each for its own use, none forgeable without the secret,
no personal data) and the link rewriting of an email's HTML (html.parser, not patterns)."""

from __future__ import annotations

import html
import uuid
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st

from services.notifications.domain import links, tracking
from services.notifications.domain.unsubscribe import Unsubscribe

BASE = "https://t.shop.example"
TOKENS = tracking.TrackingTokens(BASE + "/", b"secret")
MID = "6f1c0e2a-1b7d-4c55-9a0e-3e2d1c4b5a69"


def _hrefs(text: str) -> list[str]:
    """Every <a href> and <img src> of ``text``, as a browser reads them."""
    found: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            want = {"a": "href", "img": "src"}.get(tag)
            found.extend(v or "" for k, v in attrs if k == want)

    p = P()
    p.feed(text)
    p.close()
    return found


def _token(url: str, kind: str) -> str:
    assert url.startswith(f"{BASE}/{kind}/"), url
    return url.rsplit("/", 1)[1]


@given(st.uuids(), st.integers(0, tracking.MAX_LINKS - 1))
def test_tokens_name_their_message_and_link_and_nothing_else(mid: uuid.UUID, index: int) -> None:
    m = str(mid)
    assert TOKENS.opened(TOKENS.open_token(m)) == m
    assert TOKENS.clicked(TOKENS.click_token(m, index)) == (m, index)
    # each token is signed for its own use only
    assert TOKENS.clicked(TOKENS.open_token(m)) is None
    assert TOKENS.opened(TOKENS.click_token(m, index)) is None
    unsubscribe = Unsubscribe(BASE, b"secret")
    assert TOKENS.opened(unsubscribe.token(m)) is None
    assert unsubscribe.message_of(TOKENS.open_token(m)) is None
    # another secret signs other tokens
    other = tracking.TrackingTokens(BASE, b"other")
    assert other.opened(TOKENS.open_token(m)) is None
    assert other.clicked(TOKENS.click_token(m, index)) is None
    # URL-safe, short
    token = TOKENS.click_token(m, index)
    assert len(token) < 64 and all(c.isalnum() or c in "-_." for c in token)


@given(st.uuids(), st.integers(0, 10), st.integers(0, 60), st.characters(codec="ascii"))
def test_a_changed_token_is_refused(mid: uuid.UUID, index: int, at: int, c: str) -> None:
    token = TOKENS.click_token(str(mid), index)
    at %= len(token)
    changed = token[:at] + c + token[at + 1 :]
    # refused, or (a change in base64's unused bits) the very same message and link: a changed
    # token never names another message or link
    assert TOKENS.clicked(changed) in (None, (str(mid), index))


@given(st.text(max_size=80))
def test_any_text_as_a_token_is_refused_without_error(text: str) -> None:
    assert TOKENS.opened(text) is None
    assert TOKENS.clicked(text) is None


def test_links_are_tracked_and_the_rest_left_as_written() -> None:
    source = (
        "<html><body>\r\n<p>Hi <a class=x href='https://shop.example/a?x=1&amp;y=2'>shop</a>\n"
        '<!-- <a href="https://comment.example"> -->\n'
        "<script>var s = '<a href=\"https://script.example\">';</script>\n"
        "<A HREF=HTTP://Up.Example/P>up</A> <a href='mailto:help@shop.example'>m</a>\n"
        f'<a href="{BASE}/u/abc">unsubscribe</a><a href="/relative">r</a><a href="#top">t</a>\n'
        '<a href="https://off.example" data-crm-track="off">off</a><a name="x">no href</a>\n'
        '<a href="  https://spaced.example/  " title="a &quot;b&quot;">s</a>\n'
        '<p title="<a href=https://attr.example>">p</p></body></html>'
    )
    tracked = links.track(source, MID, TOKENS)
    assert [(x.index, x.url) for x in tracked.links] == [
        (0, "https://shop.example/a?x=1&y=2"),
        (1, "HTTP://Up.Example/P"),
        (2, "https://spaced.example/"),
    ]
    hrefs = _hrefs(tracked.html)
    clicks = [TOKENS.clicked(_token(h, "c")) for h in hrefs if h.startswith(f"{BASE}/c/")]
    assert clicks == [(MID, 0), (MID, 1), (MID, 2)]
    for kept in ("mailto:help@shop.example", f"{BASE}/u/abc", "/relative", "#top"):
        assert kept in hrefs
    assert "https://off.example" in hrefs
    for untouched in ("comment.example", "script.example", "attr.example"):
        assert untouched in tracked.html
    assert 'class="x"' in tracked.html and 'title="a &quot;b&quot;"' in tracked.html
    # the pixel goes before </body>, once
    pixel = [h for h in hrefs if h.startswith(f"{BASE}/o/")]
    assert [TOKENS.opened(_token(h, "o")) for h in pixel] == [MID]
    assert tracked.html.index("/o/") < tracked.html.index("</body>")
    # what is outside the rewritten tags is byte for byte the same
    assert tracked.html.startswith("<html><body>\r\n<p>Hi <a ")
    assert '<p title="<a href=https://attr.example>">p</p><img src=' in tracked.html
    assert tracked.html.endswith(" /></body></html>")


def test_html_without_body_gets_the_pixel_at_the_end() -> None:
    tracked = links.track('<p><a href="https://x.example">x</a>', MID, TOKENS)
    assert tracked.html.startswith('<p><a href="https://t.shop.example/c/')
    assert tracked.html.endswith(" />") and "/o/" in tracked.html.rsplit("<img", 1)[1]
    assert links.track("", MID, TOKENS).links == ()


def test_broken_html_never_fails_and_links_beyond_the_limit_stay() -> None:
    for source in ("<a href=", "<a href='https://x.example'", "</body><body></", "<<a>>&#xZZ;"):
        links.track(source, MID, TOKENS)
    many = "".join(
        f'<a href="https://x.example/{i}">{i}</a>' for i in range(tracking.MAX_LINKS + 5)
    )
    tracked = links.track(many, MID, TOKENS)
    assert len(tracked.links) == tracking.MAX_LINKS
    assert 'href="https://x.example/1004"' in tracked.html


URLS = st.builds(
    lambda host, path: f"https://{host}.example/{path}",
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30),
)


@given(st.lists(st.tuples(URLS, st.text(max_size=20)), max_size=8))
def test_every_tracked_link_leads_to_its_own_url(pairs: list[tuple[str, str]]) -> None:
    source = "".join(
        f'<p>{html.escape(text)}<a href="{html.escape(url)}">{html.escape(text)}</a></p>'
        for url, text in pairs
    )
    tracked = links.track(source, MID, TOKENS)
    recorded = {x.index: x.url for x in tracked.links}
    hrefs = [h for h in _hrefs(tracked.html) if h.startswith(f"{BASE}/c/")]
    followed = []
    for h in hrefs:
        named = TOKENS.clicked(_token(h, "c"))
        assert named is not None and named[0] == MID
        followed.append(recorded[named[1]])
    assert followed == [url.strip() for url, _ in pairs]
    assert all(links.host_of(u).endswith(".example") for u in followed)


@given(
    st.text(
        alphabet=st.sampled_from(list('<>a href="https://x.example/" =\'!-/body&;#')), max_size=200
    )
)
def test_any_markup_is_read_without_error_and_only_http_links_are_recorded(source: str) -> None:
    tracked = links.track(source, MID, TOKENS)
    assert all(links.trackable(x.url, BASE) for x in tracked.links)
    assert [x.index for x in tracked.links] == list(range(len(tracked.links)))
    assert tracked.html.count(f"{BASE}/o/") == source.count(f"{BASE}/o/") + 1


def test_events_hold_no_url() -> None:
    _, data = tracking.clicked(MID, 3, links.host_of("https://Shop.example/c?email=ada@x.example"))
    assert data == {"message_id": MID, "link": 3, "host": "shop.example"}
