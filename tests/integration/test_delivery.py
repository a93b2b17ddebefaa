"""The outbox policies with an injected clock: quiet hours, max_per_hour, digests, backoff.

Real SQLite, a real feed server, a real json:// webhook receiving apprise's posts.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config, build_config
from monitor.deliver import Options, deliver_all
from monitor.poll import Poller
from monitor.store import Store
from tests.feeds import Item, rss_feeds, with_items
from tests.support.feedserver import FeedServer
from tests.support.sinks import WebhookSink


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


class World:
    """One feed, one webhook channel with the given options, one rule, a store and a clock."""

    def __init__(self, tmp_path: Path, server: FeedServer, hook: WebhookSink,
                 channel: dict[str, Any], start: datetime) -> None:
        self.server, self.hook = server, hook
        self.document = rss_feeds(1)[0].read_bytes()
        server.put("/feed.xml", self.document)
        data = {
            "monitor": {"database": str(tmp_path / "m.db")},
            "feeds": {"wire": {"url": server.url("/feed.xml")}},
            "channels": {"hook": {"url": hook.json_url(), **channel}},
            "rules": {"ceasefire": {"query": "ceasefire", "channels": ["hook"]}},
        }
        self.config: Config = build_config(data, path=tmp_path / "c.toml", env=os.environ,
                                           read_secret=lambda p: "")
        self.store = Store(self.config.settings.database)
        self.clock = Clock(start)
        self.items: list[Item] = []
        self.poll()  # the silent baseline

    def poll(self) -> None:
        poller = Poller(self.config, self.store, clock=self.clock)
        poller.sync()
        poller.poll(poller.due(force=True))

    def publish(self, count: int) -> list[Item]:
        start = len(self.items)
        new = [Item(title=f"Ceasefire talks, round {start + n}",
                    link=f"https://news.example.org/round/{start + n}") for n in range(count)]
        self.items = new[::-1] + self.items
        self.server.put("/feed.xml", with_items(self.document, self.items))
        self.poll()
        return new

    def deliver(self, at: datetime) -> None:
        self.clock.set(at)
        deliver_all(self.config, self.store, self.clock, Options())

    def statuses(self) -> list[str]:
        return sorted(a.status for a in self.store.alerts())


def at(hour: int, minute: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def world_for(tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink):  # type: ignore[no-untyped-def]
    def make(channel: dict[str, Any], start: datetime) -> World:
        return World(tmp_path, feed_server, webhook, channel, start)
    return make


def test_quiet_hours_hold_then_release_as_one_message(world_for, webhook: WebhookSink) -> None:
    world = world_for({"quiet_hours": "22:00-07:00"}, at(22, 30))
    stories = world.publish(2)
    world.deliver(at(23, 0))
    assert webhook.posts == []
    assert world.statuses() == ["held", "held"]
    world.deliver(at(6, 59, day=27))
    assert webhook.posts == []
    world.deliver(at(7, 0, day=27))
    [message] = webhook.wait_for(1)
    for story in stories:
        assert story.title in message["message"]
    assert world.statuses() == ["sent", "sent"]


def test_quiet_hours_in_channel_time_zone(world_for, webhook: WebhookSink) -> None:
    # 21:30 UTC is 23:30 in Kyiv (UTC+2 in November): inside 23:00-06:00 local.
    world = world_for({"quiet_hours": "23:00-06:00", "timezone": "Europe/Kyiv"}, at(21, 30))
    world.publish(1)
    world.deliver(at(21, 30))
    assert webhook.posts == [] and world.statuses() == ["held"]
    world.deliver(at(4, 0, day=27))  # 06:00 in Kyiv
    assert len(webhook.wait_for(1)) == 1


def test_max_per_hour_sends_first_n_then_one_summary_next_hour(world_for, webhook: WebhookSink) -> None:
    world = world_for({"max_per_hour": 2}, at(10, 0))
    stories = world.publish(5)
    world.deliver(at(10, 5))
    assert len(webhook.wait_for(2)) == 2
    assert world.statuses().count("held") == 3
    world.deliver(at(10, 45))
    assert len(webhook.posts) == 2
    world.deliver(at(11, 0))
    posts = webhook.wait_for(3)
    assert len(posts) == 3
    summary = posts[2]["message"]
    held_titles = [s.title for s in stories if s.title not in posts[0]["title"] + posts[1]["title"]]
    assert len(held_titles) == 3 and all(t in summary for t in held_titles)
    # The summary does not count toward N: two more individual messages this hour.
    world.publish(2)
    world.deliver(at(11, 10))
    assert len(webhook.wait_for(5)) == 5
    assert set(world.statuses()) == {"sent"}


def test_daily_digest_sends_everything_once_at_its_time(world_for, webhook: WebhookSink) -> None:
    world = world_for({"digest": "daily 08:00"}, at(9, 0))
    stories = world.publish(3)
    world.deliver(at(12, 0))
    world.deliver(at(7, 59, day=27))
    assert webhook.posts == []
    world.deliver(at(8, 0, day=27))
    [digest] = webhook.wait_for(1)
    assert all(s.title in digest["message"] for s in stories)
    world.deliver(at(8, 0, day=28))  # an empty period sends nothing
    assert len(webhook.posts) == 1


def test_failing_channel_backs_off_then_drains_oldest_first(world_for, webhook: WebhookSink) -> None:
    world = world_for({}, at(10, 0))
    stories = world.publish(3)
    webhook.fail_with(503)
    world.deliver(at(10, 1))
    assert webhook.refused == 1  # one attempt, then the whole channel waits
    world.deliver(at(10, 1) + timedelta(seconds=5))
    assert webhook.refused == 1
    webhook.fail_with(None)
    world.deliver(at(10, 2))  # first retry within 60 s
    posts = webhook.wait_for(3)
    assert [p["title"] for p in posts] == [s.title for s in stories]


def test_give_up_after_marks_failed_and_retry_requeues(world_for, webhook: WebhookSink) -> None:
    world = world_for({}, at(10, 0))
    world.publish(1)
    webhook.fail_with(500)
    world.deliver(at(10, 1))
    world.deliver(at(10, 0, day=29) + timedelta(minutes=5))  # more than 72 h later
    assert world.statuses() == ["failed"]
    webhook.fail_with(None)
    assert list(world.store.retry(None, at(10, 10, day=29)).values()) == ["failed"]
    world.deliver(at(12, 0, day=29))
    assert len(webhook.wait_for(1)) == 1
    assert world.statuses() == ["sent"]


def test_ops_channel_hears_when_a_feed_keeps_failing_and_recovers(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    feed_server.put("/feed.xml", rss_feeds(1)[0].read_bytes())
    data = {
        "monitor": {"database": str(tmp_path / "m.db"), "ops_channel": "ops"},
        "feeds": {"wire": {"url": feed_server.url("/feed.xml")}},
        "channels": {"ops": {"url": webhook.json_url("/ops")}},
        "rules": {"any": {"query": "ceasefire", "channels": ["console"]}},
    }
    config = build_config(data, path=tmp_path / "c.toml", env=os.environ, read_secret=lambda p: "")
    store = Store(config.settings.database)
    clock = Clock(at(10, 0))
    poller = Poller(config, store, clock=clock)
    poller.sync()
    feed_server.fault("/feed.xml", "status", code=500, reason="Internal Server Error")
    for minute in range(3):
        clock.set(at(10, minute))
        poller.poll(poller.due(force=True))
    [alarm] = webhook.wait_for(1)
    assert "wire" in alarm["message"] and "HTTP 500" in alarm["message"]
    feed_server.put("/feed.xml", rss_feeds(1)[0].read_bytes())
    clock.set(at(11, 0))
    poller.poll(poller.due(force=True))
    assert "recovered" in webhook.wait_for(2)[1]["message"]


def test_one_story_from_two_feeds_in_one_pass_is_one_message_naming_both_rules(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    files = rss_feeds(2)
    for index, file in enumerate(files):
        feed_server.put(f"/f{index}.xml", file.read_bytes())
    data = {
        "monitor": {"database": str(tmp_path / "m.db")},
        "feeds": {"a": {"url": feed_server.url("/f0.xml")}, "b": {"url": feed_server.url("/f1.xml")}},
        "channels": {"hook": {"url": webhook.json_url()}},
        "rules": {"truce-a": {"query": "truce", "channels": ["hook"], "feeds": ["a"]},
                  "talks-b": {"query": "talks", "channels": ["hook"], "feeds": ["b"]}},
    }
    config = build_config(data, path=tmp_path / "c.toml", env=os.environ, read_secret=lambda p: "")
    store = Store(config.settings.database)
    clock = Clock(at(10))
    poller = Poller(config, store, clock=clock)
    poller.sync()
    poller.poll(poller.due(force=True))
    shared = Item(title="Truce talks resume in Istanbul", link="https://news.example.org/shared")
    other = Item(title="Truce holds overnight", link="https://news.example.org/other")
    # The story sits between other rows of the queue: feed a lists it after another story.
    feed_server.put("/f0.xml", with_items(files[0].read_bytes(), [other, shared]))
    feed_server.put("/f1.xml", with_items(files[1].read_bytes(), [shared]))
    poller.poll(poller.due(force=True))
    deliver_all(config, store, clock, Options())
    posts = webhook.wait_for(2)
    assert len(posts) == 2
    by_title = {p["title"]: p["message"] for p in posts}
    assert "truce-a" in by_title[shared.title] and "talks-b" in by_title[shared.title]


def test_give_up_after_counts_from_the_first_failed_attempt(world_for, webhook: WebhookSink) -> None:
    world = world_for({"digest": "weekly mon 08:00"}, at(9, 0, day=26))  # a Thursday
    world.publish(1)
    webhook.fail_with(500)
    monday = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # 4 days after the alert was queued
    world.deliver(monday)
    assert webhook.refused == 1
    assert world.statuses() == ["queued"]  # undeliverable for minutes, not 72 h
    webhook.fail_with(None)
    world.deliver(monday + timedelta(hours=1))
    assert len(webhook.wait_for(1)) == 1


def test_digest_waits_out_quiet_hours_instead_of_bypassing_its_schedule(
        world_for, webhook: WebhookSink) -> None:
    world = world_for({"digest": "daily 08:00", "quiet_hours": "22:00-07:00"}, at(21, 0))
    world.publish(2)
    world.deliver(at(23, 0))
    world.deliver(at(7, 0, day=27))  # quiet hours over, but the digest is due at 08:00
    assert webhook.posts == []
    world.deliver(at(8, 0, day=27))
    assert len(webhook.wait_for(1)) == 1


def test_entries_beyond_max_entries_never_alert_later(tmp_path: Path, feed_server: FeedServer,
                                                      webhook: WebhookSink) -> None:
    items = [Item(title=f"Ceasefire update {n}", link=f"https://news.example.org/u/{n}")
             for n in range(8)]
    document = rss_feeds(1)[0].read_bytes()
    start = document.index(b"<item>")
    end = document.rindex(b"</item>") + len(b"</item>")
    bare = document[:start] + b"<item><title>x</title></item>" + document[end:]
    feed_server.put("/feed.xml", with_items(bare, items))
    data = {"monitor": {"database": str(tmp_path / "m.db"), "max_entries": 3},
            "feeds": {"wire": {"url": feed_server.url("/feed.xml")}},
            "channels": {"hook": {"url": webhook.json_url()}},
            "rules": {"c": {"query": "ceasefire", "channels": ["hook"]}}}
    config = build_config(data, path=tmp_path / "c.toml", env=os.environ, read_secret=lambda p: "")
    store = Store(config.settings.database)
    poller = Poller(config, store, clock=Clock(at(10)))
    poller.sync()
    poller.poll(poller.due(force=True))
    feed_server.put("/feed.xml", with_items(bare, items[3:]))  # the first ones drop off the top
    poller.poll(poller.due(force=True))
    deliver_all(config, store, Clock(at(10, 5)), Options())
    assert webhook.posts == []


def test_a_later_message_about_a_story_names_only_the_newly_matching_rule(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    files = rss_feeds(2)
    for index, file in enumerate(files):
        feed_server.put(f"/f{index}.xml", file.read_bytes())
    data = {
        "monitor": {"database": str(tmp_path / "m.db")},
        "feeds": {"a": {"url": feed_server.url("/f0.xml")}, "b": {"url": feed_server.url("/f1.xml")}},
        "channels": {"hook": {"url": webhook.json_url()}},
        "rules": {"truce": {"query": "truce", "channels": ["hook"]},
                  "istanbul": {"query": "Istanbul", "channels": ["hook"], "feeds": ["b"]}},
    }
    config = build_config(data, path=tmp_path / "c.toml", env=os.environ, read_secret=lambda p: "")
    store = Store(config.settings.database)
    clock = Clock(at(10))
    poller = Poller(config, store, clock=clock)
    poller.sync()
    poller.poll(poller.due(force=True))
    shared = Item(title="Truce talks resume in Istanbul", link="https://news.example.org/shared")
    feed_server.put("/f0.xml", with_items(files[0].read_bytes(), [shared]))
    poller.poll(poller.due(force=True))
    deliver_all(config, store, clock, Options())
    first = webhook.wait_for(1)[0]["message"]
    assert "truce" in first and "istanbul" not in first
    feed_server.put("/f1.xml", with_items(files[1].read_bytes(), [shared]))  # a second outlet
    poller.poll(poller.due(force=True))
    deliver_all(config, store, clock, Options())
    second = webhook.wait_for(2)[1]["message"]
    assert "istanbul" in second
    assert "Rules:** truce" not in second and "Rules: truce" not in second
    assert len(webhook.posts) == 2


def test_wire_copy_under_other_links_is_one_story_short_headlines_are_not(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    files = rss_feeds(3)
    for index, file in enumerate(files):
        feed_server.put(f"/f{index}.xml", file.read_bytes())
    data = {
        "monitor": {"database": str(tmp_path / "m.db")},
        "feeds": {f"outlet{i}": {"url": feed_server.url(f"/f{i}.xml")} for i in range(3)},
        "channels": {"hook": {"url": webhook.json_url()}},
        "rules": {"truce": {"query": "truce", "channels": ["hook"]}},
    }
    config = build_config(data, path=tmp_path / "c.toml", env=os.environ, read_secret=lambda p: "")
    store = Store(config.settings.database)
    clock = Clock(at(10))
    poller = Poller(config, store, clock=clock)
    poller.sync()
    poller.poll(poller.due(force=True))
    wire = "Russia and Ukraine agree Easter truce, Kremlin says"
    copies = [Item(title=wire, link="https://apnews.example/truce"),
              Item(title="RUSSIA and Ukraine agree Easter truce — Kremlin says",
                   link="https://paper.example/world/2026/truce")]
    short = [Item(title="Truce: live", link="https://a.example/live"),
             Item(title="Truce: live", link="https://b.example/live")]
    feed_server.put("/f0.xml", with_items(files[0].read_bytes(), [copies[0], short[0]]))
    feed_server.put("/f1.xml", with_items(files[1].read_bytes(), [copies[1], short[1]]))
    poller.poll(poller.due(force=True))
    # A third outlet runs the wire story a pass later: the story has been alerted already.
    feed_server.put("/f2.xml", with_items(files[2].read_bytes(),
                                          [Item(title=wire, link="https://third.example/t")]))
    clock.set(at(11))
    poller.poll(poller.due(force=True))
    deliver_all(config, store, clock, Options())
    titles = sorted(p["title"] for p in webhook.wait_for(3))
    assert len(webhook.posts) == 3  # one wire story + two distinct short-headline stories
    assert titles.count("Truce: live") == 2
    assert sum(1 for t in titles if "Easter truce" in t) == 1
