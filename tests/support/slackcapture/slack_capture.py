"""Redirect apprise's Slack HTTP calls to a local receiver, so tests never reach slack.com.

Used two ways: `sitecustomize.py` beside this file installs it in a subprocess when
MONITOR_TEST_SLACK_URL is set; `tests.support.sinks.slack_redirect` installs it in-process.
The original path and query are appended to the local URL, so the receiver can tell a
webhook post (/services/...) from an API call (/api/...).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

ENV_VAR = "MONITOR_TEST_SLACK_URL"
SLACK_PREFIXES = ("https://hooks.slack.com", "https://slack.com")

_lock = threading.Lock()
_original: Any = None  # requests.Session.request before patching
_target: str | None = None


def rewrite(url: str, target: str) -> str:
    """The local URL a Slack URL is sent to; other URLs unchanged."""
    if not url.startswith(SLACK_PREFIXES):
        return url
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return target.rstrip("/") + rest


def install(target: str) -> None:
    """Patch requests.Session.request (every requests.* call goes through it)."""
    global _original, _target
    import requests

    with _lock:
        _target = target
        if _original is not None:
            return
        original = requests.Session.request
        _original = original

        def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            current = _target
            if current is not None and isinstance(url, str):
                url = rewrite(url, current)
            return original(self, method, url, *args, **kwargs)

        setattr(requests.Session, "request", request)  # noqa: B010 -- plain assignment fights the stubs


def uninstall() -> None:
    """Restore requests.Session.request."""
    global _original, _target
    import requests

    with _lock:
        if _original is not None:
            setattr(requests.Session, "request", _original)  # noqa: B010
        _original = None
        _target = None
