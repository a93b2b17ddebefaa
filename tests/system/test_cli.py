"""The read and maintenance commands as a user runs them: test-rule, status, alerts, check."""

from __future__ import annotations

import json
from pathlib import Path

from tests.feeds import Item, rss_feeds, with_items
from tests.support.feedserver import FeedServer

TRUCE = Item(title="Kyiv and Moscow agree Easter truce as peace talks resume",
             link="https://news.example.org/truce", description="A 30-hour truce, the Kremlin said.")


def two_feeds(feed_server: FeedServer, make_cli, **extra):  # type: ignore[no-untyped-def]
    files = rss_feeds(2)
    for index, file in enumerate(files):
        feed_server.put(f"/f{index}.xml", file.read_bytes())
    cli = make_cli(
        feeds={"a": {"url": feed_server.url("/f0.xml")},
               "b": {"url": feed_server.url("/f1.xml") + "?token=SECRET123&page=1"}},
        rules={"truce-a": {"query": "truce", "channels": ["console"], "feeds": ["a"]},
               "truce": {"query": "truce AND talks", "channels": ["console"]}},
        **extra)
    assert cli("run", "--once").returncode == 0
    feed_server.put("/f0.xml", with_items(files[0].read_bytes(), [TRUCE]))
    other = Item(title=TRUCE.title, link="https://news.example.org/other-truce")
    feed_server.put("/f1.xml", with_items(files[1].read_bytes(), [other]))
    result = cli("run", "--once")
    assert result.returncode == 0, result.stderr
    return cli, result


def test_console_alert_highlights_and_names_rules(feed_server: FeedServer, make_cli) -> None:
    _, result = two_feeds(feed_server, make_cli)
    assert result.stdout.count(TRUCE.title) == 1  # one story: the same headline in two outlets
    assert "Rules: truce-a, truce" in result.stdout or "Rules: truce, truce-a" in result.stdout
    assert "*truce*" in result.stdout


def test_test_rule_by_name_follows_the_rules_feeds_and_json_is_parseable(
        feed_server: FeedServer, make_cli) -> None:
    cli, _ = two_feeds(feed_server, make_cli)
    named = cli("test-rule", "truce-a", "--json")
    assert named.returncode == 0, named.stderr
    rows = [json.loads(line) for line in named.stdout.splitlines()]
    assert [r["feed"] for r in rows] == ["a"]  # the rule watches feed a only
    assert rows[0]["title"] == TRUCE.title
    assert {"term", "field", "start", "end"} == set(rows[0]["matches"][0])
    hit = rows[0]["matches"][0]
    assert TRUCE.title[hit["start"]:hit["end"]].lower() == "truce"
    assert "matched 1 of" in named.stderr

    query = cli("test-rule", "--query", 'title:"peace talks" NEAR/3 truce', "--json")
    assert query.returncode == 0
    assert sorted(json.loads(line)["feed"] for line in query.stdout.splitlines()) == ["a", "b"]

    human = cli("test-rule", "--query", "truce")
    assert "**truce**" in human.stdout.lower() or "**Truce**" in human.stdout

    bad = cli("test-rule", "--query", "truce AND (talks")
    assert bad.returncode == 78
    assert "column" in bad.stderr and "^" in bad.stderr
    empty = cli("test-rule", "--query", "")
    assert empty.returncode == 78


def test_status_json_masks_feed_credentials(feed_server: FeedServer, make_cli) -> None:
    cli, _ = two_feeds(feed_server, make_cli)
    status = cli("status", "--json")
    assert "SECRET123" not in status.stdout
    rows = {r["name"]: r for r in map(json.loads, status.stdout.splitlines())}
    assert rows["b"]["url"].endswith("token=***&page=1")
    assert set(rows["a"]) == {"name", "url", "effective_url", "state", "last_ok_at",
                              "last_polled_at", "next_poll_at", "failures", "last_error", "entries"}


def test_alerts_retry_says_what_it_did(feed_server: FeedServer, make_cli) -> None:
    cli, _ = two_feeds(feed_server, make_cli)
    alerts = [json.loads(line) for line in cli("alerts", "--json").stdout.splitlines()]
    assert {a["status"] for a in alerts} == {"sent"}
    result = cli("alerts", "retry", str(alerts[0]["id"]), "999")
    assert result.returncode == 1
    assert "alert 999: no such alert" in result.stderr
    assert f"alert {alerts[0]['id']}: not failed (sent)" in result.stderr
    assert cli("alerts", "retry").returncode == 2  # neither IDs nor --failed


