"""Benchmark: the cost of a polling cycle over many feeds, against raw HTTP in the same run.

Not a test. Serves N copies of real corpus feeds from a local server (127.0.0.1), then times:
- a cold cycle (every feed fetched, parsed, matched and stored: the silent baseline),
- a warm cycle (every feed answers 304 Not Modified: what the daemon does most of the time),
- the baseline: the same N conditional GETs with plain aiohttp at the same concurrency and
  per-host limit, with no parsing, no database and no bookkeeping.
It prints feeds per second for each and the warm/baseline ratio: the overhead monitor adds to
the HTTP work itself on a warm cycle (decide, one transaction per pass, next-poll times).

    .venv/bin/python bench/bench_poll.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench the working tree, not an installed copy

from monitor.config import build_config  # noqa: E402
from monitor.poll import Poller  # noqa: E402
from monitor.store import Store  # noqa: E402
from tests.feeds import rss_feeds  # noqa: E402
from tests.support.feedserver import FeedServer  # noqa: E402

PER_HOST = 8  # one local host stands in for many: allow more than the default 2


async def raw_cycle(urls: list[str], validators: dict[str, str]) -> int:
    connector = aiohttp.TCPConnector(limit=32, limit_per_host=PER_HOST)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(url: str) -> int:
            async with session.get(url, headers={"If-None-Match": validators[url]}) as response:
                await response.read()
                return response.status
        statuses = await asyncio.gather(*(one(u) for u in urls))
    return sum(1 for s in statuses if s == 304)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    documents = [f.read_bytes() for f in rss_feeds(12)]
    with FeedServer() as server, tempfile.TemporaryDirectory() as tmp:
        feeds = {}
        for index in range(count):
            server.put(f"/feed{index}.xml", documents[index % len(documents)])
            feeds[f"feed{index}"] = {"url": server.url(f"/feed{index}.xml")}
        data = {"monitor": {"database": f"{tmp}/bench.db", "per_host": PER_HOST},
                "feeds": feeds,
                "rules": {"nato": {"query": '"NATO membership" OR (Ukraine AND NATO)',
                                   "channels": ["console"]},
                          "truce": {"query": "ceasefire OR truce", "channels": ["console"]}}}
        config = build_config(data, path=Path(tmp) / "c.toml", env={}, read_secret=lambda p: "")
        store = Store(config.settings.database)
        poller = Poller(config, store)
        poller.sync()

        started = time.perf_counter()
        cold = poller.poll(poller.due(force=True))
        cold_s = time.perf_counter() - started

        best_warm = best_raw = float("inf")
        states = store.feed_states()
        validators = {s.url: s.etag or "" for s in states.values()}
        for _ in range(3):  # interleaved, best of three: the machine is shared and noisy
            started = time.perf_counter()
            warm = poller.poll(poller.due(force=True))
            best_warm = min(best_warm, time.perf_counter() - started)
            started = time.perf_counter()
            not_modified = asyncio.run(raw_cycle(list(validators), validators))
            best_raw = min(best_raw, time.perf_counter() - started)
        assert warm.polled == count and not_modified == count, (warm, not_modified)

    print(f"{count} feeds, per_host {PER_HOST}, one local server")
    print(f"  cold cycle (fetch, parse, match, store): {cold_s:6.2f} s  ({count / cold_s:7.0f} feeds/s,"
          f" {cold.failed} failed)")
    print(f"  warm cycle (all 304):                     {best_warm:6.2f} s  ({count / best_warm:7.0f} feeds/s)")
    print(f"  baseline, raw conditional GETs:           {best_raw:6.2f} s  ({count / best_raw:7.0f} feeds/s)")
    print(f"warm cycle / raw HTTP: {best_warm / best_raw:.2f}x (the overhead monitor adds on a warm cycle)")


if __name__ == "__main__":
    main()
