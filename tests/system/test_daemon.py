"""The daemon through the real CLI: start, deliver, SIGHUP reload, SIGTERM, SIGKILL, lock."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Cli, write_config
from tests.feeds import Item, rss_feeds, with_items
from tests.support.feedserver import FeedServer
from tests.support.sinks import WebhookSink


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def story(n: int, word: str = "ceasefire") -> Item:
    return Item(title=f"Story {n}: talks on a {word} resume in Istanbul",
                link=f"https://news.example.org/story/{n}", description="Delegations met.")


@pytest.fixture
def daemon_setup(feed_server: FeedServer, webhook: WebhookSink, make_cli):  # type: ignore[no-untyped-def]
    files = rss_feeds(2)
    for index, file in enumerate(files):
        feed_server.put(f"/feed{index}.xml", file.read_bytes())
    sections = {
        "monitor": {"interval": "1s"},
        "feeds": {f"feed{i}": {"url": feed_server.url(f"/feed{i}.xml")} for i in range(len(files))},
        "channels": {"hook": {"url": webhook.json_url()}},
        "rules": {"ceasefire": {"query": "ceasefire", "channels": ["hook"]}},
    }
    return files, sections, make_cli(**sections)


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def baseline_done(cli: Cli, feeds: int) -> Callable[[], bool]:
    def done() -> bool:
        result = cli("status", "--json")
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        return result.returncode == 0 and len(rows) == feeds and all(r["state"] == "ok" for r in rows)
    return done


def test_daemon_alerts_then_sigterm_exits_zero_quickly(daemon_setup, feed_server: FeedServer,
                                                        webhook: WebhookSink, running) -> None:
    files, _, cli = daemon_setup
    daemon = cli.popen("run")
    running.append(daemon)
    wait_until(baseline_done(cli, 2), what="the first polls")
    assert webhook.posts == []

    feed_server.put("/feed1.xml", with_items(files[1].read_bytes(), [story(1)]))
    posts = webhook.wait_for(1, timeout=20)
    assert posts[0]["title"] == story(1).title and "ceasefire" in posts[0]["message"]

    second = cli("run", "--once")
    assert second.returncode == 75
    assert f"PID {daemon.pid}" in second.stderr
    assert cli("status").returncode == 0  # read commands work beside the daemon

    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    _, err = daemon.communicate()
    assert "Traceback" not in err
    assert len(webhook.posts) == 1


def test_sighup_applies_a_valid_config_and_keeps_the_old_one_when_invalid(
        daemon_setup, feed_server: FeedServer, webhook: WebhookSink, running) -> None:
    files, sections, cli = daemon_setup
    daemon = cli.popen("run")
    running.append(daemon)
    wait_until(baseline_done(cli, 2), what="the first polls")

    # A new rule via reload: it alerts on articles arriving after the change. A feed added in
    # the same edit shows when the new config is in force (it gets polled).
    sections["rules"]["truce"] = {"query": "truce", "channels": ["hook"]}
    feed_server.put("/extra.xml", files[0].read_bytes())
    sections["feeds"]["extra"] = {"url": feed_server.url("/extra.xml")}
    write_config(cli.config, **sections)
    daemon.send_signal(signal.SIGHUP)
    wait_until(baseline_done(cli, 3), what="the reloaded config")
    feed_server.put("/feed0.xml", with_items(files[0].read_bytes(), [story(2, "truce")]))
    posts = webhook.wait_for(1, timeout=20)
    assert posts[0]["title"] == story(2, "truce").title and "truce" in posts[0]["message"]

    # An invalid config is refused; the old one (with both rules) stays in force.
    cli.config.write_text(cli.config.read_text() + "\n[rules.broken]\nquery = \"(unclosed\"\n")
    daemon.send_signal(signal.SIGHUP)
    time.sleep(1.5)
    assert daemon.poll() is None
    feed_server.put("/feed1.xml", with_items(files[1].read_bytes(), [story(3, "truce")]))
    posts = webhook.wait_for(2, timeout=20)
    assert posts[1]["title"] == story(3, "truce").title

    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    _, err = daemon.communicate()
    assert "rules.broken.query" in err and "old one stays in force" in err


def test_sigkill_during_delivery_loses_nothing_and_repeats_at_most_one(
        daemon_setup, feed_server: FeedServer, webhook: WebhookSink, running) -> None:
    files, _, cli = daemon_setup
    assert cli("run", "--once").returncode == 0
    stories = [story(n) for n in range(10)]
    feed_server.put("/feed0.xml", with_items(files[0].read_bytes(), stories))
    webhook.delay = 0.4  # each post is received, then answered slowly: a kill lands mid-send

    daemon = cli.popen("run")
    running.append(daemon)
    webhook.wait_for(3, timeout=30)
    daemon.send_signal(signal.SIGKILL)
    daemon.wait(timeout=10)
    webhook.delay = 0.0

    result = cli("run", "--once")
    assert result.returncode == 0, result.stderr
    titles = [p["title"] for p in webhook.posts]
    assert set(titles) == {s.title for s in stories}
    assert len(titles) - len(set(titles)) <= 1

    database = cli.config.parent / "monitor.db"
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        statuses = {row[0] for row in conn.execute("SELECT status FROM alerts")}
    assert statuses == {"sent"}


def test_sd_notify_ready_and_stopping(daemon_setup, tmp_path: Path, running) -> None:
    _, _, cli = daemon_setup
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(20)
        daemon = subprocess.Popen(
            [*cli_command(cli), "run"], env={**cli.env, "NOTIFY_SOCKET": address},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cli.config.parent)
        running.append(daemon)
        messages = [sock.recv(4096).decode()]
        assert "READY=1" in messages[0]
        daemon.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages[-1]:
            messages.append(sock.recv(4096).decode())
        assert daemon.wait(timeout=10) == 0


def cli_command(cli: Cli) -> list[str]:
    import sys
    return [sys.executable, "-m", "monitor", "--config", str(cli.config)]


def test_bad_config_exits_78_without_traceback(make_cli) -> None:
    cli = make_cli(rules={"r": {"query": "NOT", "channels": ["console"]}})
    result = cli("run")
    assert result.returncode == 78
    assert result.stderr.startswith("rules.r.query:")
    assert "Traceback" not in result.stderr


def test_make_run_exec_daemon_and_sigterm_exits_zero(tmp_path: Path) -> None:
    """`make run`'s last step execs the daemon: SIGTERM to it ends `make run` with 0."""
    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    # The install step first, with the network as it is (pip may need the package index) ...
    install = subprocess.run(["make", "--no-print-directory", ".venv/.installed"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    env["STATE_DIRECTORY"] = str(tmp_path)  # keep the example database out of the checkout
    # ... then the daemon with every request sent to a closed port: the example feeds are
    # unreachable (no test reaches the internet), and the daemon must keep running anyway.
    env["http_proxy"] = env["https_proxy"] = "http://127.0.0.1:9"
    make = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (tmp_path / "monitor.db").exists(), timeout=300, what="the daemon")
        time.sleep(3)
        assert make.poll() is None, make.communicate()
        daemon = _child_monitor(make.pid)
        os.kill(daemon, signal.SIGTERM)
        assert make.wait(timeout=15) == 0
    finally:
        if make.poll() is None:
            make.kill()


def _child_monitor(parent: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        for child in children:
            if "monitor" in Path(f"/proc/{child}/cmdline").read_text():
                return int(child)
        time.sleep(0.1)
    raise AssertionError("no monitor process under make")


def test_listen_serves_healthz_and_metrics(daemon_setup, running) -> None:
    import http.client

    _, sections, cli = daemon_setup
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sections["monitor"]["listen"] = f"127.0.0.1:{port}"
    write_config(cli.config, **sections)
    daemon = cli.popen("run")
    running.append(daemon)
    wait_until(baseline_done(cli, 2), what="the first polls")

    def get(path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()

    assert get("/healthz") == (200, "ok\n")
    status, text = get("/metrics")
    assert status == 200
    assert 'monitor_polls_total{feed="feed0",result="ok"}' in text
    assert 'monitor_alerts_pending{channel="hook"} 0.0' in text
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0


def test_restart_does_not_refetch_and_a_feed_added_by_reload_is_polled_promptly(
        daemon_setup, feed_server: FeedServer, running) -> None:
    files, sections, cli = daemon_setup
    sections["monitor"]["interval"] = "1h"
    write_config(cli.config, **sections)
    assert cli("run", "--once").returncode == 0
    polled = len(feed_server.requests)

    daemon = cli.popen("run")
    running.append(daemon)
    time.sleep(3)
    assert len(feed_server.requests) == polled  # polled minutes ago: not due for an hour

    feed_server.put("/added.xml", files[0].read_bytes())
    sections["feeds"]["added"] = {"url": feed_server.url("/added.xml")}
    write_config(cli.config, **sections)
    daemon.send_signal(signal.SIGHUP)
    wait_until(lambda: len(feed_server.requests_for("/added.xml")) == 1, timeout=10,
               what="the added feed's first poll")
    assert len(feed_server.requests) == polled + 1
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0


def test_no_feed_is_polled_more_often_than_its_interval(feed_server: FeedServer, make_cli,
                                                         running) -> None:
    document = rss_feeds(1)[0].read_bytes()
    feeds = {}
    for index in range(20):
        feed_server.put(f"/many{index}.xml", document)
        feeds[f"many{index}"] = {"url": feed_server.url(f"/many{index}.xml"),
                                 "interval": "2s" if index % 2 else "3s"}
    cli = make_cli(feeds=feeds, rules={"r": {"query": "ceasefire", "channels": ["console"]}})
    daemon = cli.popen("run")
    running.append(daemon)
    time.sleep(12)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    for index in range(20):
        times = [r.at for r in feed_server.requests_for(f"/many{index}.xml")]
        interval = 2.0 if index % 2 else 3.0
        assert len(times) >= 2, index  # it keeps polling
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= interval - 0.05, (index, gaps)
    assert feed_server.max_in_flight <= 2  # per_host: one host never sees more than two at once


def test_repeated_sigkill_keeps_the_database_whole_and_every_alert_arrives(
        daemon_setup, feed_server: FeedServer, webhook: WebhookSink, running) -> None:
    files, _, cli = daemon_setup
    assert cli("run", "--once").returncode == 0
    published: list[Item] = []
    kills = 0
    webhook.delay = 0.2
    for round_ in range(5):
        published += [story(100 + round_ * 10 + n) for n in range(4)]
        feed_server.put(f"/feed{round_ % 2}.xml",
                        with_items(files[round_ % 2].read_bytes(), published[-4:]))
        daemon = cli.popen("run")
        running.append(daemon)
        time.sleep(1.0 + 0.37 * round_)  # land the kill at a different moment each round
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
        kills += 1
    webhook.delay = 0.0
    result = cli("run", "--once")
    assert result.returncode == 0, result.stderr

    titles = [p["title"] for p in webhook.posts]
    assert {s.title for s in published} <= set(titles)  # nothing lost
    assert len(titles) - len(set(titles)) <= kills  # at most one repeat per kill
    with sqlite3.connect(cli.config.parent / "monitor.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert {r[0] for r in conn.execute("SELECT status FROM alerts")} == {"sent"}


def test_sigterm_during_a_delivery_backlog_stops_sending_and_marks_what_was_sent(
        daemon_setup, feed_server: FeedServer, webhook: WebhookSink, running) -> None:
    files, _, cli = daemon_setup
    assert cli("run", "--once").returncode == 0
    stories = [story(200 + n) for n in range(10)]
    feed_server.put("/feed0.xml", with_items(files[0].read_bytes(), stories))
    webhook.delay = 1.0
    daemon = cli.popen("run")
    running.append(daemon)
    webhook.wait_for(2, timeout=30)
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    received = len(webhook.posts)
    time.sleep(1.5)
    assert len(webhook.posts) == received < len(stories)  # nothing after the stop
    sent = [a for a in map(json.loads, cli("alerts", "--json").stdout.splitlines())
            if a["status"] == "sent"]
    assert len(sent) == received  # every message the channel took is marked sent
