"""The SQLite store with real files: a full disk loses nothing and is retried; reopening keeps state."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import build_config
from monitor.errors import StoreError
from monitor.poll import Poller
from monitor.store import Store
from tests.feeds import Item, rss_feeds, with_items
from tests.support.feedserver import FeedServer


def test_full_disk_is_a_clear_error_loses_nothing_and_the_next_pass_catches_up(
        tmp_path: Path, feed_server: FeedServer) -> None:
    document = rss_feeds(1)[0].read_bytes()
    feed_server.put("/feed.xml", document)
    data = {"monitor": {"database": str(tmp_path / "m.db")},
            "feeds": {"wire": {"url": feed_server.url("/feed.xml")}},
            "rules": {"truce": {"query": "truce", "channels": ["console"]}}}
    config = build_config(data, path=tmp_path / "c.toml", env=os.environ, read_secret=lambda p: "")
    store = Store(config.settings.database)
    poller = Poller(config, store, clock=lambda: datetime(2026, 11, 26, 10, tzinfo=UTC))
    poller.sync()
    poller.poll(poller.due(force=True))
    baseline = store.count_articles()

    new = [Item(title=f"Truce holds in region {n}", link=f"https://n.example.org/{n}",
                description="x" * 20000) for n in range(30)]
    feed_server.put("/feed.xml", with_items(document, new))
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 1}")  # the disk is now full
    with pytest.raises(StoreError) as caught:
        poller.poll(poller.due(force=True))
    assert "disk is full" in caught.value.message and str(tmp_path / "m.db") in caught.value.message
    assert store.count_articles() == baseline  # the pass was rolled back whole
    assert store.alerts() == []
    assert store.integrity_ok()

    store.db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    poller.poll(poller.due(force=True))
    assert store.count_articles() == baseline + 30
    assert len(store.alerts()) == 30


def test_reopening_keeps_schedule_and_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "state" / "m.db"
    store = Store(path)
    store.sync_feeds({"a": "https://example.org/a"}, datetime(2026, 11, 26, tzinfo=UTC))
    store.close()
    again = Store(path)
    assert list(again.feed_states()) == ["a"]
    assert again.get_meta("schema_version") == "1"
    assert again.integrity_ok()


def test_readonly_open_of_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as caught:
        Store(tmp_path / "nope.db", readonly=True)
    assert "nope.db" in caught.value.message
