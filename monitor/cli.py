"""The command line (click). The only place that turns errors into output and exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from monitor import __version__
from monitor.config import CONSOLE, Config, config_path, resolve_state_path
from monitor.durations import parse_duration
from monitor.errors import ConfigError, DeliveryError, MonitorError, QueryError
from monitor.store import AlertRow, Store, iso
from monitor.text import redact_url

F = TypeVar("F", bound=Callable[..., Any])


class Duration(click.ParamType):  # type: ignore[type-arg]
    """`--since 30d`: the duration syntax of the config (SPEC §2)."""

    name = "DUR"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
EXIT_USAGE = 2


def _fail(exc: MonitorError) -> None:
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            click.echo(problem, err=True)
    click.echo(f"error: {exc}" if not isinstance(exc, QueryError) else f"error: {exc}", err=True)
    if isinstance(exc, QueryError):
        click.echo(exc.caret(), err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    sys.exit(exc.exit_code)


def handles_errors(command: F) -> F:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MonitorError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors: click prints them and exits 2
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: run again with -v for the traceback, and report it", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


class Context:
    def __init__(self, config_option: str | None) -> None:
        self.path = config_path(config_option, os.environ)

    def config(self) -> Config:
        from monitor.service import load_checked

        return load_checked(self.path)

    def read_view(self) -> tuple[Config | None, Store]:
        """For read-only commands: the config if valid (else each problem as a warning), and
        the database opened read-only."""
        from monitor.service import load_checked

        try:
            config: Config | None = load_checked(self.path)
            database = config.settings.database if config else None
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"warning: {problem}", err=True)
            config, database = None, _database_fallback(self.path)
        if database is None or not database.exists():
            raise MonitorError(
                f"no database at {database} yet",
                hint="run `monitor run --once` (or start the service) first",
            )
        return config, Store(database, readonly=True)


def _shown(url: str | None) -> str | None:
    """Feed URLs can carry tokens: passwords and credential parameters are masked."""
    return redact_url(url) if url else None


def _database_fallback(path: Path) -> Path:
    """Where the database is, read from a config that has problems elsewhere."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        name = str(data.get("monitor", {}).get("database", "monitor.db"))
    except (OSError, ValueError, AttributeError):
        name = "monitor.db"
    return resolve_state_path(name, base=path.resolve().parent, env=os.environ)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    help="Config file (default: $MONITOR_CONFIG, else /etc/monitor/config.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks.")
@click.version_option(__version__, prog_name="monitor")
@click.pass_context
def main(ctx: click.Context, config_option: str | None, verbose: bool) -> None:
    """Watch news feeds and send an alert when a new story matches a watch rule."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    # A tick skipped while the previous one runs is normal, not worth a warning.
    for noisy in ("apscheduler", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.ERROR)
    ctx.obj = Context(config_option)


@main.command()
@click.option("--once", is_flag=True, help="Poll every feed once, deliver due alerts, exit.")
@click.pass_obj
@handles_errors
def run(obj: Context, once: bool) -> None:
    """Run the daemon in the foreground (or one pass with --once)."""
    from monitor.service import Daemon, run_once

    config = obj.config()
    sys.exit(run_once(config) if once else Daemon(obj.path, config).run())


@main.command()
@click.pass_obj
@handles_errors
def check(obj: Context) -> None:
    """Validate the config and channel URLs."""
    config = obj.config()
    enabled = sum(1 for r in config.rules.values() if r.enabled)
    click.echo(
        f"{obj.path}: OK: {len(config.feeds)} feeds, {len(config.rules)} rules "
        f"({enabled} enabled), {len(config.channels)} channels (+ built-in console); "
        f"database {config.settings.database}"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one object per feed.")
@click.pass_obj
@handles_errors
def status(obj: Context, as_json: bool) -> None:
    """Feed health, then alert counts."""
    config, store = obj.read_view()
    states = store.feed_states()
    counts = store.entry_counts()
    names = list(config.feeds) if config else sorted(states)
    rows: list[dict[str, Any]] = []
    for name in names:
        state = states.get(name)
        feed = config.feeds.get(name) if config else None
        shown = "disabled" if feed and not feed.enabled else (state.state if state else "new")
        rows.append(
            {
                "name": name,
                "url": _shown(feed.url if feed else (state.url if state else None)),
                "effective_url": _shown(state.effective_url if state else None),
                "state": shown,
                "last_ok_at": iso(state.last_ok_at) if state else None,
                "last_polled_at": iso(state.last_polled_at) if state else None,
                "next_poll_at": iso(state.next_poll_at)
                if state and shown not in ("gone", "disabled")
                else None,
                "failures": state.failures if state else 0,
                "last_error": state.last_error if state else None,
                "entries": counts.get(name, 0),
            }
        )
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for row in rows:
        line = (
            f"{row['name']:<{width}}  {row['state']:<8}  last ok {row['last_ok_at'] or 'never'}"
            f"  next {row['next_poll_at'] or '-'}  failures {row['failures']}"
            f"  entries {row['entries']}"
        )
        if row["effective_url"]:
            line += f"  moved to {row['effective_url']} (update the config)"
        if row["last_error"]:
            line += f"  last error: {row['last_error']}"
        click.echo(line)
    alerts = store.alert_counts()
    click.echo(
        "alerts: "
        + ", ".join(f"{s} {alerts.get(s, 0)}" for s in ("queued", "held", "sent", "failed"))
    )


@main.command("test-rule")
@click.argument("name", required=False)
@click.option("--query", "query", metavar="Q", help="A query to try instead of a named rule.")
@click.option("--since", "window", type=Duration(), default="30d", show_default=True,
              help="Articles first stored within this.")
@click.option("--feed", metavar="NAME", help="Only this feed.")
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="At most N articles scanned."
)
@click.option("--json", "as_json", is_flag=True, help="JSON Lines on stdout, one per match.")
@click.pass_obj
@handles_errors
def test_rule(
    obj: Context,
    name: str | None,
    query: str | None,
    window: timedelta,
    feed: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Backtest a rule (or --query) on stored articles."""
    from monitor.backtest import backtest

    if (name is None) == (query is None):
        raise click.UsageError("give a rule NAME or --query Q (one of them)")
    config, store = obj.read_view()
    backtest(
        config,
        store,
        name=name,
        query=query,
        window=window,
        feed=feed,
        limit=limit,
        as_json=as_json,
        now=datetime.now(UTC),
    )


