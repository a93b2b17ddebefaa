"""build_config / load_config: every key of SPEC §3, every problem at once with its key path."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor import PROJECT_URL, __version__
from monitor.config import Config, build_config, load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path("/srv/monitor/config.toml")
SECRET = "hunter2-s3cr3t-t0ken"
FEED = {"url": "https://news.example.org/rss.xml"}
RULE = {"query": "ceasefire", "channels": ["console"]}


def no_files(path: Path) -> str:
    raise FileNotFoundError(2, "No such file or directory")


def build(data: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
          files: Mapping[str, str] | None = None, **kwargs: Any) -> Config:
    def read(path: Path) -> str:
        if files is not None and str(path) in files:
            return files[str(path)]
        return no_files(path)
    return build_config(data, path=CONFIG, env=env or {}, read_secret=read, **kwargs)


def problems(data: Mapping[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build(data, **kwargs)
    assert caught.value.exit_code == 78
    assert caught.value.problems
    return caught.value.problems


def problem_at(data: Mapping[str, Any], path: str, **kwargs: Any) -> str:
    """The one problem reported, which must be at `path`."""
    found = problems(data, **kwargs)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}: "), found
    return found[0]


# -- defaults -----------------------------------------------------------------------------------

SPEC_DEFAULTS = {
    "interval": "15m", "timezone": "UTC", "backfill": "0s",
    "user_agent": f"monitor/{__version__} (+{PROJECT_URL})", "keep_text": "30d", "keep_seen": "180d",
    "max_entries": 1000, "per_host": 2, "timeout": "60s", "max_body": "10MiB", "max_redirects": 10,
    "max_backoff": "24h", "give_up_after": "72h",
}


def test_an_empty_config_gets_every_default_of_the_spec() -> None:
    config = build({})
    s = config.settings
    assert s.database == CONFIG.parent / "monitor.db"
    assert s.interval == timedelta(minutes=15)
    assert s.timezone == ZoneInfo("UTC")
    assert s.backfill == timedelta(0)
    assert s.user_agent == f"monitor/{__version__} (+{PROJECT_URL})"
    assert s.keep_text == timedelta(days=30)
    assert s.keep_seen == timedelta(days=180)
    assert (s.max_entries, s.per_host, s.max_redirects) == (1000, 2, 10)
    assert s.timeout == timedelta(seconds=60)
    assert s.max_body == 10 * 1024 * 1024
    assert s.max_backoff == timedelta(hours=24)
    assert s.give_up_after == timedelta(hours=72)
    assert (s.ops_channel, s.listen) == (None, None)
    assert (dict(config.feeds), dict(config.channels), dict(config.rules)) == ({}, {}, {})


def test_every_key_written_out_with_its_default_means_the_same() -> None:
    explicit = build({"monitor": {"database": "monitor.db", **SPEC_DEFAULTS}})
    assert explicit.settings == build({}).settings


def test_every_key_accepted_with_a_value() -> None:
    config = build({
        "monitor": {"database": "/var/lib/monitor/news.db", "interval": "5m", "timezone": "Europe/Kyiv",
                    "backfill": "2h", "user_agent": "newsroom-bot/1.0", "keep_text": "7d",
                    "keep_seen": "1w", "max_entries": 50, "per_host": 4, "timeout": "30s",
                    "max_body": "512KiB", "max_redirects": 3, "max_backoff": "6h",
                    "give_up_after": "1d", "ops_channel": "ops", "listen": "127.0.0.1:9100"},
        "feeds": {"world": {"url": "https://news.example.org/rss.xml", "interval": "30m",
                            "tags": ["world", "europe"], "enabled": False, "language": "uk"}},
        "channels": {"ops": {"url": "json://127.0.0.1:8000/hook", "enabled": True,
                             "digest": "daily 08:00", "quiet_hours": "22:00-07:00",
                             "timezone": "America/New_York", "max_per_hour": 20,
                             "title_template": "${feed}: ${title}",
                             "body_template": "${snippet}\n${link}\n${rules} ${published}"}},
        "rules": {"truce": {"query": "ceasefire OR truce", "channels": ["ops", "console"],
                            "feeds": ["world", "tag:europe"], "language": "en",
                            "exclude": "sport", "enabled": False}},
    })
    s = config.settings
    assert s.database == Path("/var/lib/monitor/news.db")
    assert (s.interval, s.backfill, s.keep_seen) == (timedelta(minutes=5), timedelta(hours=2),
                                                     timedelta(weeks=1))
    assert s.timezone == ZoneInfo("Europe/Kyiv")
    assert (s.max_entries, s.per_host, s.max_redirects, s.max_body) == (50, 4, 3, 512 * 1024)
    assert (s.ops_channel, s.listen, s.user_agent) == ("ops", "127.0.0.1:9100", "newsroom-bot/1.0")
    feed = config.feeds["world"]
    assert (feed.interval, feed.tags, feed.enabled, feed.language) == (
        timedelta(minutes=30), frozenset({"world", "europe"}), False, "uk")
    channel = config.channels["ops"]
    assert channel.timezone == ZoneInfo("America/New_York")
    assert (channel.digest, channel.max_per_hour) == ("daily 08:00", 20)
    assert channel.quiet_hours is not None and channel.quiet_hours.start.hour == 22
    assert channel.title_template == "${feed}: ${title}"
    rule = config.rules["truce"]
    assert (rule.channels, rule.feeds, rule.exclude, rule.enabled) == (
        ("ops", "console"), ("world", "tag:europe"), "sport", False)
    assert config.rule_feeds(rule) == frozenset({"world"})


def test_feed_defaults_and_channel_timezone_follows_monitor() -> None:
    config = build({"monitor": {"interval": "20m", "timezone": "Asia/Tokyo"}, "feeds": {"w": FEED},
                    "channels": {"c": {"url": "json://127.0.0.1/x"}}})
    feed = config.feeds["w"]
    assert (feed.interval, feed.tags, feed.enabled, feed.language) == (
        timedelta(minutes=20), frozenset(), True, None)
    assert config.channels["c"].timezone == ZoneInfo("Asia/Tokyo")
    assert config.channels["c"].enabled
    assert config.rule_feeds(build({"feeds": {"w": FEED}, "rules": {"r": RULE}}).rules["r"]) == {"w"}


# -- durations and sizes ------------------------------------------------------------------------

DURATION_KEYS = ["interval", "backfill", "keep_text", "keep_seen", "timeout", "max_backoff",
                 "give_up_after"]


@pytest.mark.parametrize("key", DURATION_KEYS)
@pytest.mark.parametrize(("text", "delta"), [
    ("90s", timedelta(seconds=90)), ("15m", timedelta(minutes=15)),
    ("1h30m", timedelta(hours=1, minutes=30)), ("36500d", timedelta(days=36500)),
    ("2w1d", timedelta(days=15)),
])
def test_durations_accepted(key: str, text: str, delta: timedelta) -> None:
    assert getattr(build({"monitor": {key: text}}).settings, key) == delta


@pytest.mark.parametrize("key", DURATION_KEYS)
@pytest.mark.parametrize("value", ["15 minutes", 15, "", "15", "m15", "1.5h", "-5m", "15M", "1h 30m",
                                   "99999999999999d"])
def test_bad_durations_are_errors_at_their_key(key: str, value: Any) -> None:
    line = problem_at({"monitor": {key: value}}, f"monitor.{key}")
    assert "90s" in line or "too long" in line  # says how to write one


@pytest.mark.parametrize("value", ["15 minutes", 15, ""])
def test_bad_feed_interval_is_an_error_at_its_key(value: Any) -> None:
    problem_at({"feeds": {"world": {**FEED, "interval": value}}}, "feeds.world.interval")


@pytest.mark.parametrize(("path", "data"), [
    ("monitor.interval", {"monitor": {"interval": "0s"}}),
    ("feeds.world.interval", {"feeds": {"world": {**FEED, "interval": "0m"}}}),
    ("monitor.timeout", {"monitor": {"timeout": "0s"}}),
    ("monitor.max_backoff", {"monitor": {"max_backoff": "0s"}}),
])
def test_zero_waits_that_would_hammer_a_server_are_errors(path: str, data: dict[str, Any]) -> None:
    problem_at(data, path)


@pytest.mark.parametrize(("text", "size"), [("10MiB", 10 * 1024 * 1024), ("512KiB", 512 * 1024),
                                            ("4096B", 4096), ("1MiB", 1024 * 1024)])
def test_sizes_accepted(text: str, size: int) -> None:
    assert build({"monitor": {"max_body": text}}).settings.max_body == size


@pytest.mark.parametrize("value", ["10MB", "10 MiB", "10mib", "10", 10, "", "1.5MiB", "MiB"])
def test_bad_sizes_are_errors_at_their_key(value: Any) -> None:
    assert "KiB" in problem_at({"monitor": {"max_body": value}}, "monitor.max_body")


@pytest.mark.parametrize("key", ["max_entries", "per_host", "max_redirects"])
@pytest.mark.parametrize("value", [0, -1, "5", True, 2.5])
def test_counts_must_be_whole_numbers_of_at_least_one(key: str, value: Any) -> None:
    problem_at({"monitor": {key: value}}, f"monitor.{key}")


@pytest.mark.parametrize("value", ["9100", "localhost", "127.0.0.1:99999", "127.0.0.1:http", 9100])
def test_listen_must_be_host_port(value: Any) -> None:
    problem_at({"monitor": {"listen": value}}, "monitor.listen")


@pytest.mark.parametrize("value", ["", 5, ["a.db"]])
def test_database_must_be_a_path(value: Any) -> None:
    problem_at({"monitor": {"database": value}}, "monitor.database")


# -- unknown keys -------------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "path"), [
    ({"colour": "blue"}, "colour"),
    ({"monitor": {"intervall": "5m"}}, "monitor.intervall"),
    ({"feeds": {"world": {**FEED, "intervall": "5m"}}}, "feeds.world.intervall"),
    ({"channels": {"me": {"url": "json://127.0.0.1/x", "quiet": "22:00-07:00"}}}, "channels.me.quiet"),
    ({"rules": {"truce": {**RULE, "channel": ["console"]}}}, "rules.truce.channel"),
])
def test_unknown_keys_are_errors_with_their_key_path(data: dict[str, Any], path: str) -> None:
    line = problem_at(data, path)
    assert "unknown key" in line


@pytest.mark.parametrize(("data", "path"), [
    ({"feeds": ["world"]}, "feeds"),
    ({"monitor": "fast"}, "monitor"),
    ({"feeds": {"world": "https://news.example.org/rss.xml"}}, "feeds.world"),
])
def test_sections_must_be_tables(data: dict[str, Any], path: str) -> None:
    problem_at(data, path)


def test_every_problem_is_reported_at_once() -> None:
    found = problems({
        "colour": 1,
        "monitor": {"interval": "15 minutes", "timezone": "Mars/Olympus", "max_body": "10MB"},
        "feeds": {"world": {**FEED, "intervall": "5m"}, "nourl": {"tags": ["x"]}},
        "channels": {"me": {"url": "json://127.0.0.1/x", "max_per_hour": 0}},
        "rules": {"truce": {"query": "ceasefire AND (Ukraine", "channels": ["nowhere"]}},
    })
    paths = sorted(line.split(": ", 1)[0] for line in found)
    assert paths == sorted([
        "colour", "monitor.interval", "monitor.timezone", "monitor.max_body",
        "feeds.world.intervall", "feeds.nourl", "channels.me.max_per_hour", "rules.truce.query",
        "rules.truce.channels"])


# -- url / url_env / url_file -------------------------------------------------------------------

@pytest.mark.parametrize("section", ["feeds", "channels"])
@pytest.mark.parametrize("given", [{}, {"url": "https://a.example/x", "url_env": "X"},
                                   {"url_env": "X", "url_file": "f"},
                                   {"url": "https://a.example/x", "url_env": "X", "url_file": "f"}])
def test_exactly_one_url_source(section: str, given: dict[str, str]) -> None:
    line = problem_at({section: {"thing": {**given, "enabled": True}}}, f"{section}.thing",
                      env={"X": "https://b.example/y"}, files={"/srv/monitor/f": "https://c.example/z"})
    assert "exactly one of url, url_env, url_file" in line


@pytest.mark.parametrize("section", ["feeds", "channels"])
def test_url_env_reads_the_environment(section: str) -> None:
    config = build({section: {"thing": {"url_env": "THING_URL"}}},
                   env={"THING_URL": " https://news.example.org/rss?token=abc \n"})
    assert getattr(config, section)["thing"].url == "https://news.example.org/rss?token=abc"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_url_env_unset_or_empty_names_the_variable(value: str | None) -> None:
    env = {} if value is None else {"SLACK_URL": value}
    line = problem_at({"channels": {"team": {"url_env": "SLACK_URL"}}}, "channels.team.url_env", env=env)
    assert "SLACK_URL" in line and "not set" in line


def test_url_file_is_relative_to_the_config_without_credentials_directory() -> None:
    config = build({"channels": {"me": {"url_file": "secrets/me.url"}}},
                   files={"/srv/monitor/secrets/me.url": "mailto://me:pw@example.org\n"})
    assert config.channels["me"].url == "mailto://me:pw@example.org"


def test_url_file_is_relative_to_credentials_directory() -> None:
    config = build({"channels": {"me": {"url_file": "email-url"}},
                    "feeds": {"paid": {"url_file": "/etc/monitor/paid-feed"}}},
                   env={"CREDENTIALS_DIRECTORY": "/run/credentials/monitor.service"},
                   files={"/run/credentials/monitor.service/email-url": "mailto://me:pw@example.org",
                          "/etc/monitor/paid-feed": "https://paid.example.org/rss?key=1"})
    assert config.channels["me"].url == "mailto://me:pw@example.org"
    assert config.feeds["paid"].url == "https://paid.example.org/rss?key=1"


def test_url_file_missing_names_the_file() -> None:
    line = problem_at({"channels": {"me": {"url_file": "email-url"}}}, "channels.me.url_file",
                      env={"CREDENTIALS_DIRECTORY": "/run/credentials/monitor.service"})
    assert "/run/credentials/monitor.service/email-url" in line
    assert "No such file" in line


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_url_file_empty_is_an_error(content: str) -> None:
    line = problem_at({"channels": {"me": {"url_file": "me.url"}}}, "channels.me.url_file",
                      files={"/srv/monitor/me.url": content})
    assert "/srv/monitor/me.url" in line and "empty" in line


@pytest.mark.parametrize("url", ["ftp://news.example.org/rss", "file:///etc/passwd", "news.example.org"])
def test_feed_urls_must_be_http(url: str) -> None:
    problem_at({"feeds": {"w": {"url": url}}}, "feeds.w.url")


def test_database_resolves_in_state_directory_when_set() -> None:
    env = {"STATE_DIRECTORY": "/var/lib/monitor"}
    assert build({}, env=env).settings.database == Path("/var/lib/monitor/monitor.db")
    assert build({"monitor": {"database": "news.db"}}, env=env).settings.database == \
        Path("/var/lib/monitor/news.db")
    assert build({"monitor": {"database": "/data/x.db"}}, env=env).settings.database == Path("/data/x.db")
    assert build({"monitor": {"database": "news.db"}}).settings.database == CONFIG.parent / "news.db"


# -- secrets never appear in problems -----------------------------------------------------------

SECRET_URL = f"json://user:{SECRET}@127.0.0.1:1/hook"


@pytest.mark.parametrize(("data", "env", "files"), [
    # a secret in a channel that has other problems
    ({"channels": {"c": {"url": SECRET_URL, "max_per_hour": 0, "timezone": "Nowhere/Land",
                         "digest": "sometimes", "quiet_hours": "late", "colour": "red"}}}, {}, {}),
    ({"channels": {"c": {"url_env": "C_URL", "title_template": "${secret}"}}}, {"C_URL": SECRET_URL}, {}),
    ({"channels": {"c": {"url_file": "c.url", "body_template": "$"}}}, {},
     {"/srv/monitor/c.url": SECRET_URL}),
    # a secret given twice
    ({"channels": {"c": {"url": SECRET_URL, "url_env": "C_URL"}}}, {"C_URL": SECRET_URL}, {}),
    # a feed URL with a token that is not http(s)
    ({"feeds": {"f": {"url": f"ftp://user:{SECRET}@example.org/rss"}}}, {}, {}),
    ({"feeds": {"f": {"url_env": "F_URL"}}}, {"F_URL": f"gopher://{SECRET}.example.org/"}, {}),
    ({"feeds": {"f": {"url_file": "f.url"}}}, {}, {"/srv/monitor/f.url": f"ftp://x/{SECRET}"}),
])
def test_secrets_never_appear_in_any_problem(data: dict[str, Any], env: dict[str, str],
                                             files: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        build(data, env=env, files=files,
              check_channel_url=lambda url: "apprise does not know this kind of URL")
    text = "\n".join([*caught.value.problems, str(caught.value), caught.value.hint or ""])
    assert SECRET not in text


def test_channel_url_problems_from_apprise_are_at_the_url_key_without_the_url() -> None:
    line = problem_at({"channels": {"c": {"url_env": "C_URL"}}}, "channels.c.url",
                      env={"C_URL": SECRET_URL}, check_channel_url=lambda url: "unknown service")
    assert SECRET not in line


def test_a_channel_repr_hides_its_url() -> None:
    config = build({"channels": {"c": {"url": SECRET_URL}}})
    assert SECRET not in repr(config.channels["c"])
    assert SECRET not in repr(config)


# -- cross references ---------------------------------------------------------------------------

def test_undefined_channels_feeds_and_tags() -> None:
    found = problems({
        "monitor": {"ops_channel": "pager"},
        "feeds": {"world": {**FEED, "tags": ["world"]}},
        "channels": {"me": {"url": "json://127.0.0.1/x"}},
        "rules": {"a": {"query": "x", "channels": ["me", "nowhere"], "feeds": ["world", "sport"]},
                  "b": {"query": "y", "channels": ["console"], "feeds": ["tag:world", "tag:none"]}},
    })
    by_path = {line.split(": ", 1)[0]: line for line in found}
    assert set(by_path) == {"monitor.ops_channel", "rules.a.channels", "rules.a.feeds", "rules.b.feeds"}
    assert "'nowhere'" in by_path["rules.a.channels"] and "me" in by_path["rules.a.channels"]
    assert "'sport'" in by_path["rules.a.feeds"]
    assert "'none'" in by_path["rules.b.feeds"]
    assert "'pager'" in by_path["monitor.ops_channel"]


def test_console_channel_is_built_in() -> None:
    config = build({"monitor": {"ops_channel": "console"}, "rules": {"r": RULE}})
    assert config.rules["r"].channels == ("console",)


def test_a_rule_with_a_bad_query_still_has_its_references_checked() -> None:
    found = problems({"rules": {"r": {"query": "a NEAR/ b", "channels": ["nowhere"]}}})
    assert sorted(line.split(": ", 1)[0] for line in found) == ["rules.r.channels", "rules.r.query"]


@pytest.mark.parametrize(("table", "path"), [
    ({"channels": ["console"]}, "rules.r.query"),
    ({"query": "x"}, "rules.r.channels"),
    ({"query": "x", "channels": []}, "rules.r.channels"),
    ({"query": "x", "channels": "console"}, "rules.r.channels"),
    ({"query": "", "channels": ["console"]}, "rules.r.query"),
    ({"query": "(x", "channels": ["console"]}, "rules.r.query"),
    ({"query": "x", "exclude": "NOT", "channels": ["console"]}, "rules.r.exclude"),
    ({"query": "x", "channels": ["console"], "feeds": "world"}, "rules.r.feeds"),
    ({"query": "x", "channels": ["console"], "enabled": "yes"}, "rules.r.enabled"),
])
def test_rule_problems(table: dict[str, Any], path: str) -> None:
    problem_at({"rules": {"r": table}}, path)


def test_query_problem_shows_column_and_caret() -> None:
    line = problem_at({"rules": {"r": {"query": "ceasefire AND (Ukraine", "channels": ["console"]}}},
                      "rules.r.query")
    assert "column" in line and "^" in line


# -- time zones, digests, quiet hours, rate limits, templates -----------------------------------

@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "UTC+3", "../../etc/passwd", 3, "Europe/"])
def test_bad_time_zones(zone: Any) -> None:
    problem_at({"monitor": {"timezone": zone}}, "monitor.timezone")
    problem_at({"channels": {"c": {"url": "json://127.0.0.1/x", "timezone": zone}}}, "channels.c.timezone")


@pytest.mark.parametrize("schedule", ["hourly", "daily 08:00", "daily 23:59", "weekly mon 08:00",
                                      "weekly sun 00:00", "0 8 * * 1-5", "*/30 * * * *", "0 9 * * 7"])
def test_digest_schedules_accepted(schedule: str) -> None:
    config = build({"channels": {"c": {"url": "json://127.0.0.1/x", "digest": schedule}}})
    assert config.channels["c"].digest == schedule


@pytest.mark.parametrize("schedule", ["daily", "daily 25:00", "daily 8:00", "weekly 08:00",
                                      "weekly xyz 08:00", "every morning", "* * * *", "61 * * * *",
                                      "", 8])
def test_bad_digest_schedules(schedule: Any) -> None:
    problem_at({"channels": {"c": {"url": "json://127.0.0.1/x", "digest": schedule}}}, "channels.c.digest")


@pytest.mark.parametrize("schedule", ["0 8 * * 9", "0 8 * * 1,8"])
def test_out_of_range_crontab_weekday_is_a_config_problem(schedule: str) -> None:
    problem_at({"channels": {"c": {"url": "json://127.0.0.1/x", "digest": schedule}}}, "channels.c.digest")


@pytest.mark.parametrize("schedule", ["0 8 * * 0-6", "0 8 * * */2"])
def test_valid_crontab_weekday_forms_accepted(schedule: str) -> None:
    config = build({"channels": {"c": {"url": "json://127.0.0.1/x", "digest": schedule}}})
    assert config.channels["c"].digest == schedule


@pytest.mark.parametrize("window", ["22:00-07:00", "00:00-06:30", "12:00-13:00"])
def test_quiet_hours_accepted(window: str) -> None:
    quiet = build({"channels": {"c": {"url": "json://127.0.0.1/x", "quiet_hours": window}}}
                  ).channels["c"].quiet_hours
    assert quiet is not None and f"{quiet.start:%H:%M}-{quiet.end:%H:%M}" == window


@pytest.mark.parametrize("window", ["22-07", "22:00 - 07:00", "24:00-07:00", "22:00", "", 2200])
def test_bad_quiet_hours(window: Any) -> None:
    problem_at({"channels": {"c": {"url": "json://127.0.0.1/x", "quiet_hours": window}}},
               "channels.c.quiet_hours")


@pytest.mark.parametrize("value", [0, -3, "10", 1.5, False])
def test_bad_max_per_hour(value: Any) -> None:
    problem_at({"channels": {"c": {"url": "json://127.0.0.1/x", "max_per_hour": value}}},
               "channels.c.max_per_hour")


@pytest.mark.parametrize("key", ["title_template", "body_template"])
@pytest.mark.parametrize("template", ["${title.upper}", "${feed} ${__class__}", "{title}${nope}",
                                      "costs $", "${title", "", 5])
def test_bad_templates(key: str, template: Any) -> None:
    problem_at({"channels": {"c": {"url": "json://127.0.0.1/x", key: template}}}, f"channels.c.{key}")


@pytest.mark.parametrize("template", ["${title}", "$title — $feed", "{title} costs $$5",
                                      "${rules}: ${snippet} ${link} (${published})"])
def test_templates_accepted(template: str) -> None:
    config = build({"channels": {"c": {"url": "json://127.0.0.1/x", "body_template": template}}})
    assert config.channels["c"].body_template == template


def test_unknown_placeholder_names_the_known_ones() -> None:
    line = problem_at({"channels": {"c": {"url": "json://127.0.0.1/x", "title_template": "${headline}"}}},
                      "channels.c.title_template")
    assert "${headline}" in line and "${title}" in line


# -- load_config: the file ----------------------------------------------------------------------

@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "MONITOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path, clean_env: None) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[monitor]\ninterval = "15m"\n\n[feeds.world]\nurl = "https://x.example/rss\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.exit_code == 78
    [line] = caught.value.problems
    assert str(path) in line
    assert "line 5" in line


def test_toml_duplicate_table_is_an_error(tmp_path: Path, clean_env: None) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[feeds.a]\nurl = "https://a.example/rss"\n[feeds.a]\nurl = "https://b.example/rss"\n',
                    encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.problems[0] and "line 3" in caught.value.problems[0]


def test_toml_syntax_error_does_not_echo_a_secret(tmp_path: Path, clean_env: None) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[channels.c]\nurl = json://user:{SECRET}@host/x\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert SECRET not in "\n".join(caught.value.problems)
    assert "line 2" in caught.value.problems[0]


def test_config_not_utf8_or_missing(tmp_path: Path, clean_env: None) -> None:
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('[monitor]\nuser_agent = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert str(bad) in caught.value.problems[0]
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    assert str(missing) in caught.value.problems[0]
    assert caught.value.hint and "--config" in caught.value.hint


def test_load_config_resolves_files_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     clean_env: None) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "team-url").write_text("json://127.0.0.1:9/hook\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    monkeypatch.setenv("MONITOR_TEST_FEED_URL", "https://news.example.org/rss?token=1")
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir()
    path.write_text('[feeds.w]\nurl_env = "MONITOR_TEST_FEED_URL"\n'
                    '[channels.team]\nurl_file = "team-url"\n'
                    '[rules.r]\nquery = "ceasefire"\nchannels = ["team"]\n', encoding="utf-8")
    config = load_config(path)
    assert config.feeds["w"].url == "https://news.example.org/rss?token=1"
    assert config.channels["team"].url == "json://127.0.0.1:9/hook"
    assert config.settings.database == tmp_path / "state" / "monitor.db"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert load_config(path).settings.database == path.parent.resolve() / "monitor.db"


def test_example_config_loads(clean_env: None) -> None:
    config = load_config(ROOT / "config.example.toml")
    assert config.feeds and config.rules
    assert config.settings.interval == timedelta(minutes=15)
    assert config.settings.database == (ROOT / "monitor.db").resolve()
    for rule in config.rules.values():
        assert config.rule_feeds(rule), rule.name
