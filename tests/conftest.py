"""Shared fixtures: real local servers, config files, and the real CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.feedserver import FeedServer
from tests.support.sinks import SmtpSink, WebhookSink

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SLACK_CAPTURE = ROOT / "tests" / "support" / "slackcapture"


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    with FeedServer() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


@pytest.fixture
def slack() -> Iterator[WebhookSink]:
    """Receives what apprise's Slack plugin posts (the CLI's requests are redirected here)."""
    with WebhookSink() as sink:
        yield sink


def toml_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()


def write_config(path: Path, *, monitor: dict[str, Any] | None = None,
                 feeds: dict[str, dict[str, Any]] | None = None,
                 channels: dict[str, dict[str, Any]] | None = None,
                 rules: dict[str, dict[str, Any]] | None = None) -> Path:
    """A TOML config file from plain dicts (the database defaults to beside it)."""
    lines = ["[monitor]"]
    for key, value in {"database": "monitor.db", **(monitor or {})}.items():
        lines.append(f"{key} = {toml_value(value)}")
    for section, tables in (("feeds", feeds), ("channels", channels), ("rules", rules)):
        for name, table in (tables or {}).items():
            lines.append(f"\n[{section}.{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Cli:
    """Runs `python -m monitor --config CONFIG ...` as a user would."""

    config: Path
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitor", "--config", str(self.config), *args],
                              capture_output=True, text=True, env=self.env, timeout=timeout,
                              cwd=self.config.parent)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(self.config), *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env, cwd=self.config.parent)

    def status_json(self) -> dict[str, dict[str, Any]]:
        result = self("status", "--json")
        assert result.returncode == 0, result.stderr
        return {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}


@pytest.fixture
def cli_env(slack: WebhookSink) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "STATE_DIRECTORY",
                                                                     "NOTIFY_SOCKET"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SLACK_CAPTURE), str(ROOT)])
    env["MONITOR_TEST_SLACK_URL"] = slack.url
    # Tests never reach the internet, not even through a proxy from the environment.
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    return env


@pytest.fixture
def make_cli(tmp_path: Path, cli_env: dict[str, str]):  # type: ignore[no-untyped-def]
    def make(**sections: Any) -> Cli:
        return Cli(config=write_config(tmp_path / "config.toml", **sections), env=cli_env)
    return make
