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


class Outlets:
    """Several feeds serving real documents, a webhook channel and some rules, polled with an
    injected clock; `run(i, items)` makes feed i publish new items."""

    def __init__(self, tmp_path: Path, server: FeedServer, hook: WebhookSink, *,
                 names: list[str], rules: dict[str, Any], monitor: dict[str, Any] | None = None,
                 channels: dict[str, Any] | None = None, document: bytes | None = None) -> None:
        self.server = server
        self.documents = [document or f.read_bytes() for f in rss_feeds(len(names))]
        for index, body in enumerate(self.documents):
            server.put(f"/f{index}.xml", body)
        data = {
            "monitor": {"database": str(tmp_path / "m.db"), **(monitor or {})},
            "feeds": {name: {"url": server.url(f"/f{i}.xml")} for i, name in enumerate(names)},
            "channels": channels or {"hook": {"url": hook.json_url()}},
            "rules": rules,
        }
        self.config = build_config(data, path=tmp_path / "c.toml", env=os.environ,
                                   read_secret=lambda p: "")
        self.store = Store(self.config.settings.database)
        self.clock = Clock(at(10))
        self.poller = Poller(self.config, self.store, clock=self.clock)
        self.poller.sync()

    def run(self, index: int, items: list[Item]) -> None:
        self.server.put(f"/f{index}.xml", with_items(self.documents[index], items))

    def poll(self) -> None:
        self.poller.poll(self.poller.due(force=True))

    def deliver(self) -> None:
        deliver_all(self.config, self.store, self.clock, Options())


def test_ops_channel_hears_when_a_feed_keeps_failing_and_recovers(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    outlets = Outlets(tmp_path, feed_server, webhook, names=["wire"],
                      monitor={"ops_channel": "ops"},
                      channels={"ops": {"url": webhook.json_url("/ops")}},
                      rules={"any": {"query": "ceasefire", "channels": ["console"]}})
    feed_server.fault("/f0.xml", "status", code=500, reason="Internal Server Error")
    for minute in range(3):
        outlets.clock.set(at(10, minute))
        outlets.poll()
    [alarm] = webhook.wait_for(1)
    assert "wire" in alarm["message"] and "HTTP 500" in alarm["message"]
    outlets.run(0, [])
    outlets.clock.set(at(11, 0))
    outlets.poll()
    assert "recovered" in webhook.wait_for(2)[1]["message"]


def test_one_story_from_two_feeds_in_one_pass_is_one_message_naming_both_rules(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    outlets = Outlets(tmp_path, feed_server, webhook, names=["a", "b"], rules={
        "truce-a": {"query": "truce", "channels": ["hook"], "feeds": ["a"]},
        "talks-b": {"query": "talks", "channels": ["hook"], "feeds": ["b"]}})
    outlets.poll()
    shared = Item(title="Truce talks resume in Istanbul", link="https://news.example.org/shared")
    other = Item(title="Truce holds overnight", link="https://news.example.org/other")
    # The story sits between other rows of the queue: feed a lists it after another story.
    outlets.run(0, [other, shared])
    outlets.run(1, [shared])
    outlets.poll()
    outlets.deliver()
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
    outlets = Outlets(tmp_path, feed_server, webhook, names=["wire"], document=bare,
                      monitor={"max_entries": 3},
                      rules={"c": {"query": "ceasefire", "channels": ["hook"]}})
    outlets.run(0, items)
    outlets.poll()
    outlets.run(0, items[3:])  # the first ones drop off the top
    outlets.poll()
    outlets.deliver()
    assert webhook.posts == []


def test_a_later_message_about_a_story_names_only_the_newly_matching_rule(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    outlets = Outlets(tmp_path, feed_server, webhook, names=["a", "b"], rules={
        "truce": {"query": "truce", "channels": ["hook"]},
        "istanbul": {"query": "Istanbul", "channels": ["hook"], "feeds": ["b"]}})
    outlets.poll()
    shared = Item(title="Truce talks resume in Istanbul", link="https://news.example.org/shared")
    outlets.run(0, [shared])
    outlets.poll()
    outlets.deliver()
    first = webhook.wait_for(1)[0]["message"]
    assert "truce" in first and "istanbul" not in first
    outlets.run(1, [shared])  # a second outlet
    outlets.poll()
    outlets.deliver()
    second = webhook.wait_for(2)[1]["message"]
    assert "istanbul" in second
    assert "Rules:** truce" not in second and "Rules: truce" not in second
    assert len(webhook.posts) == 2


def test_wire_copy_under_other_links_is_one_story_short_headlines_are_not(
        tmp_path: Path, feed_server: FeedServer, webhook: WebhookSink) -> None:
    outlets = Outlets(tmp_path, feed_server, webhook, names=["ap", "paper", "third"],
                      rules={"truce": {"query": "truce", "channels": ["hook"]}})
    outlets.poll()
    wire = "Russia and Ukraine agree Easter truce, Kremlin says"
    outlets.run(0, [Item(title=wire, link="https://apnews.example/truce"),
                    Item(title="Truce: live", link="https://a.example/live")])
    outlets.run(1, [Item(title="RUSSIA and Ukraine agree Easter truce — Kremlin says",
                         link="https://paper.example/world/2026/truce"),
                    Item(title="Truce: live", link="https://b.example/live")])
    outlets.poll()
    # A third outlet runs the wire story a pass later: the story has been alerted already.
    outlets.run(2, [Item(title=wire, link="https://third.example/t")])
    outlets.clock.set(at(11))
    outlets.poll()
    outlets.deliver()
    titles = sorted(p["title"] for p in webhook.wait_for(3))
    assert len(webhook.posts) == 3  # one wire story + two distinct short-headline stories
    assert titles.count("Truce: live") == 2
    assert sum(1 for t in titles if "Easter truce" in t) == 1