def test_check_catches_typos_that_would_make_dead_rules(make_cli) -> None:
    cli = make_cli(
        feeds={"w": {"url": "https://example.org/rss", "language": "ua"}},
        channels={"console": {"url": "json://127.0.0.1/x"},
                  "late": {"url": "json://127.0.0.1/y", "timezone": "Nowhere",
                           "digest": "weekly xyz 08:00", "quiet_hours": "22:00-22:00"}},
        rules={"r": {"query": "titel:truce", "channels": ["console"]}})
    result = cli("check")
    assert result.returncode == 78
    for path in ("feeds.w.language:", "channels.console:", "channels.late.timezone:",
                 "channels.late.digest:", "channels.late.quiet_hours:", "rules.r.query:"):
        assert any(line.startswith(path) for line in result.stderr.splitlines()), (path, result.stderr)
    assert "did you mean 'title:'" in result.stderr


def test_unusable_database_path_is_a_clear_error(make_cli, tmp_path: Path) -> None:
    cli = make_cli(monitor={"database": "/proc/nope/monitor.db"},
                   feeds={"w": {"url": "http://127.0.0.1:9/rss"}})
    result = cli("run", "--once")
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot create the lock file /proc/nope/monitor.db.lock")
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr


def test_matches_lists_stories_with_every_source(feed_server: FeedServer, make_cli) -> None:
    cli, _ = two_feeds(feed_server, make_cli)
    rows = [json.loads(line) for line in cli("matches", "--json").stdout.splitlines()]
    assert len(rows) == 1  # one story: the same headline from two outlets under two links
    [row] = rows
    assert row["title"] == TRUCE.title and row["link"] == TRUCE.link
    assert sorted(row["feeds"]) == ["a", "b"]
    assert sorted(row["rules"]) == ["truce", "truce-a"]
    only_a = [json.loads(line) for line in cli("matches", "--rule", "truce-a", "--json").stdout.splitlines()]
    assert [r["link"] for r in only_a] == [TRUCE.link]
    assert cli("matches", "--rule", "nosuch", "--json").stdout == ""


def test_send_test_through_the_real_path(make_cli, webhook) -> None:  # type: ignore[no-untyped-def]
    cli = make_cli(channels={"hook": {"url": webhook.json_url()},
                             "dead": {"url": "json://127.0.0.1:9/nothing"}})
    ok = cli("send-test", "hook")
    assert ok.returncode == 0, ok.stderr
    assert webhook.wait_for(1)[0]["title"] == "monitor test message"
    dead = cli("send-test", "dead")
    assert dead.returncode == 1
    assert dead.stderr.startswith("error: the json:// channel")
    assert "stays queued" not in dead.stderr
    unknown = cli("send-test", "nope")
    assert unknown.returncode == 1 and "no channel named 'nope'" in unknown.stderr


def test_usage_errors_are_error_lines_with_exit_2_and_durations_are_bounded(make_cli) -> None:
    cli = make_cli(feeds={"w": {"url": "https://example.org/rss"}})
    bad_status = cli("alerts", "--status", "nope")
    assert bad_status.returncode == 2
    assert bad_status.stderr.startswith("error: ") and "hint: see `monitor alerts --help`" in bad_status.stderr
    assert cli("matches", "--since", "99999999d").returncode == 2
    long_config = make_cli(monitor={"keep_seen": "3000000d"}, feeds={"w": {"url": "https://example.org/rss"}})
    result = long_config("check")
    assert result.returncode == 78
    assert result.stderr.startswith("monitor.keep_seen: '3000000d' is too long a duration")


def test_test_rule_by_name_on_a_broken_config_is_a_config_error(feed_server: FeedServer,
                                                                 make_cli) -> None:
    cli, _ = two_feeds(feed_server, make_cli)
    cli.config.write_text(cli.config.read_text() + '\n[feeds.broken]\nurl_env = "MONITOR_NOT_SET"\n')
    result = cli("test-rule", "truce")
    assert result.returncode == 78
    assert "feeds.broken.url_env" in result.stderr and "--query" in result.stderr
    assert cli("test-rule", "--query", "truce", "--json").returncode == 0  # still usable
