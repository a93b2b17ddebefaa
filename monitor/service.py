"""The daemon and the one-shot pass: APScheduler jobs, signals, reload, sd_notify.

APScheduler 3 is the clock: a poll tick that polls due feeds, a delivery tick, and daily
maintenance. Both ticks run on ONE worker thread, so the daemon has one writer; each feed's next
poll time lives in SQLite, so a restart neither loses the schedule nor hammers every feed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from monitor import metrics, notify
from monitor.config import CONSOLE, Config, load_config
from monitor.deliver import Options, deliver_all
from monitor.errors import ConfigError, MonitorError
from monitor.health import HealthServer
from monitor.lock import InstanceLock
from monitor.poll import PASS_SIZE, Poller, prune, spread_overdue, utcnow
from monitor.store import Store

log = logging.getLogger("monitor.service")

POLL_TICK = timedelta(seconds=1)  # cheap: one read of the feeds table when nothing is due
DELIVERY_TICK = timedelta(seconds=1)
STOP_GRACE = 8.0  # seconds; SIGTERM must end the process within 10 s
DELIVERY_BUDGET = timedelta(seconds=30)
# Without a finished tick for this long the daemon counts as stuck: no WATCHDOG=1 (systemd
# restarts it after WatchdogSec) and /healthz answers 503. A tick is bounded: one pass of at most
# PASS_SIZE feeds (fetch timeout 60 s) or one delivery budget.
STALL_AFTER = 240.0
# After a failed pass (disk full, database locked) polling pauses, doubling up to the ceiling,
# so a broken database does not make every due feed be fetched again each second.
POLL_PAUSE_FIRST, POLL_PAUSE_MAX = 30.0, 1800.0


def load_checked(path: Path) -> Config:
    """Load the config, checking every channel URL with apprise: one merged report."""
    return load_config(path, check_channel_url=notify.validate)


def open_store(config: Config) -> Store:
    return Store(config.settings.database)


def run_once(config: Config) -> int:
    """`run --once`: poll every enabled feed now, deliver due alerts, wait, exit 0."""
    lock = InstanceLock(config.settings.database)
    lock.acquire()
    try:
        store = open_store(config)
        poller = Poller(config, store)
        poller.sync()
        report = poller.poll(poller.due(force=True))
        log.info(
            "pass done: %d feeds polled, %d failed, %d alerts queued",
            report.polled,
            report.failed,
            report.alerts,
        )
        deliver_all(config, store, utcnow, Options(ignore_backoff=True))
        prune(config, store, utcnow())
        store.close()
    finally:
        lock.release()
    return 0


class Daemon:
    """`run`: the long-lived service."""

    def __init__(self, config_path: Path, config: Config) -> None:
        self.config_path = config_path
        self.config = config
        self.lock = InstanceLock(config.settings.database)
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.store: Store | None = None
        self.poller: Poller | None = None
        self.first_delivery = True
        self.last_progress = time.monotonic()
        self.poll_pause, self.poll_paused_until = 0.0, 0.0
        self.health: HealthServer | None = None
        self.health_store: Store | None = None
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
            timezone="UTC",
        )

    def run(self) -> int:
        self.lock.acquire()
        try:
            self.store = open_store(self.config)
            self._install(self.config)
            if self.config.settings.listen:
                # Its own read-only connection: a scrape never waits on the writer.
                self.health_store = Store(self.config.settings.database, readonly=True)
                self.health = HealthServer(self.config.settings.listen, is_healthy=self.healthy,
                                           pending=self._pending)
                self.health.start()
            spread_overdue(self.store, self.config, utcnow())
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_stop)
            signal.signal(signal.SIGHUP, self._on_hup)
            self.scheduler.add_job(
                self._poll_tick,
                "interval",
                seconds=POLL_TICK.total_seconds(),
                id="poll",
                next_run_time=utcnow(),
            )
            self.scheduler.add_job(
                self._deliver_tick,
                "interval",
                seconds=DELIVERY_TICK.total_seconds(),
                id="deliver",
                next_run_time=utcnow(),
            )
            self.scheduler.add_job(
                self._maintain,
                "interval",
                hours=24,
                id="maintain",
                next_run_time=utcnow() + timedelta(minutes=1),
            )
            self.scheduler.start()
            sd_notify("READY=1\nSTATUS=watching feeds")
            log.info(
                "started: %d feeds, %d rules, %d channels; database %s",
                len(self.config.feeds),
                len(self.config.rules),
                len(self.config.channels),
                self.config.settings.database,
            )
            while not self.stopping.is_set():
                if self.healthy()[0]:
                    sd_notify("WATCHDOG=1")
                if self.reload_requested.wait(timeout=1.0):
                    self.reload_requested.clear()
                    if not self.stopping.is_set():
                        self._reload()
            sd_notify("STOPPING=1")
            log.info("stopping")
            if self.poller:
                self.poller.cancel()
            if not self._shutdown_scheduler():
                # A send or fetch is stuck past the grace period; committed work is safe (WAL),
                # and a message cut off now is retried at the next start (at most one per
                # channel). Exit now: SIGTERM must end the daemon within 10 s.
                log.warning("a job did not finish in time; exiting without waiting for it")
                logging.shutdown()
                os._exit(0)
            return 0
        finally:
            if self.health:
                self.health.stop()
            if self.health_store:
                self.health_store.close()
            if self.store:
                self.store.close()
            self.lock.release()

    def _install(self, config: Config) -> None:
        """Put a config in force (at start, and on reload between ticks on the worker)."""
        assert self.store is not None
        poller = Poller(config, self.store)
        changed = poller.sync()  # first: if the database fails, the old config stays whole
        self.config, self.poller = config, poller
        metrics.declare(feeds=config.feeds, rules=config.rules, channels=[CONSOLE, *config.channels])
        if changed:
            log.info("feeds to poll promptly: %s", ", ".join(changed))

    def healthy(self) -> tuple[bool, str]:
        """Healthy while the scheduler makes progress (ticks finish) and the database answers."""
        stalled = time.monotonic() - self.last_progress
        if stalled > STALL_AFTER:
            return False, f"the scheduler made no progress for {int(stalled)} s"
        if self.health_store is not None:
            try:
                self.health_store.ping()
            except MonitorError as exc:
                return False, f"the database does not answer: {exc.message}"
        return True, "ok"

    def _pending(self) -> dict[str, int]:
        channels = [CONSOLE, *(c.name for c in self.config.channels.values() if c.enabled)]
        counts = self.health_store.pending_counts() if self.health_store else {}
        return {**dict.fromkeys(channels, 0), **counts}

    def _progress(self) -> None:
        self.last_progress = time.monotonic()
        metrics.record_progress(utcnow())

    def _shutdown_scheduler(self) -> bool:
        """Stop the scheduler; False when its running job did not end within the grace."""
        done = threading.Event()

        def stop() -> None:
            self.scheduler.shutdown(wait=True)
            done.set()

        threading.Thread(target=stop, daemon=True).start()
        return done.wait(STOP_GRACE)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()
        if self.poller:
            self.poller.cancel()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_requested.set()

    def _reload(self) -> None:
        sd_notify("RELOADING=1")
        try:
            config = load_checked(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:  # one event per line: the caret drawing stays out
                log.error("reload refused: %s", problem.splitlines()[0])
            log.error("the new config is invalid; the old one stays in force")
        else:
            if config.settings.listen != self.config.settings.listen:
                log.warning("reload: [monitor] listen changed; restart to move the health endpoint")
            if config.settings.database != self.config.settings.database:
                log.warning("reload: [monitor] database changed; restart to switch databases")
                config = replace(
                    config,
                    settings=replace(config.settings, database=self.config.settings.database),
                )
            # The swap happens on the worker thread, between ticks: one writer, no torn pass.
            self.scheduler.add_job(self._job, args=["reload", lambda: self._install(config)],
                                   id="reload", replace_existing=True)
            log.info(
                "reloaded %s: %d feeds, %d rules, %d channels",
                self.config_path,
                len(config.feeds),
                len(config.rules),
                len(config.channels),
            )
        sd_notify("READY=1")

    def _job(self, name: str, work: Callable[[], object]) -> bool:
        """Run one job; a failure is one log line naming the job, and the daemon carries on."""
        try:
            work()
        except MonitorError as exc:
            log.error("%s: %s%s", name, exc.message, f" ({exc.hint})" if exc.hint else "")
            return False
        except Exception as exc:
            log.error("%s: unexpected %s: %s", name, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            return False
        return True

    def _poll_tick(self) -> None:
        if self.stopping.is_set() or time.monotonic() < self.poll_paused_until:
            return
        if self._job("poll", self._poll_pass):
            self.poll_pause = 0.0
            self._progress()
            return
        self.poll_pause = min(POLL_PAUSE_MAX, max(POLL_PAUSE_FIRST, self.poll_pause * 2))
        self.poll_paused_until = time.monotonic() + self.poll_pause
        log.warning("polling paused for %d s after that failure", self.poll_pause)

    def _poll_pass(self) -> None:
        """One bounded pass per tick; feeds still due are taken by the next tick."""
        assert self.poller is not None
        states = self.poller.due(force=False)
        if not states:
            return
        report = self.poller.poll(states[:PASS_SIZE])
        log.info("pass done: %d feeds polled, %d failed, %d alerts queued",
                 report.polled, report.failed, report.alerts)
        if report.alerts:
            self._deliver_tick()

    def _deliver_tick(self) -> None:
        store = self.store
        if self.stopping.is_set() or store is None:
            return
        options = Options(ignore_backoff=self.first_delivery, budget=DELIVERY_BUDGET,
                          stop=self.stopping)
        if self._job("delivery", lambda: deliver_all(self.config, store, utcnow, options)):
            self.first_delivery = False
            self._progress()

    def _maintain(self) -> None:
        store = self.store
        if store is not None:
            self._job("maintenance", lambda: prune(self.config, store, utcnow()))


def sd_notify(state: str) -> None:
    """The systemd notify protocol: one datagram to $NOTIFY_SOCKET, if set."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
