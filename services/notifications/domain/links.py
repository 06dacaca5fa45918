"""Click and open tracking in an email's HTML (pure): every ``<a href>`` to an http(s) URL is
pointed at ``<base>/c/<token>`` (the original URL recorded for that message and index), and an
open pixel ``<img src="<base>/o/<token>">`` is added before ``</body>`` (or at the end).

The HTML is read with the standard library's tokenizer (html.parser), not with patterns: tags
inside comments, ``<script>``, ``<style>`` and attribute values are not links; ``href`` values
are taken unescaped (``&amp;`` is ``&``), as a browser would follow them, and written back
escaped. Only the start tags of tracked links are rewritten; every other byte stays as written.
Left as written: ``mailto:``, ``tel:``, relative and ``#`` links, links already under the
tracking base (the unsubscribe URL), links marked ``data-crm-track="off"``, URLs over
``MAX_URL`` characters, and links after the ``MAX_LINKS``-th."""

from __future__ import annotations

import html
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from services.notifications.domain.tracking import MAX_LINKS, TrackingTokens

MAX_URL = 8192
OPT_OUT = "data-crm-track"


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    url: str


@dataclass(frozen=True, slots=True)
class Tracked:
    html: str
    links: tuple[Link, ...]


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def trackable(url: str, base: str) -> bool:
    """An absolute http(s) URL with a host, not already one of ours."""
    if len(url) > MAX_URL or url.startswith(base + "/"):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


class _Scanner(HTMLParser):
    """Records where each ``<a>`` start tag and the last ``</body>`` are."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[tuple[int, int], str, list[tuple[str, str | None]]]] = []
        self.body_end: tuple[int, int] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.anchors.append((self.getpos(), self.get_starttag_text() or "", attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self.getpos()


def _offsets(text: str) -> list[int]:
    """The offset of each line's start, lines as html.parser counts them (by ``\\n``)."""
    starts, at = [0], text.find("\n")
    while at != -1:
        starts.append(at + 1)
        at = text.find("\n", at + 1)
    return starts


def _start_tag(attrs: list[tuple[str, str | None]], url: str, closed: bool) -> str:
    parts = ["<a"]
    for name, value in attrs:
        if name == "href":
            value = url
        parts.append(f" {name}" if value is None else f' {name}="{html.escape(value)}"')
    return "".join(parts) + (" />" if closed else ">")


def track(source: str, message_id: str, tokens: TrackingTokens) -> Tracked:
    """``source`` with its links tracked and the open pixel added; the links recorded."""
    scanner = _Scanner()
    scanner.feed(source)
    scanner.close()
    lines = _offsets(source)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in order
    links: list[Link] = []
    for (line, col), raw, attrs in scanner.anchors:
        start = lines[line - 1] + col
        if not raw or source[start : start + len(raw)] != raw:
            continue  # the tokenizer and the text disagree: leave the tag alone
        values = dict(attrs)
        url = (values.get("href") or "").strip()
        if len(links) >= MAX_LINKS or (values.get(OPT_OUT) or "").lower() == "off":
            continue
        if not trackable(url, tokens.root):
            continue
        index = len(links)
        links.append(Link(index, url))
        closed = raw.rstrip().endswith("/>")
        new = _start_tag(attrs, tokens.click_url(message_id, index), closed)
        edits.append((start, start + len(raw), new))
    pixel = (
        f'<img src="{tokens.open_url(message_id)}" width="1" height="1" alt=""'
        ' style="display:block;border:0;width:1px;height:1px" />'
    )
    at = len(source)
    if scanner.body_end is not None:
        line, col = scanner.body_end
        at = lines[line - 1] + col
    edits.append((at, at, pixel))
    out, done = [], 0
    for start, end, new in sorted(edits, key=lambda e: (e[0], e[1])):
        out += [source[done:start], new]
        done = end
    out.append(source[done:])
    return Tracked("".join(out), tuple(links))
