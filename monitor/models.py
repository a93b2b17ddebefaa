"""Frozen, keyword-only dataclasses shared by every layer. No I/O.

Times are aware UTC datetimes named *_at; durations are timedelta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, kw_only=True)
class Article:
    """One feed entry as plain text, ready for matching and storing."""

    feed: str  # the feed's config name
    key: str  # identity within the feed: trusted GUID, else canonical link, else content hash
    title: str  # plain text, whitespace collapsed, no CR/LF
    link: str | None  # canonical http(s) link, or None
    text: str  # plain text of the summary and every content part
    author: str = ""
    categories: tuple[str, ...] = ()
    published_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Hit:
    """Where one query term matched: `field` is title, text, author, category, feed or url;
    start/end are character offsets into that field's plain text."""

    term: str
    field: str
    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class ParsedFeed:
    """What parse.py makes of a document."""

    title: str
    entries: tuple[Article, ...]
    language: str | None = None
    ttl_minutes: int | None = None  # RSS <ttl>, a server hint that may lengthen the interval
    warnings: tuple[str, ...] = ()
    # Entries beyond max_entries: never processed, but remembered as seen so they can never
    # alert later (when the feed shrinks or reorders).
    skipped_keys: tuple[str, ...] = ()
    # The document is an HTML page rather than a feed; the feed URL it links to, if any.
    html_page: bool = False
    alternate_url: str | None = None


@dataclass(frozen=True, kw_only=True)
class RuleMatch:
    """A rule that matched an article, with what matched where."""

    rule: str
    hits: tuple[Hit, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class FeedState:
    """What the database remembers about one feed between polls."""

    name: str
    url: str  # the configured URL this state belongs to; a different one starts a new baseline
    effective_url: str | None = None  # a permanent redirect seen consistently
    redirect_target: str | None = None  # a permanent redirect being watched for consistency
    redirect_seen: int = 0
    redirect_first_at: datetime | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    state: str = "new"  # new | ok | failing | gone
    baseline_at: datetime | None = None  # first successful poll; None: the next one is silent
    last_ok_at: datetime | None = None
    last_polled_at: datetime | None = None
    next_poll_at: datetime | None = None
    retry_after_until: datetime | None = None
    failures: int = 0
    last_error: str | None = None
    title: str | None = None
    language: str | None = None
    ttl_minutes: int | None = None  # the feed's RSS ttl, remembered across 304 responses

    @property
    def fetch_url(self) -> str:
        return self.effective_url or self.url


@dataclass(frozen=True, kw_only=True)
class NewArticle:
    """An entry seen for the first time, with its story and the rules it matched."""

    article: Article
    story: str
    matches: tuple[RuleMatch, ...] = ()
    alert: bool = False  # False for the silent baseline of a feed's first poll
    headline: str | None = None  # dedupe.title_key of the title, computed once by decide


@dataclass(frozen=True, kw_only=True)
class QueuedAlert:
    """One outbox row to create: (story, rule, channel) is unique forever."""

    story: str
    article_key: str
    feed: str
    rule: str
    channel: str
    hits: tuple[Hit, ...] = ()


@dataclass(frozen=True, kw_only=True)
class FeedPlan:
    """What one poll of one feed decided: applied by the store in one transaction."""

    state: FeedState
    new_articles: tuple[NewArticle, ...] = ()
    seen_keys: tuple[str, ...] = ()  # every key in the document (kept while in the feed)
    document_changed: bool = False  # False for 304 / same body / failure: nothing to touch
    alerts: tuple[QueuedAlert, ...] = ()
    log: tuple[str, ...] = ()  # lines for the log, naming the feed
    warnings: tuple[str, ...] = ()  # problems worth a warning although the poll worked
