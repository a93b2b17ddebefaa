"""`[monitor] listen`: /healthz and /metrics over real HTTP on 127.0.0.1.

What a load balancer, systemd and Prometheus see: the status code follows the health check,
the metrics text carries what happened, a busy port is a readable error.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

import pytest

from monitor import metrics
from monitor.errors import MonitorError, StoreError
from monitor.health import HealthServer
from monitor.models import Article, FeedPlan, FeedState, NewArticle, RuleMatch


def get(server: HealthServer, path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


def sample(text: str, line_start: str) -> float:
    """The value of the one sample whose line starts with `line_start` (name{labels})."""
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(line_start + " ")
    ]
    assert len(values) == 1, f"{line_start!r} in:\n{text}"
    return values[0]


class Health:
    """A health check the test flips."""

    def __init__(self) -> None:
        self.verdict = (True, "ok")

    def __call__(self) -> tuple[bool, str]:
        return self.verdict


@pytest.fixture
def health() -> Health:
    return Health()


@pytest.fixture
def serve(health: Health) -> Iterator[Callable[..., HealthServer]]:
    servers: list[HealthServer] = []

    def start(pending: Callable[[], Mapping[str, int]] | None = None) -> HealthServer:
        server = HealthServer("127.0.0.1:0", is_healthy=health, pending=pending)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_healthz_follows_the_health_check(
    serve: Callable[..., HealthServer], health: Health
) -> None:
    server = serve()
    assert server.port > 0
    assert get(server, "/healthz") == (200, "text/plain; charset=utf-8", "ok\n")

    health.verdict = (False, "the scheduler made no progress for 300 s (limit 62 s)")
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert body == "the scheduler made no progress for 300 s (limit 62 s)\n"

    health.verdict = (True, "ok")
    assert get(server, "/healthz")[0] == 200


def test_a_health_check_that_raises_is_unhealthy_not_a_dead_server(
    serve: Callable[..., HealthServer], health: Health
) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    server = HealthServer("127.0.0.1:0", is_healthy=broken)
    server.start()
    try:
        status, _, body = get(server, "/healthz")
        assert status == 503
        assert "RuntimeError: boom" in body
        assert get(server, "/healthz")[0] == 503  # still serving
    finally:
        server.stop()


def test_metrics_show_what_happened(serve: Callable[..., HealthServer]) -> None:
    server = serve(pending=lambda: {"newsroom": 3, "me": 0})
    # The registry lives for the process: these names are used by this test only.
    metrics.declare(feeds=["hm-world"], rules=["hm-truce"], channels=["newsroom"])
    metrics.record_fetch("hm-world", 0.42, failed=False)
    metrics.record_fetch("hm-world", 61.0, failed=True)
    metrics.record_plan(_plan("hm-world", state="ok", rules=("hm-truce",), articles=2))
    metrics.record_plan(_plan("hm-world", state="failing"))
    metrics.record_alert("newsroom", "queued", 2)
    metrics.record_alert("newsroom", "sent")
    metrics.record_alert("newsroom", "failed_attempt")
    metrics.record_progress(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))

    status, content_type, text = get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert sample(text, 'monitor_polls_total{feed="hm-world",result="ok"}') == 1
    assert sample(text, 'monitor_polls_total{feed="hm-world",result="error"}') == 1
    assert sample(text, 'monitor_polls_total{feed="hm-world",result="gone"}') == 0  # declared
    assert sample(text, 'monitor_fetch_errors_total{feed="hm-world"}') == 1
    assert sample(text, 'monitor_entries_new_total{feed="hm-world"}') == 2
    assert sample(text, 'monitor_matches_total{rule="hm-truce"}') == 2
    assert sample(text, 'monitor_alerts_total{channel="newsroom",status="queued"}') == 2
    assert sample(text, 'monitor_alerts_total{channel="newsroom",status="sent"}') == 1
    assert sample(text, 'monitor_alerts_total{channel="newsroom",status="failed"}') == 0
    assert sample(text, 'monitor_fetch_seconds_bucket{le="0.5"}') >= 1
    assert sample(text, 'monitor_fetch_seconds_bucket{le="+Inf"}') >= 2
    assert sample(text, "monitor_last_progress_timestamp_seconds") == 1735787045.0
    assert sample(text, 'monitor_alerts_pending{channel="newsroom"}') == 3
    assert sample(text, 'monitor_alerts_pending{channel="me"}') == 0
    assert "# TYPE monitor_alerts_pending gauge" in text
    assert "_created" not in text


def test_metrics_are_served_when_the_pending_count_cannot_be_read(
    serve: Callable[..., HealthServer],
) -> None:
    def locked() -> Mapping[str, int]:
        raise StoreError("the database monitor.db is locked")

    server = serve(pending=locked)
    status, _, text = get(server, "/metrics")
    assert status == 200
    assert "monitor_polls_total" in text
    assert "monitor_alerts_pending{" not in text


def test_other_paths_are_404(serve: Callable[..., HealthServer]) -> None:
    server = serve()
    for path in ("/", "/health", "/metrics/x", "/healthz/"):
        assert get(server, path)[0] == 404
    assert get(server, "/healthz?verbose=1")[0] == 200


def test_a_port_in_use_names_the_listen_value(health: Health) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MonitorError) as caught:
            HealthServer(f"127.0.0.1:{port}", is_healthy=health)
    message = caught.value.message
    assert f"[monitor] listen = '127.0.0.1:{port}'" in message
    assert "in use" in message
    assert caught.value.hint and "pick a free port" in caught.value.hint


@pytest.mark.parametrize("listen", ["192.0.2.1:9100", "no-such-host.invalid:9100", "9100"])
def test_an_unusable_address_is_a_readable_error(health: Health, listen: str) -> None:
    with pytest.raises(MonitorError) as caught:
        HealthServer(listen, is_healthy=health)
    assert f"[monitor] listen = {listen!r}" in caught.value.message
    assert caught.value.hint


def test_stop_frees_the_port(health: Health) -> None:
    server = HealthServer("127.0.0.1:0", is_healthy=health)
    server.start()
    port = server.port
    server.stop()
    again = HealthServer(f"127.0.0.1:{port}", is_healthy=health)
    again.stop()  # never started: closing is enough


def _plan(feed: str, *, state: str, rules: tuple[str, ...] = (), articles: int = 0) -> FeedPlan:
    """A stored poll of `feed`: `articles` new entries, each matching every rule in `rules`."""
    new = tuple(
        NewArticle(article=Article(feed=feed, key=f"k{n}", title=f"t{n}", link=None, text=""),
                   story=f"s{n}", matches=tuple(RuleMatch(rule=r) for r in rules), alert=True)
        for n in range(articles)
    )
    return FeedPlan(state=FeedState(name=feed, url="https://example.org/f", state=state),
                    new_articles=new, document_changed=bool(articles))
