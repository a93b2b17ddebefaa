"""I/O: the SQLite database, through sqlite-utils. The only module importing sqlite3.

WAL journal, a busy timeout, numbered migrations. The daemon writes through one Store guarded by
a lock; other commands open their own connection and read beside it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from monitor.errors import StoreError
from monitor.models import Article, FeedPlan, FeedState, Hit

BUSY_TIMEOUT_MS = 10_000

# Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE feeds (
        name TEXT PRIMARY KEY, url TEXT NOT NULL, effective_url TEXT, redirect_target TEXT,
        redirect_seen INTEGER NOT NULL DEFAULT 0, redirect_first_at TEXT, etag TEXT,
        last_modified TEXT, body_hash TEXT, state TEXT NOT NULL DEFAULT 'new', baseline_at TEXT,
        last_ok_at TEXT, last_polled_at TEXT, next_poll_at TEXT, retry_after_until TEXT,
        failures INTEGER NOT NULL DEFAULT 0, last_error TEXT, title TEXT, language TEXT,
        content_seen_at TEXT, ttl_minutes INTEGER
    );
    CREATE INDEX feeds_next_poll ON feeds (next_poll_at);
    CREATE TABLE articles (
        id INTEGER PRIMARY KEY, feed TEXT NOT NULL, key TEXT NOT NULL, story TEXT NOT NULL,
        title TEXT NOT NULL, link TEXT, text TEXT, author TEXT NOT NULL DEFAULT '',
        categories TEXT NOT NULL DEFAULT '[]', published_at TEXT, first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL, title_key TEXT, UNIQUE (feed, key)
    );
    CREATE INDEX articles_title_key ON articles (title_key, first_seen_at);
    CREATE INDEX articles_first_seen ON articles (first_seen_at);
    CREATE INDEX articles_story ON articles (story);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY, story TEXT NOT NULL, article_id INTEGER NOT NULL, rule TEXT NOT NULL,
        channel TEXT NOT NULL, batch INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'queued',
        attempts INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL, next_attempt_at TEXT,
        sent_at TEXT, last_error TEXT, hits TEXT NOT NULL DEFAULT '[]', first_failed_at TEXT,
        UNIQUE (story, rule, channel)
    );
    CREATE INDEX alerts_pending ON alerts (channel, status, batch);
    CREATE TABLE channels (
        name TEXT PRIMARY KEY, failures INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT,
        last_error TEXT, last_ok_at TEXT, failing_since TEXT, hour_start TEXT,
        hour_sent INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    """,
)


def iso(moment: datetime | None) -> str | None:
    return (
        moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if moment
        else None
    )


def stamp(moment: datetime | None) -> str | None:
    """Times as stored: milliseconds, so a next-poll time is never rounded earlier, and one
    fixed width, so SQL compares them as text correctly."""
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if moment
        else None
    )


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


_FEED_FIELDS = [f.name for f in fields(FeedState)]
_TIME_FIELDS = {f for f in _FEED_FIELDS if f.endswith("_at") or f == "retry_after_until"}


@dataclass(frozen=True, kw_only=True)
class StoredArticle:
    id: int
    article: Article
    story: str
    first_seen_at: datetime


@dataclass(frozen=True, kw_only=True)
class AlertRow:
    id: int
    story: str
    article_id: int
    rule: str
    channel: str
    batch: int
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    sent_at: datetime | None
    last_error: str | None
    hits: tuple[Hit, ...]
    title: str = ""


