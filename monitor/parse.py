"""Pure: a fetched document (bytes + headers) -> ParsedFeed. The only module importing feedparser.

feedparser never fetches here: it is handed bytes. JSON Feed 1.0/1.1, which feedparser cannot
read, is parsed with the standard json module.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
from selectolax.lexbor import LexborHTMLParser

from monitor.errors import FeedError
from monitor.models import Article, ParsedFeed
from monitor.text import canonical_url, collapse, html_to_text, redact_url

# Text is matched as plain text, so feedparser's HTML sanitizer and URI resolution are wasted work.
feedparser.SANITIZE_HTML = False
feedparser.RESOLVE_RELATIVE_URIS = False

_GUID_MAX = 1000  # longer "ids" are content, not identifiers


def parse_feed(
    body: bytes, *, feed: str, url: str, headers: Mapping[str, str], max_entries: int
) -> ParsedFeed:
    """Parse a feed document; raise FeedError when it is not a feed at all."""
    if not body.strip():
        raise FeedError("the server sent an empty document")
    if _looks_like_json(body, headers):
        return _parse_json_feed(body, feed=feed, url=url, max_entries=max_entries)
    body, repaired = _repair_utf8(body, headers)
    parsed = feedparser.parse(body, response_headers=dict(headers))
    entries: list[Any] = list(parsed.entries)
    warnings: list[str] = []
    if repaired:
        warnings.append(f"{repaired} invalid UTF-8 byte sequences replaced; read the rest as UTF-8")
    # feedparser names the format it recognised; no version and no entries means not a feed.
    if not entries and not parsed.get("version"):
        if _looks_like_html(body):
            alternate = _alternate_feed_url(body, url)
            hint = f"the page links to the feed {alternate}; use that URL" if alternate else None
            raise FeedError(f"{redact_url(url)} is an HTML page, not a feed", hint)
        reason = str(parsed.get("bozo_exception") or "no feed elements found")
        raise FeedError(f"the document is not a readable feed ({reason})")
    if parsed.get("bozo"):
        warnings.append(
            f"the document is not well-formed ({parsed.get('bozo_exception')}); "
            "read what could be read"
        )
    ttl = _int_or_none(parsed.feed.get("ttl"))
    articles = _dedupe_keys([_article(e, feed, url) for e in entries])
    return ParsedFeed(
        title=collapse(html_to_text(parsed.feed.get("title", ""))),
        entries=tuple(articles[:max_entries]),
        language=parsed.feed.get("language") or None,
        ttl_minutes=ttl,
        warnings=tuple(warnings),
        skipped_keys=tuple(a.key for a in articles[max_entries:]),
    )


_XML_ENCODING = re.compile(rb"""^[^<]*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)""")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._-]+)", re.IGNORECASE)


def _repair_utf8(body: bytes, headers: Mapping[str, str]) -> tuple[bytes, int]:
    """A UTF-8 document with a few invalid bytes gets them replaced (and their count back).

    Otherwise feedparser decodes the whole document as windows-1252 and every non-ASCII letter
    becomes mojibake that no rule matches. Left alone: valid UTF-8, UTF-16/32, documents that
    declare another encoding, and ones that are mostly not UTF-8 (Latin-1 without a prolog)."""
    try:
        body.decode("utf-8")
        return body, 0
    except UnicodeDecodeError:
        pass
    if body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body[:4]:
        return body, 0
    declared = _CHARSET.search(headers.get("content-type", "")) or _XML_ENCODING.match(body[:500])
    if declared:
        name = declared[1].decode("ascii") if isinstance(declared[1], bytes) else declared[1]
        if name.lower().replace("_", "-") not in ("utf-8", "utf8"):
            return body, 0
    text = body.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    good = sum(1 for char in text if char > "\x7f") - bad
    if good <= bad:
        return body, 0
    return text.encode("utf-8"), bad


def _article(entry: Any, feed: str, base: str) -> Article:
    title = html_to_text(entry.get("title", "") or "")
    parts: list[str] = []
    for raw in [entry.get("summary", "")] + [c.get("value", "") for c in entry.get("content", [])]:
        text = html_to_text(raw or "")
        if text and text not in parts:
            parts.append(text)
    # feedparser copies a permalink GUID into `link` (without `links`); only a real link element
    # may be relative, so a GUID like "1234" never becomes a made-up URL.
    link = _link(base if entry.get("links") else "", entry.get("link"))
    # dict.get: FeedParserDict.get("updated_parsed") warns about its deprecated fallback.
    published = _time(dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed"))
    categories = tuple(
        collapse(t.get("term") or t.get("label") or "") for t in entry.get("tags", []) or []
    )
    return Article(
        feed=feed,
        key=_identity(entry.get("id"), link, title, " ".join(parts)),
        title=title,
        link=link,
        text=" ".join(parts),
        author=collapse(entry.get("author", "") or ""),
        categories=tuple(c for c in categories if c),
        published_at=published,
    )


def _link(base: str, href: Any) -> str | None:
    """The canonical http(s) link; a relative one is resolved against the document's URL."""
    if not isinstance(href, str) or not href.strip():
        return None
    return canonical_url(urljoin(base, href.strip()))


