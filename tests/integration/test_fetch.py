"""monitor.fetch against a real local HTTP server (tests/support/feedserver.py).

Every fault a feed server can commit must come back as a readable error, quickly, with
bounded memory, and never stop the other feeds.
"""

from __future__ import annotations

import gzip
import resource
import signal
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from monitor.fetch import Fetcher, FetchLimits, FetchRequest, FetchResult
from tests.support.feedserver import FeedServer

MiB = 1024 * 1024
FEED = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>World</title>'
    b"<item><title>Truce talks resume</title><link>https://example.org/a</link></item>"
    b"</channel></rss>\n"
)
UA = "monitor/0.1.0 (+https://github.com/monitor-news/monitor)"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with FeedServer() as srv:
        yield srv


def limits(**overrides: float) -> FetchLimits:
    # Short timeouts keep the whole file fast; each test states the ones it depends on.
    values: dict[str, float] = {"timeout": 5.0, "connect_timeout": 2.0, "read_timeout": 3.0}
    values.update(overrides)
    return FetchLimits(
        user_agent=UA,
        timeout=values["timeout"],
        connect_timeout=values["connect_timeout"],
        read_timeout=values["read_timeout"],
        max_body=int(values.get("max_body", 10 * MiB)),
        max_redirects=int(values.get("max_redirects", 10)),
        per_host=int(values.get("per_host", 2)),
        concurrency=int(values.get("concurrency", 32)),
    )


def fetch_one(server: FeedServer, path: str, **overrides: float) -> FetchResult:
    [result] = Fetcher(limits(**overrides)).fetch_all(
        [FetchRequest(feed="world", url=server.url(path))]
    )
    return result


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- conditional GET -------------------------------------------------------------------------


def test_conditional_get_round_trip(server: FeedServer) -> None:
    server.put("/world.xml", FEED, headers={"Set-Cookie": "session=abc; Path=/"})
    fetcher = Fetcher(limits())

    [first] = fetcher.fetch_all([FetchRequest(feed="world", url=server.url("/world.xml"))])
    assert first.error is None and first.status == 200 and not first.not_modified
    assert first.body == FEED
    assert first.final_url == server.url("/world.xml") and first.redirects == ()
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    assert first.headers["content-type"].startswith("application/rss+xml")

    [second] = fetcher.fetch_all(
        [
            FetchRequest(
                feed="world",
                url=server.url("/world.xml"),
                etag=etag,
                last_modified=last_modified,
            )
        ]
    )
    assert second.not_modified and second.status == 304
    assert second.body is None and second.error is None

    sent = server.requests_for("/world.xml")
    assert len(sent) == 2
    assert "if-none-match" not in sent[0].headers
    assert sent[1].headers["if-none-match"] == etag  # exactly as received
    assert sent[1].headers["if-modified-since"] == last_modified
    assert sent[1].headers["user-agent"] == UA
    assert sent[1].headers["accept"].startswith("application/rss+xml")
    assert "cookie" not in sent[1].headers


def test_validators_are_sent_back_byte_for_byte(server: FeedServer) -> None:
    odd_etag = 'W/"v1; odd, tag"'
    server.put("/f", FEED, headers={"ETag": odd_etag, "Last-Modified": "not even a date"})
    [result] = Fetcher(limits()).fetch_all(
        [
            FetchRequest(
                feed="f", url=server.url("/f"), etag=odd_etag, last_modified="not even a date"
            )
        ]
    )
    [seen] = server.requests_for("/f")
    assert seen.headers["if-none-match"] == odd_etag
    assert seen.headers["if-modified-since"] == "not even a date"
    assert result.not_modified


def test_changed_feed_is_fetched_again(server: FeedServer) -> None:
    server.put("/f", FEED)
    fetcher = Fetcher(limits())
    [first] = fetcher.fetch_all([FetchRequest(feed="f", url=server.url("/f"))])
    server.put("/f", FEED.replace(b"resume", b"collapse"))
    [second] = fetcher.fetch_all(
        [
            FetchRequest(
                feed="f",
                url=server.url("/f"),
                etag=first.headers["etag"],
                last_modified=first.headers["last-modified"],
            )
        ]
    )
    assert second.status == 200 and not second.not_modified
    assert second.body is not None and b"collapse" in second.body


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_feed_is_inflated(server: FeedServer, encoding: str) -> None:
    if encoding == "gzip":
        body = gzip.compress(FEED)
    elif encoding == "deflate":
        body = zlib.compress(FEED)
    else:  # some servers send raw deflate under the "deflate" name
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = compressor.compress(FEED) + compressor.flush()
    name = "gzip" if encoding == "gzip" else "deflate"
    server.put("/z", body, headers={"Content-Encoding": name})
    result = fetch_one(server, "/z")
    assert result.error is None and result.body == FEED
    assert "gzip" in server.requests_for("/z")[0].headers["accept-encoding"]