@main.group(invoke_without_command=True)
@click.option("--status", "status_filter", type=click.Choice(["queued", "held", "sent", "failed"]))
@click.option("--channel", metavar="NAME")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one object per alert.")
@click.pass_context
@handles_errors
def alerts(
    ctx: click.Context, status_filter: str | None, channel: str | None, as_json: bool
) -> None:
    """The outbox: every alert and its delivery state."""
    if ctx.invoked_subcommand:
        return
    _, store = ctx.obj.read_view()
    for row in store.alerts(status=status_filter, channel=channel):
        record = _alert_record(row)
        if as_json:
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo(
                f"#{row.id}  {row.status:<6}  {row.channel}  {row.rule}  {row.title}"
                f"  attempts {row.attempts}"
                + (f"  last error: {row.last_error}" if row.last_error else "")
            )


def _alert_record(row: AlertRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "story": row.story,
        "title": row.title,
        "rule": row.rule,
        "channel": row.channel,
        "status": row.status,
        "attempts": row.attempts,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
        "last_error": row.last_error,
    }


@alerts.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="Every failed alert.")
@click.pass_obj
@handles_errors
def alerts_retry(obj: Context, ids: tuple[int, ...], failed: bool) -> None:
    """Queue failed alerts again."""
    if bool(ids) == failed:
        raise click.UsageError("give alert IDs or --failed (one of them)")
    config, _ = obj.read_view()
    database = config.settings.database if config else _database_fallback(obj.path)
    store = Store(database)
    before = store.retry(None if failed else list(ids), datetime.now(UTC))
    for alert_id in ids:
        if alert_id not in before:
            click.echo(f"alert {alert_id}: no such alert", err=True)
        elif before[alert_id] != "failed":
            click.echo(f"alert {alert_id}: not failed ({before[alert_id]}); left as it is", err=True)
    count = sum(1 for status in before.values() if status == "failed")
    click.echo(f"{count} alert{'s' if count != 1 else ''} queued again")
    if any(i not in before for i in ids):
        sys.exit(1)


@main.command("send-test")
@click.argument("channel")
@click.pass_obj
@handles_errors
def send_test(obj: Context, channel: str) -> None:
    """Send a test message through the real path."""
    from monitor import notify
    from monitor.render import Story, render

    config = obj.config()
    target = config.channel(channel)
    if target is None:
        raise MonitorError(
            f"no channel named {channel!r}",
            hint="channels: " + ", ".join([CONSOLE, *config.channels]),
        )
    story = Story(
        title="monitor test message",
        link=None,
        feed="monitor",
        published_at=datetime.now(UTC),
        rules=("send-test",),
        snippet_text=f"If you can read this, channel {channel} works.",
        hits=(),
    )
    message = render(
        [story],
        style=notify.style_for(target.url),
        tz=target.timezone,
        title_template=target.title_template,
        body_template=target.body_template,
    )
    try:
        notify.send(target.url, message)
    except DeliveryError as exc:
        raise DeliveryError(exc.message, hint="check the channel's URL (monitor check) and that "
                            "the service is reachable from here") from None
    click.echo(f"sent a test message to {channel}", err=True)


@main.command()
@click.option("--rule", metavar="R", help="Only stories this rule matched.")
@click.option("--since", "window", type=Duration(), default="30d", show_default=True,
              help="Stories first alerted within this.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one object per story.")
@click.pass_obj
@handles_errors
def matches(obj: Context, rule: str | None, window: timedelta, as_json: bool) -> None:
    """Stories that matched, with their sources."""
    _, store = obj.read_view()
    for story in store.matched_stories(rule=rule, since=datetime.now(UTC) - window):
        if as_json:
            click.echo(json.dumps(story, ensure_ascii=False))
        else:
            click.echo(
                f"{story['first_seen_at']}  {story['title']}\n  rules: {', '.join(story['rules'])}"
                f"\n  sources: {', '.join(story['feeds'])}"
                + (f"\n  {story['link']}" if story["link"] else "")
            )


def entry() -> None:
    """The `monitor` command: usage errors too are `error: ...` lines (exit 2), as SPEC §2 says."""
    try:
        code = main.main(prog_name="monitor", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)  # the help itself, not an error line
        sys.exit(2)
    except click.UsageError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        command = exc.ctx.command_path if exc.ctx else "monitor"
        click.echo(f"hint: see `{command} --help`", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    entry()
