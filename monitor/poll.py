"""One pass: due feeds -> fetch -> parse -> decide -> store (one transaction) -> deliver.

I/O orchestration only; the decisions are made in decide.py. One feed's failure, expected or not,
is recorded on that feed and logged as one line; the pass goes on.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from monitor import metrics, ops
from monitor.config import CONSOLE, Config, FeedConfig
from monitor.decide import Policy, decide_feed, health_change
from monitor.dedupe import TITLE_WINDOW, title_key
from monitor.errors import FeedError
from monitor.fetch import Fetcher, FetchLimits, FetchRequest, FetchResult
from monitor.models import Article, FeedPlan, FeedState, ParsedFeed, RuleMatch
from monitor.parse import parse_feed
from monitor.rules import FeedInfo, RuleSet, RuleSpec
from monitor.store import Store

log = logging.getLogger("monitor.poll")

Clock = Callable[[], datetime]
PASS_SIZE = 64  # feeds fetched concurrently and stored together
SPREAD_ABOVE = 10  # more overdue feeds than this at start-up are spread over ...
SPREAD_WINDOW = timedelta(minutes=1)  # ... this window


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class PassReport:
    polled: int
    failed: int
    alerts: int


class Poller:
    """Polls feeds for one config; rebuilt on reload."""

    def __init__(self, config: Config, store: Store, clock: Clock = utcnow) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        rules = [r for r in config.rules.values() if r.enabled]
        self.ruleset = RuleSet(
            [
                RuleSpec(name=r.name, query=r.query, language=r.language, exclude=r.exclude)
                for r in rules
            ]
        )
        enabled_channels = {CONSOLE} | {c.name for c in config.channels.values() if c.enabled}
        self.routes: dict[str, dict[str, tuple[str, ...]]] = {
            feed: {
                r.name: tuple(c for c in r.channels if c in enabled_channels)
                for r in rules
                if feed in config.rule_feeds(r)
            }
            for feed in config.feeds
        }
        s = config.settings
        self.fetcher = Fetcher(
            FetchLimits(
                user_agent=s.user_agent,
                timeout=s.timeout.total_seconds(),
                max_body=s.max_body,
                max_redirects=s.max_redirects,
                per_host=s.per_host,
            )
        )

    def sync(self) -> list[str]:
        """Make the database follow the config's feeds; returns new or changed feed names."""
        feeds = {f.name: f.url for f in self.config.feeds.values()}
        return self.store.sync_feeds(feeds, self.clock())

    def due(self, *, force: bool) -> list[FeedState]:
        """Enabled feeds to poll now. `force` (run --once) ignores next-poll times but still
        skips gone feeds and unexpired Retry-After."""
        now = self.clock()
        result = []
        for name, state in self.store.feed_states(due_by=None if force else now).items():
            feed = self.config.feeds.get(name)
            if feed is None or not feed.enabled or state.state == "gone":
                if force and feed is not None and feed.enabled and state.state == "gone":
                    log.info("feed %s: skipped: marked gone (HTTP 410)", name)
                continue
            if state.retry_after_until and state.retry_after_until > now:
                if force:
                    log.info(
                        "feed %s: skipped: rate-limited by the server (HTTP 429/503) until %s",
                        name,
                        f"{state.retry_after_until:%Y-%m-%d %H:%M:%S} UTC",
                    )
                continue
            result.append(state)
        return result

    def poll(self, states: list[FeedState]) -> PassReport:
        """Fetch, parse and decide every given feed, storing each chunk of PASS_SIZE feeds in one
        transaction (bounded passes keep commits and watchdog pings regular)."""
        reports = [self._pass(states[i : i + PASS_SIZE]) for i in range(0, len(states), PASS_SIZE)]
        return PassReport(
            polled=sum(r.polled for r in reports),
            failed=sum(r.failed for r in reports),
            alerts=sum(r.alerts for r in reports),
        )

    def _pass(self, states: list[FeedState]) -> PassReport:
        requests = [
            FetchRequest(feed=s.name, url=s.fetch_url, etag=s.etag, last_modified=s.last_modified)
            for s in states
        ]
        results = self.fetcher.fetch_all(requests)
        plans = []
        headlines: dict[str, str] = {}  # title key -> story, for stories new in this pass
        for state, result in zip(states, results, strict=True):
            if result.error == "cancelled":
                continue  # shutting down: the feed stays due, nothing is recorded
            metrics.record_fetch(result.feed, result.elapsed, failed=result.error is not None)
            plan = self._plan(self.config.feeds[state.name], state, result, headlines)
            for new in plan.new_articles:
                if new.headline:
                    headlines.setdefault(new.headline, new.story)
            plans.append(plan)
        created = self.store.apply(plans, self.clock())
        for plan in plans:
            metrics.record_plan(plan)
        before = {s.name: s for s in states}
        for line in filter(None, (health_change(before[p.state.name], p.state) for p in plans)):
            ops.tell(self.config, line)
        for plan in plans:
            for line in plan.log:
                (log.warning if plan.state.state == "failing" else log.info)(
                    "feed %s: %s", plan.state.name, line
                )
            for line in plan.warnings:
                log.warning("feed %s: %s", plan.state.name, line)
        failed = sum(1 for p in plans if p.state.state in ("failing", "gone"))
        return PassReport(polled=len(plans), failed=failed, alerts=created)

    def cancel(self) -> None:
        self.fetcher.cancel()

    def _plan(self, feed: FeedConfig, state: FeedState, result: FetchResult,
              headlines: dict[str, str]) -> FeedPlan:
        now = self.clock()
        try:
            parsed, problem, body_hash = self._parse(feed, result)
            known = (
                self.store.known_keys(
                    feed.name, [*(a.key for a in parsed.entries), *parsed.skipped_keys])
                if parsed
                else set()
            )
            stories = self._recent_stories(parsed, known, headlines, now) if parsed else {}
            info = FeedInfo(
                name=feed.name,
                tags=feed.tags,
                language=feed.language or (parsed.language if parsed else None) or state.language,
            )
            return decide_feed(
                state=state,
                outcome=result,
                parsed=parsed,
                problem=problem,
                body_hash=body_hash,
                known_keys=known,
                match=lambda a: self._match(a, info),
                routes=self.routes.get(feed.name, {}),
                policy=Policy(
                    interval=feed.interval,
                    max_backoff=self.config.settings.max_backoff,
                    backfill=self.config.settings.backfill,
                ),
                now=now,
                jitter=random.random(),
                stories_by_title=stories,
            )
        except Exception as exc:  # a bug or hostile input in one feed must not stop the pass
            log.error(
                "feed %s: unexpected %s: %s",
                feed.name,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            failed = replace(
                state,
                last_polled_at=now,
                state="failing",
                failures=state.failures + 1,
                last_error=f"internal error: {type(exc).__name__}: {exc}",
                next_poll_at=now + min(self.config.settings.max_backoff, feed.interval),
            )
            return FeedPlan(state=failed)

    def _parse(
        self, feed: FeedConfig, result: FetchResult
    ) -> tuple[ParsedFeed | None, str | None, str | None]:
        if result.body is None:
            return None, None, None
        body_hash = hashlib.sha256(result.body).hexdigest()
        try:
            parsed = parse_feed(
                result.body,
                feed=feed.name,
                url=result.final_url,
                headers=result.headers,
                max_entries=self.config.settings.max_entries,
            )
        except FeedError as exc:
            return None, exc.message + (f"; {exc.hint}" if exc.hint else ""), body_hash
        content_type = result.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and not any(k in content_type for k in ("xml", "rss", "atom", "json")):
            parsed = replace(
                parsed,
                warnings=(
                    *parsed.warnings,
                    f"served as {content_type!r}, not a feed type; parsed anyway",
                ),
            )
        return parsed, None, body_hash

    def _recent_stories(self, parsed: ParsedFeed, known: set[str], headlines: dict[str, str],
                        now: datetime) -> dict[str, str]:
        """Stories already known by the headlines of this document's new entries: earlier in
        this pass, or stored within the dedupe window (wire copy run by another outlet)."""
        keys = {k for a in parsed.entries if a.key not in known and (k := title_key(a.title))}
        stored = self.store.stories_by_title(keys - headlines.keys(), now - TITLE_WINDOW)
        return {**stored, **{k: headlines[k] for k in keys & headlines.keys()}}

    def _match(self, article: Article, info: FeedInfo) -> list[RuleMatch]:
        return self.ruleset.match(article, info)


def prune(config: Config, store: Store, now: datetime) -> None:
    """Daily maintenance: drop old article text and forget old seen ids."""
    s = config.settings
    store.prune(now, keep_text_before=now - s.keep_text, forget_before=now - s.keep_seen)


def spread_overdue(store: Store, config: Config, now: datetime) -> None:
    """At daemon start, feeds that became overdue while it was down are spread over a short
    window instead of all fetched at once. New feeds (never polled) are not delayed."""
    overdue = sorted(
        (s for s in store.feed_states().values()
         if s.last_polled_at and s.next_poll_at and s.next_poll_at < now and s.state != "gone"),
        key=lambda s: s.next_poll_at or now,
    )
    if len(overdue) <= SPREAD_ABOVE:
        return
    window = min(SPREAD_WINDOW, config.settings.interval)
    for index, state in enumerate(overdue):
        store.save_feed_state(replace(state, next_poll_at=now + window * index / len(overdue)))