# -- HTTP errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (404, None, "HTTP 404 Not Found"),
        (410, None, "HTTP 410 Gone"),
        (500, None, "HTTP 500 Internal Server Error"),
        (403, "Go Away", "HTTP 403 Go Away"),
    ],
)
def test_http_error_is_a_result(
    server: FeedServer, code: int, reason: str | None, expected: str
) -> None:
    server.fault("/f", "status", code=code, reason=reason)
    result = fetch_one(server, "/f")
    assert result.status == code and result.error == expected
    assert result.body is None and not result.not_modified


def test_retry_after_is_returned_not_interpreted(server: FeedServer) -> None:
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    server.fault("/seconds", "status", code=429, retry_after=120)
    server.fault("/none", "status", code=429)
    server.fault("/date", "status", code=503, retry_after=later, headers={"Cache-Control": "x"})
    results = Fetcher(limits()).fetch_all(
        [FetchRequest(feed=p, url=server.url(p)) for p in ("/seconds", "/none", "/date")]
    )
    assert [r.error for r in results] == [
        "HTTP 429 Too Many Requests",
        "HTTP 429 Too Many Requests",
        "HTTP 503 Service Unavailable",
    ]
    assert results[0].headers["retry-after"] == "120"
    assert "retry-after" not in results[1].headers
    assert results[2].headers["retry-after"] == format_datetime(later, usegmt=True)
    assert results[2].headers["cache-control"] == "x"


# -- timeouts and broken connections ---------------------------------------------------------


def test_slow_first_byte_within_limits_succeeds(server: FeedServer) -> None:
    server.put("/f", FEED)
    server.fault("/f", "slow_first_byte", seconds=0.3)
    result = fetch_one(server, "/f")
    assert result.error is None and result.body == FEED


def test_slow_first_byte_beyond_read_timeout(server: FeedServer) -> None:
    server.put("/f", FEED)
    server.fault("/f", "slow_first_byte", seconds=10)
    started = time.monotonic()
    result = fetch_one(server, "/f", read_timeout=0.5)
    assert time.monotonic() - started < 3
    assert result.status is None
    assert result.error == f"no data from {server.base_url[7:]} for 0.5 s (read_timeout)"


def test_trickling_server_is_cut_off_by_total_timeout(server: FeedServer) -> None:
    # A byte every 0.1 s never trips the read timeout; only the total one stops it.
    server.fault("/f", "trickle", interval=0.1)
    started = time.monotonic()
    result = fetch_one(server, "/f", timeout=1.5, read_timeout=1.0)
    assert 1.4 < time.monotonic() - started < 3.5
    assert result.error == "timed out after 1.5 s"
    assert result.body is None


@pytest.mark.parametrize("after_headers", [False, True])
def test_connection_reset(server: FeedServer, after_headers: bool) -> None:
    server.fault("/f", "reset", after_headers=after_headers)
    result = fetch_one(server, "/f")
    assert result.error == "connection reset by peer"
    assert result.body is None
    assert result.elapsed < 2


def test_connection_refused_on_a_closed_port() -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/feed.xml"
    [result] = Fetcher(limits()).fetch_all([FetchRequest(feed="gone", url=url)])
    assert result.status is None
    assert result.error == f"connection refused by 127.0.0.1:{port}"
    assert result.final_url == url and result.headers == {}


def test_unresolvable_host() -> None:
    url = "http://feeds.example.invalid/rss"
    [result] = Fetcher(limits()).fetch_all([FetchRequest(feed="x", url=url)])
    assert result.error == "could not resolve host feeds.example.invalid"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.org/feed.xml"])
def test_non_http_feed_url_is_refused(url: str) -> None:
    [result] = Fetcher(limits()).fetch_all([FetchRequest(feed="x", url=url)])
    assert result.error == f"not an http(s) URL: {url}"
    assert result.status is None


# -- redirects -------------------------------------------------------------------------------


def test_redirects_are_followed_and_recorded(server: FeedServer) -> None:
    server.put("/new/feed.xml", FEED)
    server.fault("/old", "redirect", location="/moved", code=301)
    server.fault("/moved", "redirect", location="new/feed.xml", code=307)  # relative
    result = fetch_one(server, "/old")
    assert result.error is None and result.body == FEED and result.status == 200
    assert result.url == server.url("/old")
    assert result.final_url == server.url("/new/feed.xml")
    assert result.redirects == (
        (301, server.url("/moved")),
        (307, server.url("/new/feed.xml")),
    )


