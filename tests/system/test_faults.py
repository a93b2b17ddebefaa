"""Every fault a feed server can throw, through the real CLI: `run --once` survives, `status` explains.

One feed per FeedServer fault mode, beside healthy feeds, in one config with a small timeout and
max_body so the whole file stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import Cli
from tests.feeds import DATA, rss_feeds
from tests.support.feedserver import FeedServer

MiB = 1024 * 1024
UKRAINIAN = DATA / "feeds" / "Tehtehteh+data-import__tests__stubs__stub_unian_rss.xml"
INTERVAL = timedelta(minutes=15)


def at(value: str | None) -> datetime:
    assert value, "expected a time"
    return datetime.fromisoformat(value)


def between(value: str | None, low: datetime, high: datetime) -> bool:
    moment = at(value)
    return low - timedelta(seconds=2) <= moment <= high + timedelta(seconds=2)


@dataclass
class Faulty:
    srv: FeedServer
    cli: Cli
    retry_date: datetime  # the HTTP-date the 503 feed sends as Retry-After


@pytest.fixture
def faulty(feed_server: FeedServer, make_cli: Any) -> Faulty:
    healthy = rss_feeds(3)
    bodies = {f"healthy{i}": f.read_bytes() for i, f in enumerate(healthy)}
    srv = feed_server
    for name, body in bodies.items():
        srv.put(f"/{name}.xml", body)
    retry_date = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    srv.put("/slow", bodies["healthy0"])  # put() clears a fault: body first, then the fault
    srv.fault("/slow", "slow_first_byte", seconds=8)
    srv.fault("/trickle", "trickle", interval=0.2, seconds=10)
    srv.fault("/reset", "reset")
    srv.fault("/error", "status", code=500)
    srv.fault("/limited", "status", code=429, retry_after=3600)
    srv.fault("/limited-bare", "status", code=429)
    srv.fault("/unavailable", "status", code=503, retry_after=retry_date)
    srv.fault("/loop", "redirect_loop")
    srv.put("/new-home.xml", bodies["healthy1"])
    srv.fault("/moved", "redirect", code=301, location="/new-home.xml")
    srv.fault("/removed", "status", code=410)
    srv.fault("/bomb", "gzip_bomb", size=24 * MiB)
    srv.fault("/huge", "oversized", size=3 * MiB)
    srv.fault("/huge-chunked", "oversized", size=3 * MiB, chunked=True)
    srv.fault("/page", "html_page", href="/healthy2.xml")
    srv.put("/plain", bodies["healthy2"])
    srv.fault("/plain", "content_type", value="text/plain; charset=utf-8")
    srv.put("/uk.xml", UKRAINIAN.read_bytes())
    srv.put("/mangled", UKRAINIAN.read_bytes())
    srv.fault("/mangled", "invalid_utf8", count=3)
    srv.fault("/to-file", "redirect_file")
    paths = ["healthy0.xml", "healthy1.xml", "healthy2.xml", "uk.xml", "slow", "trickle", "reset", "error",
             "limited", "limited-bare", "unavailable", "loop", "moved", "removed", "bomb", "huge",
             "huge-chunked", "page", "plain", "mangled", "to-file"]
    feeds = {p.removesuffix(".xml"): {"url": srv.url(f"/{p}")} for p in paths}
    cli = make_cli(monitor={"timeout": "3s", "max_body": "1MiB", "max_redirects": 5, "interval": "15m"},
                   feeds=feeds, rules={"any": {"query": "news", "channels": ["console"]}})
    return Faulty(srv=srv, cli=cli, retry_date=retry_date)


def test_every_fault_is_recorded_on_its_feed_and_the_pass_goes_on(faulty: Faulty) -> None:
    srv, cli = faulty.srv, faulty.cli
    started = datetime.now(UTC)
    first = cli("run", "--once", timeout=60)
    finished = datetime.now(UTC)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr and "Traceback" not in first.stdout
    assert finished - started < timedelta(seconds=30)  # slow feeds are cut off by `timeout`

    status = cli.status_json()
    assert len(status) == 21
    for name in ("healthy0", "healthy1", "healthy2", "uk", "moved", "plain", "mangled"):
        row = status[name]
        assert row["state"] == "ok", (name, row)
        assert row["last_error"] is None and row["failures"] == 0
        assert row["entries"] > 0, name
        assert between(row["next_poll_at"], started + INTERVAL, finished + INTERVAL * 1.1), row

    def failing(name: str, *needles: str) -> dict[str, Any]:
        row: dict[str, Any] = status[name]
        assert row["state"] == "failing", (name, row)
        assert row["failures"] == 1
        assert row["last_ok_at"] is None and row["last_polled_at"]
        error = row["last_error"]
        assert error and all(n in error for n in needles), (name, error)
        assert "Traceback" not in error and "Error(" not in error
        return row

    # ordinary errors: next try after the interval (the first backoff step) plus jitter
    for name, needles in {
        "slow": ("timed out", "3 s"),
        "trickle": ("larger than 1 MiB",),  # it announces 10 MiB: refused before reading
        "error": ("HTTP 500 Internal Server Error",),
        "loop": ("more than 5 redirects",),
        "bomb": ("larger than 1 MiB", "max_body"),
        "huge": ("larger than 1 MiB", "max_body"),
        "huge-chunked": ("larger than 1 MiB", "max_body"),
        "page": ("HTML page", srv.url("/healthy2.xml")),
        "to-file": ("file:///etc/passwd", "refused"),
    }.items():
        row = failing(name, *needles)
        assert between(row["next_poll_at"], started + INTERVAL, finished + INTERVAL * 1.1), row
    reset = failing("reset")
    assert "reset" in reset["last_error"] or "closed the connection" in reset["last_error"]

    # rate limits: Retry-After honoured, at least an hour without one
    limited = failing("limited", "HTTP 429 Too Many Requests")
    assert between(limited["next_poll_at"], started + timedelta(hours=1), finished + timedelta(hours=1))
    bare = failing("limited-bare", "HTTP 429")
    assert at(bare["next_poll_at"]) >= started + timedelta(hours=1)
    assert at(bare["next_poll_at"]) <= finished + timedelta(hours=1, minutes=10)
    unavailable = failing("unavailable", "HTTP 503 Service Unavailable")
    assert between(unavailable["next_poll_at"], faulty.retry_date, faulty.retry_date)

    gone = status["removed"]
    assert gone["state"] == "gone" and gone["next_poll_at"] is None
    assert "410" in gone["last_error"]

    moved = status["moved"]  # one 301 is not yet a move (3 polls over a day)
    assert moved["effective_url"] is None and moved["url"] == srv.url("/moved")

    # warnings for documents parsed anyway name the feed
    assert any("plain" in line and "text/plain" in line for line in first.stderr.splitlines())
    assert any("mangled" in line and "invalid" in line for line in first.stderr.splitlines())
    # three bad bytes do not garble the rest of a UTF-8 feed: its Ukrainian words still match
    query = "title:(Україні OR України OR коронавірусу)"
    clean = cli("test-rule", "--query", query, "--feed", "uk", "--json").stdout.splitlines()
    mangled = cli("test-rule", "--query", query, "--feed", "mangled", "--json").stdout.splitlines()
    assert len(clean) >= 6
    assert len(mangled) >= len(clean) - 3

    human = cli("status")
    assert human.returncode == 0
    lines = human.stdout.splitlines()
    for name in status:
        assert any(line.startswith(name + " ") for line in lines), name
    assert any(line.startswith("error ") and "HTTP 500 Internal Server Error" in line for line in lines)
    assert any(line.startswith("removed ") and "gone" in line for line in lines)

    # -- a second pass: Retry-After not expired and gone feeds are skipped, and it says so ----------
    srv.reset_stats()
    second = cli("run", "--once", timeout=60)
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    requested = {r.path.split("?")[0] for r in srv.requests}
    for skipped in ("/limited", "/limited-bare", "/unavailable", "/removed"):
        assert skipped not in requested, skipped
    for retried in ("/error", "/reset", "/to-file", "/healthy0.xml", "/moved"):
        assert retried in requested, retried
    stderr_lines = second.stderr.splitlines()
    for name in ("limited", "limited-bare", "unavailable"):
        assert any(f"feed {name}:" in line and "skipped" in line and "rate-limited" in line
                   for line in stderr_lines), (name, second.stderr)
    assert any("feed removed:" in line and "skipped" in line and "410" in line for line in stderr_lines)

    after = cli.status_json()
    assert after["error"]["failures"] == 2
    assert between(after["error"]["next_poll_at"], started + 2 * INTERVAL,
                   datetime.now(UTC) + 2 * INTERVAL * 1.1)
    assert after["limited"]["failures"] == 1  # not polled, so not counted again
    assert after["removed"]["state"] == "gone"
    assert {after[n]["state"] for n in ("healthy0", "healthy1", "healthy2", "moved")} == {"ok"}
    # conditional requests for the healthy feeds
    assert all("if-none-match" in r.headers for r in srv.requests_for("/healthy0.xml"))


def test_a_trickling_server_is_cut_off_by_the_total_timeout(feed_server: FeedServer, make_cli: Any) -> None:
    [healthy] = rss_feeds(1)
    feed_server.put("/ok.xml", healthy.read_bytes())
    feed_server.fault("/trickle", "trickle", interval=0.2, seconds=15)
    feed_server.fault("/cut", "reset", after_headers=True)
    cli = make_cli(monitor={"timeout": "3s"},  # max_body stays 10 MiB: the trickle is not refused early
                   feeds={"ok": {"url": feed_server.url("/ok.xml")},
                          "trickle": {"url": feed_server.url("/trickle")},
                          "cut": {"url": feed_server.url("/cut")}})
    started = datetime.now(UTC)
    result = cli("run", "--once", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert datetime.now(UTC) - started < timedelta(seconds=20)
    status = cli.status_json()
    assert status["ok"]["state"] == "ok"
    assert status["trickle"]["state"] == "failing"
    assert status["trickle"]["last_error"] == "timed out after 3 s"
    assert status["cut"]["state"] == "failing"
    assert any(word in status["cut"]["last_error"] for word in ("reset", "cut short", "closed")), status["cut"]
    assert len(feed_server.requests_for("/trickle")) == 1  # no immediate retry inside one poll