def _identity(guid: Any, link: str | None, title: str, text: str) -> str:
    """Trusted GUID, else canonical link, else a hash of title and text."""
    if isinstance(guid, str) and guid.strip() and len(guid) <= _GUID_MAX:
        return "guid:" + guid.strip()
    if link:
        return "link:" + link
    return "hash:" + hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:32]


def _dedupe_keys(articles: list[Article]) -> list[Article]:
    """A GUID shared by different entries of one document is not trustworthy: fall back for them."""
    counts = Counter(a.key for a in articles)
    result: list[Article] = []
    seen: set[str] = set()
    for article in articles:
        if counts[article.key] > 1:
            key = _identity(None, article.link, article.title, article.text)
            article = Article(**{**article.__dict__, "key": key})
        if article.key in seen:
            continue  # the same entry twice in one document
        seen.add(article.key)
        result.append(article)
    return result


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, TypeError):
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _looks_like_json(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = headers.get("content-type", "").lower()
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    return start == b"{" or ("json" in content_type and start != b"<")


def _looks_like_html(body: bytes) -> bool:
    head = body[:2048].lower()
    return b"<html" in head or b"<!doctype html" in head


def _alternate_feed_url(body: bytes, url: str) -> str | None:
    tree = LexborHTMLParser(body[:1_000_000].decode("utf-8", errors="replace"))
    for node in tree.css("link[rel~=alternate]"):
        kind = (node.attributes.get("type") or "").lower()
        href = node.attributes.get("href")
        if href and any(k in kind for k in ("rss", "atom", "feed+json", "xml")):
            return urljoin(url, href)
    return None


def _parse_json_feed(body: bytes, *, feed: str, url: str, max_entries: int) -> ParsedFeed:
    try:
        document = json.loads(body.decode("utf-8-sig", errors="replace"))
    except ValueError as exc:
        raise FeedError(f"the JSON document is not valid JSON ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise FeedError("the JSON document is not a JSON Feed (no items list)")
    items = [i for i in document["items"] if isinstance(i, dict)]
    articles = _dedupe_keys([_json_article(i, feed, url) for i in items])
    return ParsedFeed(
        title=collapse(_str(document.get("title"))),
        entries=tuple(articles[:max_entries]),
        language=_str(document.get("language")) or None,
        skipped_keys=tuple(a.key for a in articles[max_entries:]),
    )


def _json_article(item: dict[str, Any], feed: str, base: str) -> Article:
    title = html_to_text(_str(item.get("title")))
    parts = [html_to_text(_str(item.get(k))) for k in ("summary", "content_text", "content_html")]
    text = " ".join(dict.fromkeys(p for p in parts if p))
    link = _link(base, item.get("url")) or _link(base, item.get("external_url"))
    authors = item.get("authors") or (
        [item["author"]] if isinstance(item.get("author"), dict) else []
    )
    author = ", ".join(
        _str(a.get("name")) for a in authors if isinstance(a, dict) and a.get("name")
    )
    tags = item.get("tags") if isinstance(item.get("tags"), list) else []
    return Article(
        feed=feed,
        key=_identity(_str(item.get("id")) or None, link, title, text),
        title=title,
        link=link,
        text=text,
        author=collapse(author),
        categories=tuple(collapse(_str(t)) for t in _as_list(tags) if _str(t).strip()),
        published_at=_iso_time(_str(item.get("date_published") or item.get("date_modified"))),
    )


def _str(value: Any) -> str:
    """A JSON string or number as text; any other type (list, object, bool) is a bad value: ""."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _as_list(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list) else []


def _iso_time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