@pytest.mark.parametrize("code", [301, 302, 307, 308])
def test_each_redirect_code_is_followed(server: FeedServer, code: int) -> None:
    server.put("/feed", FEED)
    server.fault("/r", "redirect", location="/feed", code=code)
    result = fetch_one(server, "/r")
    assert result.body == FEED and result.redirects == ((code, server.url("/feed")),)


def test_redirect_to_file_is_refused(server: FeedServer) -> None:
    server.fault("/f", "redirect_file")
    result = fetch_one(server, "/f")
    assert result.error == "redirect to a non-http(s) URL refused (file:///etc/passwd)"
    assert result.status == 302 and result.body is None
    assert result.redirects == ((302, "file:///etc/passwd"),)
    assert result.final_url == server.url("/f")


def test_redirect_loop_stops_at_max_redirects(server: FeedServer) -> None:
    server.fault("/loop", "redirect_loop")
    result = fetch_one(server, "/loop", max_redirects=3)
    assert result.error == "more than 3 redirects (max_redirects)"
    assert len(result.redirects) == 4
    assert len(server.requests_for("/loop")) == 4  # the 4th redirect is not followed


def test_redirect_without_location(server: FeedServer) -> None:
    server.fault("/f", "status", code=302)
    assert fetch_one(server, "/f").error == "HTTP 302 Found without a Location header"


# -- size limits -----------------------------------------------------------------------------


def test_gzip_bomb_is_refused_with_bounded_memory(server: FeedServer) -> None:
    server.fault("/bomb", "gzip_bomb", size=200 * MiB)  # built here, outside the measure
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = fetch_one(server, "/bomb", max_body=4 * MiB)
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert result.error == "response larger than 4 MiB (max_body)"
    assert result.body is None and result.status == 200
    assert took < 5
    assert peak < 20 * MiB, f"peak Python allocation {peak / MiB:.1f} MiB"
    assert rss_growth * 1024 < 60 * MiB, f"RSS grew by {rss_growth / 1024:.0f} MiB"


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_body_is_refused(server: FeedServer, chunked: bool) -> None:
    server.fault("/big", "oversized", size=3 * MiB, chunked=chunked)
    result = fetch_one(server, "/big", max_body=1 * MiB)
    assert result.error == "response larger than 1 MiB (max_body)"
    assert result.body is None


def test_body_of_exactly_max_body_is_accepted(server: FeedServer) -> None:
    server.put("/exact", b"x" * MiB)
    result = fetch_one(server, "/exact", max_body=1 * MiB)
    assert result.error is None and result.body is not None and len(result.body) == MiB


# -- content problems are left to the parser -------------------------------------------------


def test_html_page_is_returned_for_the_parser(server: FeedServer) -> None:
    server.fault("/", "html_page", href="/news/rss.xml")
    result = fetch_one(server, "/")
    assert result.error is None and result.status == 200
    assert result.headers["content-type"].startswith("text/html")
    assert result.body is not None
    assert b'<link rel="alternate" type="application/rss+xml"' in result.body
    assert b'href="/news/rss.xml"' in result.body


def test_wrong_content_type_and_invalid_utf8_still_deliver_the_body(server: FeedServer) -> None:
    server.put("/ct", FEED)
    server.fault("/ct", "content_type", value="text/plain")
    server.put("/bad", FEED)
    server.fault("/bad", "invalid_utf8", count=3)
    ct, bad = Fetcher(limits()).fetch_all(
        [
            FetchRequest(feed="ct", url=server.url("/ct")),
            FetchRequest(feed="b", url=server.url("/bad")),
        ]
    )
    assert ct.error is None and ct.body == FEED and ct.headers["content-type"] == "text/plain"
    assert bad.error is None and bad.body is not None and len(bad.body) == len(FEED)
    assert bad.body.count(b"\xff") == 3
    with pytest.raises(UnicodeDecodeError):
        bad.body.decode("utf-8")


# -- concurrency, ordering, cancellation -----------------------------------------------------


