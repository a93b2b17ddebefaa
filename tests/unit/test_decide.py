"""decide_feed: the pure fetch policy (SPEC §6), with an injected clock and jitter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from monitor.decide import Policy, decide_feed
from monitor.models import Article, FeedPlan, FeedState, Hit, ParsedFeed, RuleMatch

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
URL = "https://news.example.org/rss.xml"
MOVED = "https://feeds.example.org/world.xml"
POLICY = Policy(interval=timedelta(minutes=15), max_backoff=timedelta(hours=24),
                backfill=timedelta(0))


@dataclass(frozen=True)
class Outcome:
    """The shape of fetch.FetchResult that decide needs (our own interface, faked)."""

    status: int | None = 200
    not_modified: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    final_url: str = URL
    redirects: tuple[tuple[int, str], ...] = ()
    error: str | None = None


def article(n: int, *, published: datetime | None = None) -> Article:
    return Article(feed="world", key=f"guid:{n}", title=f"Story number {n}",
                   link=f"https://news.example.org/{n}", text=f"Body of story {n}.",
                   published_at=published)


def parsed(*articles: Article, ttl: int | None = None) -> ParsedFeed:
    return ParsedFeed(title="World news", entries=tuple(articles), ttl_minutes=ttl)


def polled(state: FeedState | None = None) -> FeedState:
    """A feed that has had its silent first poll."""
    return state or FeedState(name="world", url=URL, state="ok", baseline_at=NOW - timedelta(days=3),
                              last_ok_at=NOW - timedelta(minutes=15))


def everything_matches(a: Article) -> list[RuleMatch]:
    return [RuleMatch(rule="truce", hits=(Hit(term="story", field="title", start=0, end=5),)),
            RuleMatch(rule="unrouted")]


def decide(*, state: FeedState | None = None, outcome: Outcome | None = None,
           doc: ParsedFeed | None = None, problem: str | None = None, body_hash: str | None = "h1",
           known: frozenset[str] = frozenset(), policy: Policy = POLICY, now: datetime = NOW,
           jitter: float = 0.0) -> FeedPlan:
    outcome = outcome or Outcome()
    return decide_feed(
        state=polled(state), outcome=outcome,
        parsed=doc if doc is not None or outcome.error or outcome.not_modified else parsed(),
        problem=problem, body_hash=body_hash, known_keys=known, match=everything_matches,
        routes={"truce": ("newsroom", "me")}, policy=policy, now=now, jitter=jitter)


def failing(failures: int) -> FeedState:
    return replace(polled(), state="failing" if failures else "ok", failures=failures,
                   last_error="HTTP 500 Internal Server Error" if failures else None)


def http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


# -- error backoff ------------------------------------------------------------------------------

@pytest.mark.parametrize(("nth_failure", "wait"), [
    (1, timedelta(minutes=15)),
    (2, timedelta(minutes=30)),
    (3, timedelta(hours=1)),
    (4, timedelta(hours=2)),
    (7, timedelta(hours=16)),
    (8, timedelta(hours=24)),  # 32 h capped at max_backoff
    (9, timedelta(hours=24)),
    (500, timedelta(hours=24)),  # forever: never disabled, never an overflow
])
@pytest.mark.parametrize("jitter", [0.0, 0.5, 1.0])
def test_error_backoff_doubles_up_to_max_backoff_plus_at_most_ten_percent(
        nth_failure: int, wait: timedelta, jitter: float) -> None:
    plan = decide(state=failing(nth_failure - 1),
                  outcome=Outcome(status=500, error="HTTP 500 Internal Server Error"), jitter=jitter)
    assert plan.state.state == "failing"
    assert plan.state.failures == nth_failure
    assert plan.state.last_error == "HTTP 500 Internal Server Error"
    assert plan.state.next_poll_at is not None
    waited = plan.state.next_poll_at - NOW
    assert wait <= waited <= wait * 1.1
    assert waited == wait + wait * 0.1 * jitter
    assert not plan.document_changed and not plan.new_articles and not plan.alerts
    assert any("HTTP 500" in line for line in plan.log)


def test_backoff_honours_a_smaller_max_backoff_and_the_feeds_own_interval() -> None:
    policy = Policy(interval=timedelta(hours=2), max_backoff=timedelta(hours=3), backfill=timedelta(0))
    first = decide(state=failing(0), outcome=Outcome(status=None, error="connection refused"),
                   policy=policy)
    assert first.state.next_poll_at == NOW + timedelta(hours=2)
    second = decide(state=first.state, outcome=Outcome(status=None, error="connection refused"),
                    policy=policy)
    assert second.state.next_poll_at == NOW + timedelta(hours=3)


def test_a_parse_problem_is_a_failure_with_its_sentence() -> None:
    plan = decide(outcome=Outcome(), doc=None, problem="feed 'world': the document is not a feed")
    assert plan.state.state == "failing"
    assert plan.state.last_error == "feed 'world': the document is not a feed"
    assert plan.state.next_poll_at == NOW + timedelta(minutes=15)
    assert plan.state.baseline_at == polled().baseline_at


def test_success_after_failures_resets_health() -> None:
    state = replace(failing(6), retry_after_until=NOW - timedelta(minutes=1))
    plan = decide(state=state, doc=parsed(article(1)))
    assert plan.state.state == "ok"
    assert plan.state.failures == 0
    assert plan.state.last_error is None
    assert plan.state.retry_after_until is None
    assert plan.state.last_ok_at == NOW
    assert plan.state.next_poll_at == NOW + timedelta(minutes=15)


# -- 429 / 503 and Retry-After ------------------------------------------------------------------

@pytest.mark.parametrize(("status", "retry_after", "until"), [
    (429, "3600", NOW + timedelta(hours=1)),
    (429, " 7200 ", NOW + timedelta(hours=2)),
    (429, http_date(NOW + timedelta(hours=5)), NOW + timedelta(hours=5)),
    (429, None, NOW + timedelta(hours=1)),  # no Retry-After: at least an hour
    (429, "soon, please", NOW + timedelta(hours=1)),  # unreadable: as if absent
    (429, str(30 * 86400), NOW + timedelta(days=7)),  # capped at 7 days
    (429, "99999999999999999999", NOW + timedelta(days=7)),
    (429, http_date(NOW + timedelta(days=60)), NOW + timedelta(days=7)),
    (503, http_date(NOW + timedelta(hours=3)), NOW + timedelta(hours=3)),
    (503, "5400", NOW + timedelta(minutes=90)),
    (503, http_date(NOW + timedelta(days=9)), NOW + timedelta(days=7)),
])
def test_retry_after_is_honoured_and_capped(status: int, retry_after: str | None,
                                             until: datetime) -> None:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    plan = decide(outcome=Outcome(status=status, headers=headers, error=f"HTTP {status} Busy"),
                  jitter=1.0)
    assert plan.state.state == "failing"
    assert plan.state.retry_after_until == until
    assert plan.state.next_poll_at is not None
    assert until <= plan.state.next_poll_at
    # The wait is Retry-After or the backoff (15 m + jitter here), whichever is longer.
    assert plan.state.next_poll_at == max(until, NOW + timedelta(minutes=15) * 1.1)


def test_short_retry_after_never_shortens_the_backoff() -> None:
    plan = decide(state=failing(3), outcome=Outcome(status=503, headers={"retry-after": "10"},
                                                    error="HTTP 503 Service Unavailable"))
    assert plan.state.next_poll_at == NOW + timedelta(hours=2)
    assert plan.state.retry_after_until == NOW + timedelta(seconds=10)


def test_503_without_retry_after_is_an_ordinary_error() -> None:
    plan = decide(state=failing(1), outcome=Outcome(status=503, error="HTTP 503 Service Unavailable"))
    assert plan.state.retry_after_until is None
    assert plan.state.next_poll_at == NOW + timedelta(minutes=30)


def test_retry_after_on_other_errors_is_ignored() -> None:
    plan = decide(outcome=Outcome(status=500, headers={"retry-after": "86400"}, error="HTTP 500 Oops"))
    assert plan.state.retry_after_until is None
    assert plan.state.next_poll_at == NOW + timedelta(minutes=15)


# -- 410 Gone -----------------------------------------------------------------------------------

@pytest.mark.parametrize("before", [polled(), failing(4), FeedState(name="world", url=URL)])
def test_410_marks_the_feed_gone_with_no_next_poll(before: FeedState) -> None:
    plan = decide(state=before, outcome=Outcome(status=410, error="HTTP 410 Gone"))
    assert plan.state.state == "gone"
    assert plan.state.next_poll_at is None
    assert plan.state.last_error and "410" in plan.state.last_error
    assert any("410" in line and "no longer polled" in line for line in plan.log)
    assert not plan.document_changed and not plan.alerts


# -- server hints -------------------------------------------------------------------------------

@pytest.mark.parametrize(("interval", "ttl", "headers", "wait"), [
    (timedelta(minutes=15), None, {}, timedelta(minutes=15)),
    (timedelta(minutes=15), 60, {}, timedelta(hours=1)),  # RSS ttl lengthens
    (timedelta(minutes=15), 5, {}, timedelta(minutes=15)),  # ... never shortens
    (timedelta(minutes=15), None, {"cache-control": "public, max-age=7200"}, timedelta(hours=2)),
    (timedelta(minutes=15), None, {"cache-control": "max-age=60"}, timedelta(minutes=15)),
    (timedelta(minutes=15), None, {"cache-control": "no-cache, max-age=0"}, timedelta(minutes=15)),
    (timedelta(minutes=15), None, {"expires": http_date(NOW + timedelta(hours=3))}, timedelta(hours=3)),
    (timedelta(minutes=15), None, {"expires": http_date(NOW - timedelta(hours=3))},
     timedelta(minutes=15)),
    (timedelta(minutes=15), None, {"expires": "0"}, timedelta(minutes=15)),
    # the longest hint wins
    (timedelta(minutes=15), 30, {"cache-control": "max-age=5400",
                                 "expires": http_date(NOW + timedelta(minutes=40))},
     timedelta(minutes=90)),
    # capped at 24 h
    (timedelta(minutes=15), 100_000, {}, timedelta(hours=24)),
    (timedelta(minutes=15), None, {"cache-control": "max-age=31536000"}, timedelta(hours=24)),
    (timedelta(minutes=15), None, {"expires": http_date(NOW + timedelta(days=30))}, timedelta(hours=24)),
    # the cap limits hints, not the user's own longer interval
    (timedelta(hours=48), 100_000, {}, timedelta(hours=48)),
])
def test_server_hints_lengthen_never_shorten_capped_at_a_day(
        interval: timedelta, ttl: int | None, headers: dict[str, str], wait: timedelta) -> None:
    policy = replace(POLICY, interval=interval)
    plan = decide(outcome=Outcome(headers=headers), doc=parsed(article(1), ttl=ttl), policy=policy)
    assert plan.state.state == "ok"
    assert plan.state.next_poll_at == NOW + wait
    jittered = decide(outcome=Outcome(headers=headers), doc=parsed(article(1), ttl=ttl),
                      policy=policy, jitter=1.0)
    assert jittered.state.next_poll_at == NOW + wait * 1.1


def test_cache_hints_on_a_304_lengthen_the_interval_too() -> None:
    plan = decide(outcome=Outcome(status=304, not_modified=True,
                                  headers={"cache-control": "max-age=3600"}))
    assert plan.state.next_poll_at == NOW + timedelta(hours=1)


# -- permanent and temporary redirects ----------------------------------------------------------

def redirected(code: int, target: str = MOVED) -> Outcome:
    return Outcome(final_url=target, redirects=((code, target),))


def poll_series(outcomes: list[Outcome], gaps: list[timedelta]) -> list[FeedPlan]:
    state, now, plans = polled(), NOW, []
    for outcome, gap in zip(outcomes, gaps, strict=True):
        now += gap
        plan = decide(state=state, outcome=outcome, now=now, body_hash=f"h{now.timestamp()}")
        plans.append(plan)
        state = plan.state
    return plans


@pytest.mark.parametrize("code", [301, 308])
def test_permanent_redirect_adopted_after_three_polls_spanning_a_day(code: int) -> None:
    plans = poll_series([redirected(code)] * 3, [timedelta(0), timedelta(hours=12), timedelta(hours=12)])
    assert [p.state.effective_url for p in plans] == [None, None, MOVED]
    assert plans[-1].state.fetch_url == MOVED
    assert plans[-1].state.url == URL  # the configured URL it replaces is kept
    assert any("update the feed's url in the config" in line for line in plans[-1].log)
    assert not any("moved" in line for p in plans[:-1] for line in p.log)


@pytest.mark.parametrize(("count", "gaps"), [
    (3, [timedelta(0), timedelta(hours=1), timedelta(hours=1)]),  # three polls, one day not spanned
    (2, [timedelta(0), timedelta(days=3)]),  # a day spanned, only two polls
])
def test_permanent_redirect_not_adopted_too_early(count: int, gaps: list[timedelta]) -> None:
    plans = poll_series([redirected(301)] * count, gaps)
    assert plans[-1].state.effective_url is None
    assert plans[-1].state.fetch_url == URL


def test_permanent_redirect_adopted_once_the_day_has_passed() -> None:
    plans = poll_series([redirected(301)] * 5, [timedelta(0)] + [timedelta(hours=6)] * 4)
    assert [p.state.effective_url for p in plans] == [None, None, None, None, MOVED]


@pytest.mark.parametrize("code", [302, 307, 303])
def test_temporary_redirect_never_adopted(code: int) -> None:
    plans = poll_series([redirected(code)] * 10, [timedelta(days=1)] * 10)
    assert all(p.state.effective_url is None for p in plans)
    assert plans[-1].state.fetch_url == URL


def test_a_chain_with_a_temporary_hop_is_not_adopted() -> None:
    chain = Outcome(final_url=MOVED, redirects=((301, "https://cdn.example.org/x"), (302, MOVED)))
    plans = poll_series([chain] * 5, [timedelta(days=1)] * 5)
    assert plans[-1].state.effective_url is None


def test_an_interrupted_or_changing_redirect_starts_counting_again() -> None:
    other = "https://elsewhere.example.org/rss"
    interrupted = poll_series(
        [redirected(301), redirected(301), Outcome(), redirected(301), redirected(301)],
        [timedelta(0)] + [timedelta(hours=12)] * 4)
    assert interrupted[-1].state.effective_url is None
    changing = poll_series(
        [redirected(301), redirected(301), redirected(301, other), redirected(301)],
        [timedelta(0)] + [timedelta(hours=12)] * 3)
    assert changing[-1].state.effective_url is None


# -- first poll, backfill, new entries ----------------------------------------------------------

def test_first_poll_is_a_silent_baseline() -> None:
    new = FeedState(name="world", url=URL)
    entries = [article(n, published=NOW - timedelta(minutes=n)) for n in range(1, 6)]
    plan = decide(state=new, doc=parsed(*entries))
    assert plan.state.state == "ok"
    assert plan.state.baseline_at == NOW
    assert len(plan.new_articles) == 5
    assert not any(a.alert for a in plan.new_articles)
    assert plan.alerts == ()
    assert any("baseline" in line for line in plan.log)


def test_first_poll_alerts_only_entries_within_backfill() -> None:
    new = FeedState(name="world", url=URL)
    recent = article(1, published=NOW - timedelta(minutes=50))
    old = article(2, published=NOW - timedelta(hours=3))
    undated = article(3)
    policy = replace(POLICY, backfill=timedelta(hours=1))
    plan = decide(state=new, doc=parsed(recent, old, undated), policy=policy)
    alerted = {a.article.key for a in plan.new_articles if a.alert}
    assert alerted == {recent.key}
    # one row per routed rule and channel; rules not routed to this feed queue nothing
    assert sorted((a.article_key, a.rule, a.channel) for a in plan.alerts) == [
        (recent.key, "truce", "me"), (recent.key, "truce", "newsroom")]
    assert {a.story for a in plan.alerts} == {n.story for n in plan.new_articles if n.alert}


def test_a_failed_first_poll_keeps_the_next_success_silent() -> None:
    new = FeedState(name="world", url=URL)
    failed = decide(state=new, outcome=Outcome(status=None, error="connection refused"))
    assert failed.state.baseline_at is None
    later = decide(state=failed.state, doc=parsed(article(1, published=NOW)),
                   now=NOW + timedelta(hours=1))
    assert later.alerts == ()
    assert later.state.baseline_at == NOW + timedelta(hours=1)


def test_after_the_baseline_new_entries_alert_and_known_keys_do_not() -> None:
    entries = [article(n) for n in range(1, 5)]
    plan = decide(doc=parsed(*entries), known=frozenset({"guid:1", "guid:2", "guid:3"}))
    assert [a.article.key for a in plan.new_articles] == ["guid:4"]
    assert plan.new_articles[0].alert
    assert {(a.article_key, a.channel) for a in plan.alerts} == {("guid:4", "newsroom"), ("guid:4", "me")}
    assert set(plan.seen_keys) == {"guid:1", "guid:2", "guid:3", "guid:4"}
    assert plan.document_changed


def test_nothing_new_queues_nothing() -> None:
    entries = [article(n) for n in range(1, 4)]
    plan = decide(doc=parsed(*entries), known=frozenset(a.key for a in entries))
    assert plan.new_articles == () and plan.alerts == ()
    assert plan.state.state == "ok"


def test_an_unchanged_body_is_not_processed_again() -> None:
    state = replace(polled(), body_hash="same")
    plan = decide(state=state, doc=parsed(article(9)), body_hash="same")
    assert not plan.document_changed
    assert plan.new_articles == () and plan.alerts == ()
    assert plan.state.next_poll_at == NOW + timedelta(minutes=15)


# -- conditional requests -----------------------------------------------------------------------

def test_304_keeps_validators_and_changes_nothing() -> None:
    state = replace(polled(), etag='W/"abc"', last_modified="Sat, 01 Mar 2025 10:00:00 GMT",
                    body_hash="old")
    plan = decide(state=state, outcome=Outcome(status=304, not_modified=True))
    assert (plan.state.etag, plan.state.last_modified) == ('W/"abc"', "Sat, 01 Mar 2025 10:00:00 GMT")
    assert plan.state.body_hash == "old"
    assert plan.state.state == "ok" and plan.state.last_ok_at == NOW
    assert not plan.document_changed and plan.new_articles == ()


def test_304_with_new_validators_stores_them_exactly() -> None:
    state = replace(polled(), etag='"abc"', last_modified="Sat, 01 Mar 2025 10:00:00 GMT")
    plan = decide(state=state, outcome=Outcome(status=304, not_modified=True,
                                               headers={"etag": 'W/"d e f"'}))
    assert plan.state.etag == 'W/"d e f"'
    assert plan.state.last_modified == "Sat, 01 Mar 2025 10:00:00 GMT"


def test_200_stores_validators_exactly_and_drops_absent_ones() -> None:
    state = replace(polled(), etag='"old"', last_modified="Fri, 28 Feb 2025 10:00:00 GMT")
    with_tags = decide(state=state, outcome=Outcome(headers={
        "etag": 'W/"x"', "last-modified": "Sat, 01 Mar 2025 11:59:00 GMT"}), doc=parsed(article(1)))
    assert (with_tags.state.etag, with_tags.state.last_modified) == (
        'W/"x"', "Sat, 01 Mar 2025 11:59:00 GMT")
    without = decide(state=state, outcome=Outcome(), doc=parsed(article(1)))
    assert (without.state.etag, without.state.last_modified) == (None, None)


def test_a_failure_keeps_validators() -> None:
    state = replace(polled(), etag='"abc"', last_modified="Sat, 01 Mar 2025 10:00:00 GMT")
    plan = decide(state=state, outcome=Outcome(status=500, error="HTTP 500 Internal Server Error"))
    assert (plan.state.etag, plan.state.last_modified) == ('"abc"', "Sat, 01 Mar 2025 10:00:00 GMT")
