"""Delivery: the outbox, per channel. I/O through store and notify; policy in small pure helpers.

Per channel at most one message is in flight; each is marked sent in its own commit as soon as the
channel accepted it, so a kill repeats at most one message. A failing channel backs off as a whole
(first retry within 60 s, doubling with jitter up to 1 h); one channel never delays another.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby

from monitor import metrics, notify, ops
from monitor.config import ChannelConfig, Config
from monitor.errors import DeliveryError, StoreError
from monitor.models import Hit
from monitor.render import Message, Story, render
from monitor.schedule import digest_trigger, last_fire_before
from monitor.store import AlertRow, Store, parse_time, stamp

log = logging.getLogger("monitor.deliver")

FIRST_RETRY = timedelta(seconds=30)
MAX_CHANNEL_BACKOFF = timedelta(hours=1)
OPS_AFTER_FAILURES = 3  # consecutive failures before the ops channel hears about it


@dataclass(frozen=True, kw_only=True)
class Options:
    ignore_backoff: bool = False  # a starting process tries every due alert at once
    # The daemon sends for at most this long per round, so ticks stay short and the watchdog
    # sees progress; the rest goes out next round. None (`run --once`): drain everything.
    budget: timedelta | None = None
    # Set by SIGTERM: no new message is started (the one in flight finishes or is cut off).
    stop: threading.Event | None = None


def deliver_all(
    config: Config, store: Store, now: Callable[[], datetime], options: Options
) -> None:
    """One delivery round over every channel with pending alerts, channels in parallel."""
    channels = {n: c for n in store.pending_channels() if (c := config.channel(n)) and c.enabled}
    names = list(channels)
    if not names:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="deliver") as pool:
        for future in [
            pool.submit(_ChannelRound(config, channels[n], store, now, options).run_guarded) for n in names
        ]:
            future.result()


class _ChannelRound:
    def __init__(
        self,
        config: Config,
        channel: ChannelConfig,
        store: Store,
        now: Callable[[], datetime],
        options: Options,
    ) -> None:
        self.config, self.channel, self.store, self.now, self.options = (
            config,
            channel,
            store,
            now,
            options,
        )
        self.state = store.channel_state(channel.name)

    def run_guarded(self) -> None:
        """run(), with any failure logged as one line naming the channel: one channel's
        problem (or bug) never stops the others."""
        try:
            self.run()
        except StoreError as exc:
            log.error("channel %s: %s", self.channel.name, exc.message)
        except Exception as exc:
            log.error("channel %s: unexpected %s: %s", self.channel.name, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))

    def run(self) -> None:
        now = self.now()
        self.deadline = now + self.options.budget if self.options.budget else None
        waiting_until = parse_time(self.state["next_attempt_at"])
        if waiting_until and waiting_until > now and not self.options.ignore_backoff:
            return
        pending = self.store.alerts(pending_for=self.channel.name)
        if self.channel.quiet_hours and self._in_quiet_hours(now):
            if self.channel.digest:
                return  # a digest waits for the end of the window; its schedule stays in charge
            waiting = [a.id for a in pending if a.status == "queued"]
            if waiting:
                local = now.astimezone(self.channel.timezone)
                self.store.hold(waiting, self.channel.quiet_hours.end_after(local).astimezone(UTC))
            return
        # Held rows whose release time has come go out together, as one message.
        released = [a for a in pending if a.status == "held" and (a.next_attempt_at or now) <= now]
        if released and not self._send(released, summary=True):
            return
        queued = [a for a in pending if a.status == "queued"]
        if self.channel.digest:
            self._digest(queued, now)
            return
        for group in _messages(queued):
            if self._should_stop():
                return
            if self._over_rate_limit(self.now()):
                self.store.hold([a.id for a in group], _next_hour(self.now()))
                continue
            if not self._send(group, summary=False):
                return

    def _should_stop(self) -> bool:
        stopping = self.options.stop is not None and self.options.stop.is_set()
        return stopping or bool(self.deadline and self.now() >= self.deadline)

    def _in_quiet_hours(self, now: datetime) -> bool:
        quiet = self.channel.quiet_hours
        return bool(quiet) and quiet.contains(now.astimezone(self.channel.timezone).time())  # type: ignore[union-attr]

    def _digest(self, queued: list[AlertRow], now: datetime) -> None:
        if not queued:
            return
        trigger = digest_trigger(self.channel.digest or "", self.channel.timezone)
        oldest = min(a.created_at for a in queued)
        if last_fire_before(trigger, oldest, now) is not None:
            self._send(queued, summary=True)

    def _over_rate_limit(self, now: datetime) -> bool:
        limit = self.channel.max_per_hour
        if not limit:
            return False
        hour = stamp(now.replace(minute=0, second=0, microsecond=0))
        if self.state.get("hour_start") != hour:
            self.state = {**self.state, "hour_start": hour, "hour_sent": 0}
        return int(self.state["hour_sent"]) >= limit

    def _send(self, rows: Sequence[AlertRow], *, summary: bool) -> bool:
        """Send one message for rows; True when the channel accepted it."""
        if self.options.stop is not None and self.options.stop.is_set():
            return False
        ids = [a.id for a in rows]
        message = self._message(rows, summary=summary)
        try:
            notify.send(self.channel.url, message)
        except DeliveryError as exc:
            self._failed(ids, exc)
            return False
        now = self.now()
        self.store.mark_sent(ids, now)
        metrics.record_alert(self.channel.name, "sent", len(ids))
        if not summary and self.channel.max_per_hour:
            self.state = {**self.state, "hour_sent": int(self.state.get("hour_sent") or 0) + 1}
        recovered = self.state.get("failures")
        if int(recovered or 0) >= OPS_AFTER_FAILURES:
            ops.tell(self.config, f"channel {self.channel.name} recovered; its queue is draining.",
                     skip=self.channel.name)
        self.state = {
            **self.state,
            "failures": 0,
            "next_attempt_at": None,
            "last_error": None,
            "last_ok_at": stamp(now),
            "failing_since": None,
        }
        self.store.save_channel_state(self.state)
        log.info(
            "channel %s: sent %s (%d alert%s)%s",
            self.channel.name,
            "summary" if summary else f"story {rows[0].story}",
            len(ids),
            "" if len(ids) == 1 else "s",
            " (channel recovered)" if recovered else "",
        )
        return True

    def _failed(self, ids: list[int], exc: DeliveryError) -> None:
        now = self.now()
        failures = int(self.state.get("failures") or 0) + 1
        wait = FIRST_RETRY * 2 ** min(failures - 1, 20)
        wait += wait * random.random() * 0.5 if failures > 1 else FIRST_RETRY * random.random()
        wait = min(MAX_CHANNEL_BACKOFF, wait)
        given_up = self.store.mark_attempt_failed(
            ids, exc.message, now, now - self.config.settings.give_up_after
        )
        metrics.record_alert(self.channel.name, "failed_attempt", len(ids))
        metrics.record_alert(self.channel.name, "failed", given_up)
        self.state = {
            **self.state,
            "failures": failures,
            "next_attempt_at": stamp(now + wait),
            "last_error": exc.message,
            "failing_since": self.state.get("failing_since") or stamp(now),
        }
        self.store.save_channel_state(self.state)
        if failures == OPS_AFTER_FAILURES:
            ops.tell(self.config, f"channel {self.channel.name} is failing: {exc.message} "
                     "Its alerts wait and will be sent when it recovers.", skip=self.channel.name)
        log.warning(
            "channel %s: delivery failed (%s); %s",
            self.channel.name,
            exc.message,
            f"{given_up} alert(s) undeliverable for give_up_after, marked failed"
            if given_up
            else f"next try in {int(wait.total_seconds())} s",
        )

    def _message(self, rows: Sequence[AlertRow], *, summary: bool) -> Message:
        stories: list[Story] = []
        for story_key, group in groupby(
            sorted(rows, key=lambda a: (a.story, a.id)), key=lambda a: a.story
        ):
            alerts = list(group)
            stored = self.store.article(alerts[0].article_id)
            hits = _merged_hits(alerts)
            if stored is None:  # the article was pruned; the alert still names its title
                stories.append(
                    Story(
                        title=alerts[0].title or story_key,
                        link=None,
                        feed="",
                        published_at=None,
                        rules=_unique(a.rule for a in alerts),
                        snippet_text="",
                        hits=(),
                    )
                )
                continue
            article = stored.article
            # The snippet shows the text around the words every rule matched there (the title is
            # shown anyway); a story matched in its title alone gets its title as snippet.
            field = "text" if any(h.field == "text" for h in hits) or not hits else hits[0].field
            snippet_text = article.title if field == "title" else article.text
            stories.append(
                Story(
                    title=article.title,
                    link=article.link,
                    feed=article.feed,
                    published_at=article.published_at,
                    rules=_unique(a.rule for a in alerts),
                    snippet_text=snippet_text,
                    hits=tuple(h for h in hits if h.field == field),
                )
            )
        heading = None
        if summary:
            heading = f"{len(stories)} stories" + (" (digest)" if self.channel.digest else "")
        return render(
            stories,
            style=notify.style_for(self.channel.url),
            tz=self.channel.timezone,
            heading=heading,
            title_template=self.channel.title_template,
            body_template=self.channel.body_template,
        )


def _messages(queued: Sequence[AlertRow]) -> list[list[AlertRow]]:
    """Rows for one story and one channel queued in the same pass make one message, wherever
    they sit in the queue; messages keep the order of their first row."""
    groups: dict[tuple[int, str], list[AlertRow]] = {}
    for row in queued:
        groups.setdefault((row.batch, row.story), []).append(row)
    return list(groups.values())


def _merged_hits(alerts: Sequence[AlertRow]) -> tuple[Hit, ...]:
    """Every rule's hits for one story, in text order, without overlaps."""
    merged: list[Hit] = []
    for hit in sorted({h for a in alerts for h in a.hits}, key=lambda h: (h.field, h.start, -h.end)):
        if merged and merged[-1].field == hit.field and hit.start < merged[-1].end:
            continue
        merged.append(hit)
    return tuple(merged)


def _unique(names: Sequence[str] | object) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))  # type: ignore[arg-type]


def _next_hour(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