def test_per_host_limit_is_respected(server: FeedServer) -> None:
    for i in range(8):
        server.put(f"/f{i}", FEED)
        server.fault(f"/f{i}", "delay", seconds=0.25)
    requests = [FetchRequest(feed=f"f{i}", url=server.url(f"/f{i}")) for i in range(8)]
    started = time.monotonic()
    results = Fetcher(limits(per_host=2)).fetch_all(requests)
    took = time.monotonic() - started
    assert [r.error for r in results] == [None] * 8
    assert server.max_in_flight == 2  # bounded, and actually concurrent
    assert took >= 4 * 0.25 - 0.05  # 8 requests, 2 at a time
    assert server.connections_opened <= 2  # keep-alive: connections are reused


def test_global_concurrency_bound_across_hosts(server: FeedServer) -> None:
    # 127.0.0.1 and localhost are two hosts for the client, one server here.
    port = server.base_url.rsplit(":", 1)[1]
    requests = []
    for i in range(6):
        server.put(f"/g{i}", FEED)
        server.fault(f"/g{i}", "delay", seconds=0.25)
        host = "127.0.0.1" if i % 2 else "localhost"
        requests.append(FetchRequest(feed=f"g{i}", url=f"http://{host}:{port}/g{i}"))
    results = Fetcher(limits(per_host=2, concurrency=3)).fetch_all(requests)
    assert [r.error for r in results] == [None] * 6
    assert server.max_in_flight == 3


def test_a_busy_host_neither_starves_others_nor_times_out_its_queue(server: FeedServer) -> None:
    # Six slow feeds on one host, served one at a time, take 3 s in all: more than the 1.5 s
    # timeout, which counts from when each request starts. The other host's feed, listed
    # last, is not stuck behind them.
    port = server.base_url.rsplit(":", 1)[1]
    requests = []
    for i in range(6):
        server.put(f"/busy{i}", FEED)
        server.fault(f"/busy{i}", "delay", seconds=0.5)
        requests.append(FetchRequest(feed=f"busy{i}", url=f"http://localhost:{port}/busy{i}"))
    server.put("/quick", FEED)
    requests.append(FetchRequest(feed="quick", url=server.url("/quick")))
    started = time.time()
    results = Fetcher(limits(timeout=1.5, per_host=1, concurrency=3)).fetch_all(requests)
    assert [r.error for r in results] == [None] * 7
    [quick] = server.requests_for("/quick")
    assert quick.at - started < 0.4


def test_results_keep_request_order_and_one_failure_stops_nothing(server: FeedServer) -> None:
    server.put("/ok1", FEED)
    server.put("/ok2", FEED.replace(b"World", b"Europe"))
    server.put("/slow", FEED)
    server.fault("/slow", "delay", seconds=0.3)  # finishes last, still listed first
    server.fault("/missing", "status", code=404)
    paths = ["/slow", "/missing", "/ok1", "/ok2"]
    results = Fetcher(limits(per_host=4)).fetch_all(
        [FetchRequest(feed=p, url=server.url(p)) for p in paths]
    )
    assert [r.feed for r in results] == paths
    assert [r.status for r in results] == [200, 404, 200, 200]
    assert results[3].body is not None and b"Europe" in results[3].body


def test_empty_request_list() -> None:
    assert Fetcher(limits()).fetch_all([]) == []


def test_cancel_abandons_in_flight_fetches_promptly(server: FeedServer) -> None:
    for i in range(4):
        server.put(f"/c{i}", FEED)
        server.fault(f"/c{i}", "delay", seconds=30)
    fetcher = Fetcher(limits(timeout=60, read_timeout=60))
    requests = [FetchRequest(feed=f"c{i}", url=server.url(f"/c{i}")) for i in range(4)]
    timer = threading.Timer(0.3, fetcher.cancel)
    started = time.monotonic()
    timer.start()
    results = fetcher.fetch_all(requests)
    took = time.monotonic() - started
    timer.join()
    assert took < 2
    assert [r.error for r in results] == ["cancelled"] * 4
    assert [r.feed for r in results] == ["c0", "c1", "c2", "c3"]
    assert all(r.status is None and r.body is None for r in results)
    # Once cancelled (the daemon is stopping), a later pass does no work.
    again = fetcher.fetch_all(requests[:1])
    assert again[0].error == "cancelled"


def test_cancel_from_a_signal_handler(server: FeedServer) -> None:
    # The daemon calls cancel() from its SIGTERM handler, in the thread running fetch_all.
    server.put("/s", FEED)
    server.fault("/s", "delay", seconds=30)
    fetcher = Fetcher(limits(timeout=60, read_timeout=60))
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fetcher.cancel())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        started = time.monotonic()
        [result] = fetcher.fetch_all([FetchRequest(feed="s", url=server.url("/s"))])
        took = time.monotonic() - started
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert result.error == "cancelled"
    assert took < 2
