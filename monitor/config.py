"""Pure: a parsed TOML document -> Config, validating everything in one pass.

Every problem is collected with its key path (`rules.truce.channels: ...`) and raised together
as one ConfigError. The environment and file reads behind `url_env` / `url_file` are passed in;
`load_config` is the thin loader that supplies the real ones. Secrets are never put in messages.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor import PROJECT_URL, __version__
from monitor.analyze import known_language
from monitor.durations import parse_duration, parse_size
from monitor.errors import ConfigError, QueryError
from monitor.render import template_problems
from monitor.rules import parse as parse_query
from monitor.schedule import QuietHours, digest_trigger, parse_quiet_hours

CONSOLE = "console"  # the built-in channel: prints alerts to stdout, needs no table
DEFAULT_CONFIG = Path("/etc/monitor/config.toml")


@dataclass(frozen=True, kw_only=True)
class Settings:
    database: Path
    interval: timedelta = timedelta(minutes=15)
    timezone: tzinfo = ZoneInfo("UTC")
    backfill: timedelta = timedelta(0)
    user_agent: str = f"monitor/{__version__} (+{PROJECT_URL})"
    keep_text: timedelta = timedelta(days=30)
    keep_seen: timedelta = timedelta(days=180)
    max_entries: int = 1000
    per_host: int = 2
    timeout: timedelta = timedelta(seconds=60)
    max_body: int = 10 * 1024 * 1024
    max_redirects: int = 10
    max_backoff: timedelta = timedelta(hours=24)
    give_up_after: timedelta = timedelta(hours=72)
    ops_channel: str | None = None
    listen: str | None = None


@dataclass(frozen=True, kw_only=True)
class FeedConfig:
    name: str
    url: str
    interval: timedelta
    tags: frozenset[str] = frozenset()
    enabled: bool = True
    language: str | None = None


@dataclass(frozen=True, kw_only=True)
class ChannelConfig:
    name: str
    url: str  # an apprise URL: a secret, never logged
    enabled: bool = True
    digest: str | None = None
    quiet_hours: QuietHours | None = None
    timezone: tzinfo = ZoneInfo("UTC")
    max_per_hour: int | None = None
    title_template: str | None = None
    body_template: str | None = None

    def __repr__(self) -> str:  # keep the URL out of any log line or traceback
        return f"ChannelConfig(name={self.name!r})"


@dataclass(frozen=True, kw_only=True)
class RuleConfig:
    name: str
    query: str
    channels: tuple[str, ...]
    feeds: tuple[str, ...] | None = None  # feed names or "tag:NAME"; None = every feed
    language: str | None = None
    exclude: str | None = None
    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class Config:
    path: Path
    settings: Settings
    feeds: Mapping[str, FeedConfig]
    channels: Mapping[str, ChannelConfig]
    rules: Mapping[str, RuleConfig]

    def channel(self, name: str) -> ChannelConfig | None:
        """A configured channel, or the built-in console (its URL is the word "console")."""
        return ChannelConfig(name=CONSOLE, url=CONSOLE) if name == CONSOLE else self.channels.get(name)

    def rule_feeds(self, rule: RuleConfig) -> frozenset[str]:
        """Names of the feeds a rule watches."""
        if rule.feeds is None:
            return frozenset(self.feeds)
        names = set()
        for item in rule.feeds:
            tag = item.removeprefix("tag:") if item.startswith("tag:") else None
            names |= {
                f.name for f in self.feeds.values() if (tag in f.tags if tag else f.name == item)
            }
        return frozenset(names)


_MONITOR_KEYS = {
    "database",
    "interval",
    "timezone",
    "backfill",
    "user_agent",
    "keep_text",
    "keep_seen",
    "max_entries",
    "per_host",
    "timeout",
    "max_body",
    "max_redirects",
    "max_backoff",
    "give_up_after",
    "ops_channel",
    "listen",
}
_DURATION_KEYS = {
    "interval",
    "backfill",
    "keep_text",
    "keep_seen",
    "timeout",
    "max_backoff",
    "give_up_after",
}
_FEED_KEYS = {"url", "url_env", "url_file", "interval", "tags", "enabled", "language"}
_CHANNEL_KEYS = {
    "url",
    "url_env",
    "url_file",
    "enabled",
    "digest",
    "quiet_hours",
    "timezone",
    "max_per_hour",
    "title_template",
    "body_template",
}
_RULE_KEYS = {"query", "channels", "feeds", "language", "exclude", "enabled"}


class _Problems:
    """Collects `key.path: sentence` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, sentence: str) -> None:
        self.lines.append(f"{path}: {sentence}")

    def unknown_keys(self, path: str, table: Mapping[str, Any], allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                self.add(
                    f"{path}.{key}" if path else key,
                    f"unknown key; known keys are {', '.join(sorted(allowed))}",
                )


def build_config(
    data: Mapping[str, Any],
    *,
    path: Path,
    env: Mapping[str, str],
    read_secret: Callable[[Path], str],
    check_channel_url: Callable[[str], str | None] = lambda url: None,
) -> Config:
    """Validate a parsed TOML document; raise ConfigError listing every problem.

    `check_channel_url` returns a problem sentence for a bad channel URL (apprise knows which
    are good; notify.validate is passed in by the loader) without repeating the secret URL."""
    problems = _Problems()
    problems.unknown_keys("", data, {"monitor", "feeds", "channels", "rules"})
    ctx = _Context(problems=problems, base=path.parent, env=env, read_secret=read_secret)
    settings = _settings(_table(data, "monitor", problems), ctx, path)
    feeds = {n: f for n, t in _tables(data, "feeds", problems) if (f := _feed(n, t, ctx, settings))}
    channels = {
        n: c for n, t in _tables(data, "channels", problems) if (c := _channel(n, t, ctx, settings))
    }
    rules = {n: r for n, t in _tables(data, "rules", problems) if (r := _rule(n, t, ctx))}
    for channel in channels.values():
        if problem := check_channel_url(channel.url):
            problems.add(f"channels.{channel.name}.url", problem)
    # Cross-references are checked on every rule, even one whose query has problems.
    known_channels = set(_table(data, "channels", _Problems())) | {CONSOLE}
    known_feeds = set(_table(data, "feeds", _Problems()))
    tags = {tag for f in feeds.values() for tag in f.tags}
    for name, table in _tables(data, "rules", _Problems()):
        channel_list = table.get("channels")
        for channel in channel_list if isinstance(channel_list, list) else []:
            if isinstance(channel, str) and channel not in known_channels:
                problems.add(
                    f"rules.{name}.channels",
                    f"no channel named {channel!r}; "
                    f"define [channels.{channel}] or use one of "
                    f"{', '.join(sorted(known_channels))}",
                )
        feed_list = table.get("feeds")
        for item in feed_list if isinstance(feed_list, list) else []:
            if not isinstance(item, str):
                continue
            if item.startswith("tag:") and item[4:] not in tags:
                problems.add(f"rules.{name}.feeds", f"no feed has the tag {item[4:]!r}")
            elif not item.startswith("tag:") and item not in known_feeds:
                problems.add(f"rules.{name}.feeds", f"no feed named {item!r}")
    if settings.ops_channel and settings.ops_channel not in known_channels:
        problems.add("monitor.ops_channel", f"no channel named {settings.ops_channel!r}")
    if problems.lines:
        raise ConfigError(problems.lines, hint="fix these lines, then run `monitor check`")
    return Config(path=path, settings=settings, feeds=feeds, channels=channels, rules=rules)


@dataclass
class _Context:
    problems: _Problems
    base: Path
    env: Mapping[str, str]
    read_secret: Callable[[Path], str]

    def resolve(self, name: str) -> Path:
        return resolve_state_path(name, base=self.base, env=self.env)


def resolve_state_path(name: str, *, base: Path, env: Mapping[str, str]) -> Path:
    """Relative paths resolve in $STATE_DIRECTORY when set, else in `base` (the config's folder)."""
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        return candidate
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    return (Path(state) if state else base) / candidate


def _table(data: Mapping[str, Any], key: str, problems: _Problems) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        problems.add(key, "must be a table")
        return {}
    return value


def _tables(
    data: Mapping[str, Any], key: str, problems: _Problems
) -> list[tuple[str, Mapping[str, Any]]]:
    result = []
    for name, table in _table(data, key, problems).items():
        if key == "channels" and name == CONSOLE:
            problems.add(f"channels.{CONSOLE}", "console is the built-in channel (alerts on stdout)"
                         "; give your channel another name")
        elif not isinstance(table, Mapping):
            problems.add(f"{key}.{name}", f"must be a table ([{key}.{name}])")
        elif not name.strip():
            problems.add(f"{key}.{name!r}", "names must not be empty")
        else:
            result.append((name, table))
    return result


def _settings(table: Mapping[str, Any], ctx: _Context, path: Path) -> Settings:
    p = ctx.problems
    p.unknown_keys("monitor", table, _MONITOR_KEYS)
    database = _string(table["database"], "monitor.database", p) if "database" in table else None
    values: dict[str, Any] = {"database": ctx.resolve(database or "monitor.db")}
    for key in _DURATION_KEYS & table.keys():
        if (delta := _duration(table[key], f"monitor.{key}", p)) is not None:
            values[key] = delta
    # Zero here would mean polling, timing out or retrying in a tight loop.
    for key in ("interval", "timeout", "max_backoff"):
        if values.get(key) == timedelta(0):
            p.add(f"monitor.{key}", "must be longer than 0s")
    if "timezone" in table and (tz := _zone(table["timezone"], "monitor.timezone", p)):
        values["timezone"] = tz
    if "max_body" in table:
        try:
            values["max_body"] = parse_size(table["max_body"])
        except ValueError as exc:
            p.add("monitor.max_body", str(exc))
    for key in ("max_entries", "per_host", "max_redirects"):
        if key in table and (n := _positive_int(table[key], f"monitor.{key}", p)) is not None:
            values[key] = n
    for key in ("user_agent", "ops_channel", "listen"):
        if key in table and (text := _string(table[key], f"monitor.{key}", p)):
            values[key] = text
    listen = values.get("listen")
    if listen and not _valid_listen(listen):
        p.add("monitor.listen", f'{listen!r} is not HOST:PORT (e.g. "127.0.0.1:9100")')
    return Settings(**values)


def _feed(
    name: str, table: Mapping[str, Any], ctx: _Context, settings: Settings
) -> FeedConfig | None:
    path = f"feeds.{name}"
    ctx.problems.unknown_keys(path, table, _FEED_KEYS)
    url = _secret_source(path, table, ctx, what="feed URL")
    if url is not None and not url.lower().startswith(("http://", "https://")):
        ctx.problems.add(f"{path}.url", "must be an http:// or https:// URL")
        url = None
    interval = (
        _duration(table.get("interval"), f"{path}.interval", ctx.problems)
        if "interval" in table
        else settings.interval
    )
    if interval == timedelta(0) and "interval" in table:  # an inherited 0s is reported once
        ctx.problems.add(f"{path}.interval", "must be longer than 0s")
        interval = None
    tags = _string_list(table.get("tags", []), f"{path}.tags", ctx.problems)
    if url is None or interval is None or tags is None:
        return None
    return FeedConfig(
        name=name,
        url=url,
        interval=interval,
        tags=frozenset(tags),
        enabled=_bool(table, "enabled", path, ctx.problems),
        language=_language(table, path, ctx.problems),
    )


def _channel(
    name: str, table: Mapping[str, Any], ctx: _Context, settings: Settings
) -> ChannelConfig | None:
    path = f"channels.{name}"
    p = ctx.problems
    p.unknown_keys(path, table, _CHANNEL_KEYS)
    url = _secret_source(path, table, ctx, what="channel URL")
    tz = (
        _zone(table["timezone"], f"{path}.timezone", p)
        if "timezone" in table
        else settings.timezone
    )
    digest = _optional_string(table, "digest", path, p)
    if digest:
        try:
            digest_trigger(digest, tz or ZoneInfo("UTC"))  # checked even when tz is wrong
        except ValueError as exc:
            p.add(f"{path}.digest", str(exc))
    quiet = None
    if "quiet_hours" in table:
        try:
            quiet = parse_quiet_hours(table["quiet_hours"])
        except ValueError as exc:
            p.add(f"{path}.quiet_hours", str(exc))
    per_hour = (
        _positive_int(table["max_per_hour"], f"{path}.max_per_hour", p)
        if "max_per_hour" in table
        else None
    )
    templates = {}
    for key in ("title_template", "body_template"):
        if (text := _optional_string(table, key, path, p)) is not None:
            for problem in template_problems(text):
                p.add(f"{path}.{key}", problem)
            templates[key] = text
    if url is None or tz is None:
        return None
    return ChannelConfig(
        name=name,
        url=url,
        enabled=_bool(table, "enabled", path, p),
        digest=digest,
        quiet_hours=quiet,
        timezone=tz,
        max_per_hour=per_hour,
        **templates,
    )


def _rule(name: str, table: Mapping[str, Any], ctx: _Context) -> RuleConfig | None:
    path = f"rules.{name}"
    p = ctx.problems
    p.unknown_keys(path, table, _RULE_KEYS)
    query = _query(table, "query", path, p, required=True)
    exclude = _query(table, "exclude", path, p, required=False)
    if "channels" not in table:
        p.add(f"{path}.channels", 'missing; list where alerts go, e.g. channels = ["console"]')
    channels = _string_list(table.get("channels", []), f"{path}.channels", p)
    if channels is not None and "channels" in table and not channels:
        p.add(f"{path}.channels", "must name at least one channel")
    feeds = _string_list(table["feeds"], f"{path}.feeds", p) if "feeds" in table else None
    if query is None or not channels or ("feeds" in table and feeds is None):
        return None
    return RuleConfig(
        name=name,
        query=query,
        channels=tuple(channels),
        feeds=tuple(feeds) if feeds is not None else None,
        language=_language(table, path, p),
        exclude=exclude,
        enabled=_bool(table, "enabled", path, p),
    )


def _query(
    table: Mapping[str, Any], key: str, path: str, p: _Problems, *, required: bool
) -> str | None:
    if key not in table:
        if required:
            p.add(
                f"{path}.{key}", "missing; write the watch rule, e.g. query = '\"NATO membership\"'"
            )
        return None
    text = _string(table[key], f"{path}.{key}", p)
    if text is None:
        return None
    try:
        parse_query(text)
    except QueryError as exc:
        p.add(f"{path}.{key}", f"{exc}\n    {exc.caret().replace(chr(10), chr(10) + '    ')}")
        return None
    return text


def _secret_source(path: str, table: Mapping[str, Any], ctx: _Context, *, what: str) -> str | None:
    """Exactly one of url / url_env / url_file; the value itself never appears in a message."""
    given = [k for k in ("url", "url_env", "url_file") if k in table]
    if len(given) != 1:
        ctx.problems.add(
            path,
            f"set exactly one of url, url_env, url_file for the {what}"
            + (f" (found {', '.join(given)})" if given else ""),
        )
        return None
    key = given[0]
    value = _string(table[key], f"{path}.{key}", ctx.problems)
    if value is None:
        return None
    if key == "url_env":
        if not ctx.env.get(value, "").strip():
            ctx.problems.add(
                f"{path}.url_env", f"the environment variable {value} is not set or empty"
            )
            return None
        return ctx.env[value].strip()
    if key == "url_file":
        file = _secret_path(value, ctx)
        try:
            text = ctx.read_secret(file).strip()
        except OSError as exc:
            ctx.problems.add(f"{path}.url_file", f"cannot read {file} ({exc.strerror or exc})")
            return None
        if not text:
            ctx.problems.add(f"{path}.url_file", f"{file} is empty")
            return None
        return text
    return value.strip()


def _secret_path(name: str, ctx: _Context) -> Path:
    """url_file: relative to $CREDENTIALS_DIRECTORY (systemd LoadCredential) when set."""
    candidate = Path(name).expanduser()
    creds = ctx.env.get("CREDENTIALS_DIRECTORY")
    if candidate.is_absolute():
        return candidate
    return Path(creds) / candidate if creds else ctx.base / candidate


def _language(table: Mapping[str, Any], path: str, p: _Problems) -> str | None:
    code = _optional_string(table, "language", path, p)
    if code is not None and not known_language(code):
        hint = " (Ukrainian is \"uk\")" if code.lower().startswith("ua") else ""
        p.add(f"{path}.language", f"unknown language {code!r}{hint}; use an ISO 639-1 code such "
              "as \"en\", \"uk\", \"ru\", \"de\", \"fr\", \"el\"")
        return None
    return code


def _duration(value: Any, path: str, p: _Problems) -> timedelta | None:
    try:
        return parse_duration(value)
    except ValueError as exc:
        p.add(path, str(exc))
        return None


def _zone(value: Any, path: str, p: _Problems) -> tzinfo | None:
    try:
        return ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        p.add(path, f'{value!r} is not a time zone; use an IANA name like "Europe/Kyiv" or "UTC"')
        return None


def _positive_int(value: Any, path: str, p: _Problems) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        p.add(path, f"must be a whole number of at least 1 (got {value!r})")
        return None
    return int(value)


def _string(value: Any, path: str, p: _Problems) -> str | None:
    if not isinstance(value, str) or not value.strip():
        p.add(path, "must be a non-empty string")
        return None
    return value


def _optional_string(table: Mapping[str, Any], key: str, path: str, p: _Problems) -> str | None:
    return _string(table[key], f"{path}.{key}", p) if key in table else None


def _string_list(value: Any, path: str, p: _Problems) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        p.add(path, "must be a list of non-empty strings")
        return None
    return list(value)


def _bool(table: Mapping[str, Any], key: str, path: str, p: _Problems) -> bool:
    value = table.get(key, True)
    if not isinstance(value, bool):
        p.add(f"{path}.{key}", "must be true or false")
        return True
    return value


def _valid_listen(value: str) -> bool:
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def config_path(given: str | None, env: Mapping[str, str]) -> Path:
    """--config, else $MONITOR_CONFIG, else /etc/monitor/config.toml."""
    return Path(given or env.get("MONITOR_CONFIG") or DEFAULT_CONFIG)


def load_config(
    path: Path, check_channel_url: Callable[[str], str | None] = lambda url: None
) -> Config:
    """Read and validate the config file: the thin loader supplying the real environment."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read the config file ({exc.strerror or exc})"],
            hint="pass --config PATH or set MONITOR_CONFIG",
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
    return build_config(
        data,
        path=path.resolve(),
        env=os.environ,
        read_secret=lambda p: p.read_text(encoding="utf-8"),
        check_channel_url=check_channel_url,
    )