class Store:
    """One SQLite database. Thread-safe: every call holds the lock (one writer at a time)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            if not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
            uri = f"file:{path}?mode=ro" if readonly else str(path)
            conn = sqlite3.connect(
                uri,
                uri=readonly,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                isolation_level=None,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            self.db = sqlite_utils.Database(conn)
            if not readonly:
                self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise _store_error(path, exc) from None

    def close(self) -> None:
        with self._lock:
            self.db.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One atomic write; a failure rolls back everything and raises StoreError."""
        with self._lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                self.db.execute("COMMIT")
            except BaseException as exc:
                if self.db.conn.in_transaction:
                    self.db.conn.rollback()
                if isinstance(exc, (sqlite3.Error, OSError)):
                    raise _store_error(self.path, exc) from None
                raise

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return list(self.db.query(sql, params))
            except sqlite3.Error as exc:
                raise _store_error(self.path, exc) from None

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > len(MIGRATIONS):
                raise StoreError(
                    f"the database {self.path} was written by a newer monitor (schema {version})",
                    hint="upgrade monitor",
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip() and "CREATE TABLE meta" not in statement:
                        db.execute(statement)
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(number)]
                )

    # -- feeds -------------------------------------------------------------------------------

    def feed_states(self, due_by: datetime | None = None) -> dict[str, FeedState]:
        """Every feed's state, or only those whose next poll is due by a time (an indexed read:
        the daemon asks every second)."""
        if due_by is None:
            return {r["name"]: _feed_state(r) for r in self._rows("SELECT * FROM feeds")}
        rows = self._rows("SELECT * FROM feeds WHERE next_poll_at <= ? ORDER BY next_poll_at",
                          [stamp(due_by)])
        return {r["name"]: _feed_state(r) for r in rows}

    def sync_feeds(self, configured: dict[str, str], now: datetime) -> list[str]:
        """Make the feeds table follow the config (name -> URL). A changed URL starts a new
        silent baseline. Returns the names of feeds that are new or changed."""
        changed = []
        with self.transaction() as db:
            known = {r["name"]: r["url"] for r in db.query("SELECT name, url FROM feeds")}
            for name, url in configured.items():
                if name not in known:
                    db.table("feeds").insert({"name": name, "url": url, "next_poll_at": stamp(now)})
                    changed.append(name)
                elif known[name] != url:
                    db.execute(
                        "UPDATE feeds SET url = ?, effective_url = NULL, redirect_target = NULL,"
                        " redirect_seen = 0, etag = NULL, last_modified = NULL, body_hash = NULL,"
                        " baseline_at = NULL, state = 'new', failures = 0, last_error = NULL,"
                        " retry_after_until = NULL, next_poll_at = ? WHERE name = ?",
                        [url, stamp(now), name],
                    )
                    changed.append(name)
        return changed

    def known_keys(self, feed: str, keys: Iterable[str]) -> set[str]:
        wanted = list(keys)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = _marks(chunk)
            found.update(
                r["key"]
                for r in self._rows(
                    f"SELECT key FROM articles WHERE feed = ? AND key IN ({marks})", [feed, *chunk]
                )
            )
        return found

    def apply(self, plans: Sequence[FeedPlan], now: datetime) -> int:
        """Store a pass in ONE transaction: articles, queued alerts, feed states. Returns how
        many alert rows were created (duplicates of an earlier (story, rule, channel) are not)."""
        created = 0
        with self.transaction() as db:
            batch = db.execute("SELECT COALESCE(MAX(batch), 0) + 1 FROM alerts").fetchone()[0]
            for plan in plans:
                created += self._apply_one(db, plan, now, batch)
        return created

    def _apply_one(
        self, db: sqlite_utils.Database, plan: FeedPlan, now: datetime, batch: int
    ) -> int:
        state = plan.state
        _save_state(db, state, content_seen_at=now if plan.document_changed else None)
        seen_at = stamp(now)
        ids: dict[str, int] = {}
        for new in plan.new_articles:
            a = new.article
            cursor = db.execute(
                "INSERT OR IGNORE INTO articles (feed, key, story, title, link, text, author,"
                " categories, published_at, first_seen_at, last_seen_at, title_key)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    a.feed,
                    a.key,
                    new.story,
                    a.title,
                    a.link,
                    a.text,
                    a.author,
                    json.dumps(list(a.categories), ensure_ascii=False),
                    stamp(a.published_at),
                    seen_at,
                    seen_at,
                    new.headline,
                ],
            )
            ids[a.key] = cursor.lastrowid or 0
        if plan.document_changed and plan.seen_keys:
            keys = list(plan.seen_keys)
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                db.execute(
                    f"UPDATE articles SET last_seen_at = ? WHERE feed = ? AND key IN"
                    f" ({_marks(chunk)})",
                    [seen_at, state.name, *chunk],
                )
        created = 0
        for alert in plan.alerts:
            cursor = db.execute(
                "INSERT OR IGNORE INTO alerts (story, article_id, rule, channel, batch, created_at,"
                " next_attempt_at, hits) VALUES (?,?,?,?,?,?,?,?)",
                [
                    alert.story,
                    ids.get(alert.article_key, 0),
                    alert.rule,
                    alert.channel,
                    batch,
                    seen_at,
                    seen_at,
                    json.dumps([asdict(h) for h in alert.hits], ensure_ascii=False),
                ],
            )
            created += cursor.rowcount
        return created

    def save_feed_state(self, state: FeedState) -> None:
        with self.transaction() as db:
            _save_state(db, state)

    def entry_counts(self) -> dict[str, int]:
        return {
            r["feed"]: r["n"]
            for r in self._rows("SELECT feed, COUNT(*) AS n FROM articles GROUP BY feed")
        }

    # -- articles ------------------------------------------------------------------------------

    def articles_since(
        self, since: datetime, feed: str | None = None, limit: int | None = None
    ) -> Iterator[StoredArticle]:
        sql = "SELECT * FROM articles WHERE first_seen_at >= ? AND text IS NOT NULL"
        params: list[Any] = [stamp(since)]
        if feed:
            sql += " AND feed = ?"
            params.append(feed)
        sql += " ORDER BY first_seen_at DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        for row in self._rows(sql, params):
            yield StoredArticle(
                id=row["id"],
                article=_article(row),
                story=row["story"],
                first_seen_at=parse_time(row["first_seen_at"]) or since,
            )

    def article(self, article_id: int) -> StoredArticle | None:
        rows = self._rows("SELECT * FROM articles WHERE id = ?", [article_id])
        if not rows:
            return None
        row = rows[0]
        return StoredArticle(
            id=row["id"],
            article=_article(row),
            story=row["story"],
            first_seen_at=parse_time(row["first_seen_at"]) or datetime.now(UTC),
        )

    def stories_by_title(self, keys: Iterable[str], since: datetime) -> dict[str, str]:
        """The story of each headline key first seen since a time (the earliest one wins)."""
        wanted = list(keys)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for row in self._rows(
                    f"SELECT title_key, story FROM articles WHERE title_key IN ({_marks(chunk)})"
                    " AND first_seen_at >= ? ORDER BY first_seen_at DESC, id DESC",
                    [*chunk, stamp(since)]):
                found[row["title_key"]] = row["story"]  # later rows are earlier: they win
        return found

    def count_articles(self) -> int:
        return int(self._rows("SELECT COUNT(*) AS n FROM articles")[0]["n"])

    def prune(self, now: datetime, *, keep_text_before: datetime, forget_before: datetime) -> None:
        """Drop article text after keep_text; forget seen ids no longer in their feed after keep_seen."""
        with self.transaction() as db:
            db.execute(
                "UPDATE articles SET text = NULL WHERE first_seen_at < ? AND text IS NOT NULL",
                [stamp(keep_text_before)],
            )
            db.execute(
                "DELETE FROM articles WHERE last_seen_at < ? AND last_seen_at < COALESCE("
                "(SELECT content_seen_at FROM feeds WHERE feeds.name = articles.feed), '')"
                " AND id NOT IN (SELECT article_id FROM alerts WHERE status != 'sent')",
                [stamp(forget_before)],
            )

    # -- alerts --------------------------------------------------------------------------------

    def alerts(
        self,
        *,
        status: str | None = None,
        channel: str | None = None,
        pending_for: str | None = None,
    ) -> list[AlertRow]:
        sql = (
            "SELECT alerts.*, COALESCE(articles.title, '') AS title FROM alerts"
            " LEFT JOIN articles ON articles.id = alerts.article_id WHERE 1"
        )
        params: list[Any] = []
        if status:
            sql += " AND alerts.status = ?"
            params.append(status)
        if channel:
            sql += " AND alerts.channel = ?"
            params.append(channel)
        if pending_for:
            sql += " AND alerts.channel = ? AND alerts.status IN ('queued', 'held')"
            params.append(pending_for)
        sql += " ORDER BY alerts.batch, alerts.id"
        return [_alert(r) for r in self._rows(sql, params)]

    def alert_counts(self) -> dict[str, int]:
        return {
            r["status"]: r["n"]
            for r in self._rows("SELECT status, COUNT(*) AS n FROM alerts GROUP BY status")
        }

    def pending_counts(self) -> dict[str, int]:
        """Queued or held alerts per channel."""
        return {r["channel"]: r["n"] for r in self._rows(
            "SELECT channel, COUNT(*) AS n FROM alerts WHERE status IN ('queued', 'held')"
            " GROUP BY channel")}

    def ping(self) -> None:
        """Raises StoreError unless the database file answers a read."""
        self._rows("SELECT COUNT(*) FROM sqlite_master")

    def pending_channels(self) -> list[str]:
        return [
            r["channel"]
            for r in self._rows(
                "SELECT DISTINCT channel FROM alerts WHERE status IN ('queued', 'held') ORDER BY channel"
            )
        ]

    def mark_sent(self, ids: Sequence[int], now: datetime) -> None:
        """Its own commit, as soon as the channel accepted the message."""
        with self.transaction() as db:
            db.execute(
                "UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                f" last_error = NULL, first_failed_at = NULL WHERE id IN ({_marks(ids)})",
                [stamp(now), *ids],
            )

    def mark_attempt_failed(
        self, ids: Sequence[int], error: str, now: datetime, give_up_before: datetime
    ) -> int:
        """Record a failed attempt; rows undeliverable since before give_up_before (their
        first failed attempt) become failed. Returns how many were given up."""
        marks = _marks(ids)
        with self.transaction() as db:
            db.execute(
                "UPDATE alerts SET attempts = attempts + 1, last_error = ?,"
                f" first_failed_at = COALESCE(first_failed_at, ?) WHERE id IN ({marks})",
                [error, stamp(now), *ids],
            )
            cursor = db.execute(
                f"UPDATE alerts SET status = 'failed' WHERE id IN ({marks}) AND first_failed_at < ?",
                [*ids, stamp(give_up_before)],
            )
            return int(cursor.rowcount)

    def hold(self, ids: Sequence[int], until: datetime) -> None:
        """Hold alerts (quiet hours, rate limit) until a release time."""
        with self.transaction() as db:
            db.execute(
                "UPDATE alerts SET status = 'held', next_attempt_at = ?"
                f" WHERE id IN ({_marks(ids)})",
                [stamp(until), *ids],
            )

    def retry(self, ids: Sequence[int] | None, now: datetime) -> dict[int, str]:
        """Bring failed alerts back to the queue (every failed one when ids is None). Returns
        each given (or retried) id's status before the call; unknown ids are left out."""
        with self.transaction() as db:
            where = "status = 'failed'" if ids is None else f"id IN ({_marks(ids)})"
            before = {r[0]: r[1] for r in db.execute(
                f"SELECT id, status FROM alerts WHERE {where}", list(ids or []))}
            failed = [i for i, status in before.items() if status == "failed"]
            if failed:
                db.execute("UPDATE alerts SET status = 'queued', first_failed_at = NULL,"
                           f" next_attempt_at = ? WHERE id IN ({_marks(failed)})",
                           [stamp(now), *failed])
            return before

    def matched_stories(self, *, rule: str | None, since: datetime) -> list[dict[str, Any]]:
        """Stories with at least one alert since a time: rules, and every feed that ran them."""
        sql = (
            "SELECT story, MIN(created_at) AS first_seen_at, json_group_array(DISTINCT rule)"
            " AS rules FROM alerts WHERE created_at >= ?"
        )
        params: list[Any] = [stamp(since)]
        if rule:
            sql += " AND story IN (SELECT story FROM alerts WHERE rule = ?)"
            params.append(rule)
        stories = []
        for row in self._rows(sql + " GROUP BY story ORDER BY first_seen_at DESC", params):
            sources = self._rows(
                "SELECT feed, title, link FROM articles WHERE story = ? ORDER BY first_seen_at, id",
                [row["story"]],
            )
            stories.append(
                {
                    "story": row["story"],
                    "first_seen_at": iso(parse_time(row["first_seen_at"])),
                    "title": sources[0]["title"] if sources else "",
                    "link": sources[0]["link"] if sources else None,
                    "rules": sorted(json.loads(row["rules"])),
                    "feeds": list(dict.fromkeys(s["feed"] for s in sources)),
                }
            )
        return stories

    # -- channels ------------------------------------------------------------------------------

    def channel_state(self, name: str) -> dict[str, Any]:
        rows = self._rows("SELECT * FROM channels WHERE name = ?", [name])
        return (
            rows[0]
            if rows
            else {
                "name": name,
                "failures": 0,
                "next_attempt_at": None,
                "last_error": None,
                "last_ok_at": None,
                "failing_since": None,
                "hour_start": None,
                "hour_sent": 0,
            }
        )

    def save_channel_state(self, state: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.table("channels").upsert(state, pk="name")

    # -- meta ----------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", [key])
        return rows[0]["value"] if rows else None

    def integrity_ok(self) -> bool:
        return self._rows("PRAGMA integrity_check")[0].get("integrity_check") == "ok"


_SAVE_STATE = (
    f"INSERT INTO feeds ({', '.join(_FEED_FIELDS)}) VALUES ({', '.join('?' * len(_FEED_FIELDS))})"
    " ON CONFLICT (name) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in _FEED_FIELDS if f != "name")
)


def _save_state(db: sqlite_utils.Database, state: FeedState,
                content_seen_at: datetime | None = None) -> None:
    """One statement per feed (this runs for every feed of every pass)."""
    values = asdict(state)
    db.execute(_SAVE_STATE, [stamp(values[f]) if f in _TIME_FIELDS else values[f]
                             for f in _FEED_FIELDS])
    if content_seen_at is not None:
        db.execute("UPDATE feeds SET content_seen_at = ? WHERE name = ?",
                   [stamp(content_seen_at), state.name])


def _marks(values: Sequence[Any]) -> str:
    """`?,?,?`: one SQL parameter per value, for `IN (...)`."""
    return ",".join("?" * len(values))


def _feed_state(row: dict[str, Any]) -> FeedState:
    values: dict[str, Any] = {
        k: (parse_time(row[k]) if k in _TIME_FIELDS else row[k]) for k in _FEED_FIELDS
    }
    return FeedState(**values)


def _article(row: dict[str, Any]) -> Article:
    return Article(
        feed=row["feed"],
        key=row["key"],
        title=row["title"],
        link=row["link"],
        text=row["text"] or "",
        author=row["author"],
        categories=tuple(json.loads(row["categories"] or "[]")),
        published_at=parse_time(row["published_at"]),
    )


def _alert(row: dict[str, Any]) -> AlertRow:
    return AlertRow(
        id=row["id"],
        story=row["story"],
        article_id=row["article_id"],
        rule=row["rule"],
        channel=row["channel"],
        batch=row["batch"],
        status=row["status"],
        attempts=row["attempts"],
        created_at=parse_time(row["created_at"]) or datetime.now(UTC),
        next_attempt_at=parse_time(row["next_attempt_at"]),
        sent_at=parse_time(row["sent_at"]),
        last_error=row["last_error"],
        hits=tuple(Hit(**h) for h in json.loads(row["hits"] or "[]")),
        title=row.get("title", ""),
    )


def _store_error(path: Path, exc: BaseException) -> StoreError:
    text = str(exc)
    if "full" in text:
        return StoreError(
            f"the database {path} cannot be written: the disk is full",
            hint="free some space; monitor retries and loses nothing",
        )
    if "readonly" in text or "read-only" in text:
        return StoreError(
            f"the database {path} is read-only", hint="check the file's permissions and the mount"
        )
    if "locked" in text or "busy" in text:
        return StoreError(f"the database {path} is busy ({text})", hint="try again in a moment")
    return StoreError(
        f"the database {path} failed: {text}",
        hint="check the path in [monitor] database and the disk",
    )
