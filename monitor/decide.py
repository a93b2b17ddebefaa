"""Pure: (feed state, fetch outcome, parsed feed, what is seen, rules, now) -> FeedPlan.

No I/O, no clock, no randomness: `now` and `jitter` (0..1) are passed in. The plan says what to
store (new articles, queued alerts, the feed's new state) and when to poll next.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from monitor.dedupe import story_id, title_key
from monitor.models import (
    Article,
    FeedPlan,
    FeedState,
    NewArticle,
    ParsedFeed,
    QueuedAlert,
    RuleMatch,
)

HINT_CAP = timedelta(hours=24)  # server hints may lengthen the interval up to this, never shorten
RETRY_AFTER_CAP = timedelta(days=7)
RATE_LIMITED_MIN = timedelta(hours=1)  # a 429 without Retry-After waits at least this
CLOCK_SKEW = timedelta(minutes=10)  # publish dates this far ahead still count as "now"
JITTER_SHARE = 0.1  # up to 10 % added to every wait, so feeds drift apart
REDIRECT_POLLS = 3  # a permanent redirect is adopted once seen this often ...
REDIRECT_SPAN = timedelta(days=1)  # ... over at least this long


class Outcome(Protocol):
    """The facts of one fetch that decide needs; fetch.FetchResult has this shape."""

    @property
    def status(self) -> int | None: ...
    @property
    def not_modified(self) -> bool: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def final_url(self) -> str: ...
    @property
    def redirects(self) -> tuple[tuple[int, str], ...]: ...
    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True, kw_only=True)
class Policy:
    interval: timedelta
    max_backoff: timedelta
    backfill: timedelta


def decide_feed(
    *,
    state: FeedState,
    outcome: Outcome,
    parsed: ParsedFeed | None,
    problem: str | None,
    body_hash: str | None,
    known_keys: Collection[str],
    match: Callable[[Article], list[RuleMatch]],
    routes: Mapping[str, tuple[str, ...]],
    policy: Policy,
    now: datetime,
    jitter: float,
    stories_by_title: Mapping[str, str] | None = None,
) -> FeedPlan:
    """Decide what one poll of one feed means.

    `problem` is a readable error from parsing (not a feed, HTML page ...); `routes` maps each
    rule that applies to this feed to its enabled channels; `stories_by_title` maps the title
    keys of stories seen recently (in other feeds, or earlier in this pass) to their story ids.
    """
    state = replace(state, last_polled_at=now)
    state, log = _follow_redirects(state, outcome, now)
    if outcome.status == 410:
        gone = replace(
            state,
            state="gone",
            failures=state.failures + 1,
            next_poll_at=None,
            last_error="HTTP 410 Gone: the publisher removed this feed",
        )
        return FeedPlan(
            state=gone,
            log=(
                *log,
                "the server says the feed is gone (HTTP 410); "
                "no longer polled: remove it or change its URL",
            ),
        )
    error = outcome.error or problem
    if error:
        return _failure(state, outcome, error, policy, now, jitter, log)
    ttl = parsed.ttl_minutes if parsed is not None else state.ttl_minutes
    state = replace(
        state,
        state="ok",
        failures=0,
        last_error=None,
        last_ok_at=now,
        retry_after_until=None,
        etag=outcome.headers.get("etag") or (state.etag if outcome.not_modified else None),
        last_modified=outcome.headers.get("last-modified")
        or (state.last_modified if outcome.not_modified else None),
        ttl_minutes=ttl,
        next_poll_at=now + _wait(policy.interval, _hint(outcome.headers, ttl, now), jitter),
    )
    if outcome.not_modified or parsed is None or body_hash == state.body_hash:
        return FeedPlan(state=state, log=tuple(log))
    return _new_document(state, parsed, body_hash, known_keys, match, routes, policy, now, log,
                         dict(stories_by_title or {}))


def _new_document(
    state: FeedState,
    parsed: ParsedFeed,
    body_hash: str | None,
    known_keys: Collection[str],
    match: Callable[[Article], list[RuleMatch]],
    routes: Mapping[str, tuple[str, ...]],
    policy: Policy,
    now: datetime,
    log: list[str],
    stories_by_title: dict[str, str],
) -> FeedPlan:
    baseline = state.baseline_at is None
    fresh: list[NewArticle] = []
    alerts: list[QueuedAlert] = []
    for article in _oldest_first(parsed.entries):
        if article.key in known_keys:
            continue
        # The same headline seen recently (wire copy under another link) joins that story.
        headline = title_key(article.title)
        story = stories_by_title.get(headline) if headline else None
        story = story or story_id(article)
        if headline:
            stories_by_title.setdefault(headline, story)
        alert = not baseline or _within_backfill(article, policy.backfill, now)
        matches = tuple(m for m in match(article) if m.rule in routes) if alert else ()
        fresh.append(NewArticle(article=article, story=story, matches=matches, alert=alert,
                                headline=headline))
        alerts.extend(
            QueuedAlert(
                story=story,
                article_key=article.key,
                feed=article.feed,
                rule=m.rule,
                channel=channel,
                hits=m.hits,
            )
            for m in matches
            for channel in routes[m.rule]
        )
    skipped = [k for k in parsed.skipped_keys if k not in known_keys]
    if parsed.skipped_keys:
        log.append(f"{len(parsed.skipped_keys)} entries beyond max_entries were ignored")
    fresh.extend(NewArticle(article=Article(feed=state.name, key=key, title="", link=None, text=""),
                            story=f"skipped:{state.name}:{key}") for key in skipped)
    if baseline:
        log.append(
            f"first poll: {len(fresh)} entries recorded as the baseline"
            + (f", {len(alerts)} alerts from the backfill window" if alerts else "")
        )
    elif fresh:
        matched = sum(1 for a in fresh if a.matches)
        log.append(f"{len(fresh)} new entries, {matched} matching a rule")
    state = replace(
        state,
        body_hash=body_hash,
        baseline_at=state.baseline_at or now,
        title=parsed.title or state.title,
        language=parsed.language or state.language,
    )
    return FeedPlan(
        state=state,
        new_articles=tuple(fresh),
        seen_keys=tuple(a.key for a in parsed.entries) + parsed.skipped_keys,
        document_changed=True,
        alerts=tuple(alerts),
        log=tuple(log),
        warnings=parsed.warnings,
    )


def _oldest_first(entries: tuple[Article, ...]) -> list[Article]:
    """Alerts go out in the order stories were published; feeds list the newest first."""
    undated = datetime.max.replace(tzinfo=UTC)
    # reversed() matters: undated entries keep the feed's order, oldest first.
    return sorted(reversed(entries), key=lambda a: a.published_at or undated)  # noqa: C414


def _within_backfill(article: Article, backfill: timedelta, now: datetime) -> bool:
    # A date in the future is a publisher's mistake, not a reason to alert on the baseline.
    return (
        bool(backfill)
        and article.published_at is not None
        and now - backfill <= article.published_at <= now + CLOCK_SKEW
    )


def _failure(
    state: FeedState,
    outcome: Outcome,
    error: str,
    policy: Policy,
    now: datetime,
    jitter: float,
    log: list[str],
) -> FeedPlan:
    failures = state.failures + 1
    backoff = min(policy.max_backoff, policy.interval * 2 ** min(failures - 1, 30))
    next_at = now + _wait(backoff, None, jitter)
    retry_after = None
    if outcome.status in (429, 503):
        retry_after = _retry_after(outcome.headers.get("retry-after"), now)
        if outcome.status == 429 and retry_after is None:
            retry_after = now + RATE_LIMITED_MIN
        if retry_after is not None:
            next_at = max(next_at, retry_after)
    state = replace(
        state,
        state="failing",
        failures=failures,
        last_error=error,
        next_poll_at=next_at,
        retry_after_until=retry_after,
    )
    return FeedPlan(
        state=state, log=(*log, f"failed ({error}); next try at {next_at:%Y-%m-%d %H:%M:%S} UTC")
    )


def _wait(base: timedelta, hint: timedelta | None, jitter: float) -> timedelta:
    if hint is not None and hint > base:
        base = min(hint, max(HINT_CAP, base))
    return base + base * JITTER_SHARE * jitter


def _hint(headers: Mapping[str, str], ttl_minutes: int | None, now: datetime) -> timedelta | None:
    """The longest of RSS ttl, Cache-Control max-age and Expires, if any."""
    hints = []
    if ttl_minutes:
        hints.append(timedelta(minutes=ttl_minutes))
    if match := re.search(r"max-age=(\d+)", headers.get("cache-control", "")):
        hints.append(timedelta(seconds=int(match[1])))
    if expires := _http_date(headers.get("expires")):
        hints.append(expires - now)
    return max(hints) if hints else None


def _retry_after(value: str | None, now: datetime) -> datetime | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        until = now + timedelta(seconds=min(int(value), int(RETRY_AFTER_CAP.total_seconds())))
    elif (moment := _http_date(value)) is not None:
        until = moment
    else:
        return None
    return min(until, now + RETRY_AFTER_CAP)


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _follow_redirects(
    state: FeedState, outcome: Outcome, now: datetime
) -> tuple[FeedState, list[str]]:
    """Adopt a permanent (301/308) redirect once seen consistently; never a temporary one."""
    hops = outcome.redirects
    if outcome.status is None or not hops:
        return replace(state, redirect_target=None, redirect_seen=0, redirect_first_at=None), []
    if any(code not in (301, 308) for code, _ in hops) or outcome.final_url == state.fetch_url:
        return replace(state, redirect_target=None, redirect_seen=0, redirect_first_at=None), []
    target = outcome.final_url
    if target != state.redirect_target:
        return replace(state, redirect_target=target, redirect_seen=1, redirect_first_at=now), []
    seen = state.redirect_seen + 1
    first = state.redirect_first_at or now
    if seen >= REDIRECT_POLLS and now - first >= REDIRECT_SPAN:
        adopted = replace(
            state,
            effective_url=target,
            redirect_target=None,
            redirect_seen=0,
            redirect_first_at=None,
        )
        return adopted, [
            f"moved permanently to {target}; now polling that URL; "
            "update the feed's url in the config"
        ]
    return replace(state, redirect_seen=seen, redirect_first_at=first), []


def health_change(before: FeedState, after: FeedState, threshold: int = 3) -> str | None:
    """A line for the ops channel when a feed starts failing, is gone, or recovers."""
    if after.state == "gone" and before.state != "gone":
        return f"feed {after.name} is gone (HTTP 410); it is no longer polled"
    if after.failures == threshold:
        return (f"feed {after.name} failed {threshold} times in a row: {after.last_error}; "
                "monitor keeps retrying with backoff")
    if after.state == "ok" and before.failures >= threshold:
        return f"feed {after.name} recovered after {before.failures} failures"
    return None
