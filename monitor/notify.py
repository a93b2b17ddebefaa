"""Delivery through apprise: validate channel URLs, pick a message style, send. Does I/O.

The only module importing apprise. Channel URLs carry tokens and passwords, so nothing this
module says (problems, errors) contains a URL or any part of one except its scheme; apprise's
own log lines are captured per call, redacted and used as the reason.
"""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import unquote

import apprise
from apprise.common import NotifyFormat
from apprise.plugins.email.base import NotifyEmail
from apprise.plugins.slack import NotifySlack

from monitor.errors import DeliveryError
from monitor.render import Message

CONSOLE = "console"  # the built-in channel's URL value

# A whole apprise call (connect + send + reply) may take this long before it counts as failed.
# Per-socket limits are apprise's (HTTP 4 s connect / 4 s read; SMTP 15 s) unless the URL
# sets cto=/rto=; this caps a slow trickle or a user's large cto/rto.
CALL_TIMEOUT_SECONDS = 20.0

# apprise's debug lines include full service URLs (e.g. Slack's "POST URL"): never let them
# reach our log handlers; we read what we need from each call's captured logs instead.
_apprise_logger = logging.getLogger("apprise")
_apprise_logger.propagate = False
_apprise_logger.addHandler(logging.NullHandler())

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_HTTP_STATUS = re.compile(r"error=(\d{3})\b")
_HINT = "check the channel's URL and that the service is reachable; the alert stays queued"


def _scheme(url: str) -> str | None:
    match = re.match(r"\s*([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return match.group(1).lower() if match else None


def _secrets(url: str) -> list[str]:
    """Every piece of the URL that might be a secret, longest first."""
    body = url.split("://", 1)[-1]
    pieces = set()
    for piece in re.split(r"[/:@?&=#,;+\s]+", body):
        for form in (piece, unquote(piece)):
            if len(form) >= 3:
                pieces.add(form)
    return sorted(pieces, key=len, reverse=True)


def redact(text: str, url: str) -> str:
    """`text` with any URL, any (value) and any piece of `url` replaced by '***'."""
    text = _URL_IN_TEXT.sub("***", text)
    if url.strip():
        text = text.replace(url.strip(), "***")
    # apprise puts the offending value in parentheses: "Invalid Slack Token (xoxb-...)".
    text = re.sub(r"\([^()]*\)", "(***)", text)
    for piece in _secrets(url):
        if len(piece) >= 8:
            text = text.replace(piece, "***")
        else:
            # Short pieces only as whole words, so "valid" in "invalid" survives.
            text = re.sub(rf"(?<![\w]){re.escape(piece)}(?![\w])", "***", text)
    return text


def _instantiate(url: str) -> tuple[apprise.NotifyBase | None, str | None]:
    """The plugin for `url`, or None and a redacted reason."""
    captured = _Collector()
    _apprise_logger.addHandler(captured)
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    except Exception as exc:  # noqa: BLE001 -- apprise raises TypeError & co for bad arguments
        return None, redact(str(exc), url) or type(exc).__name__
    finally:
        _apprise_logger.removeHandler(captured)
    if plugin is None:
        return None, redact(captured.lines[-1], url) if captured.lines else None
    return plugin, None


class _Collector(logging.Handler):
    """Keeps the warnings apprise logs while one URL is instantiated."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage().strip()
        if line:
            self.lines.append(line)


def validate(url: str) -> str | None:
    """None if apprise can use `url`; else a problem sentence naming at most its scheme."""
    if url == CONSOLE:
        return None
    scheme = _scheme(url)
    if scheme is None:
        return "not an apprise URL (expected scheme://...)"
    plugin, reason = _instantiate(url)
    if plugin is not None:
        return None
    if scheme not in apprise.NotificationManager().schemas():  # type: ignore[no-untyped-call]
        return f'apprise does not know the URL scheme "{scheme}"'
    detail = f": {reason.rstrip(' :.')}" if reason else ""
    return f"apprise cannot use this {scheme}:// URL{detail}"


def style_for(url: str) -> str:
    """The render style for a channel URL (see monitor.render)."""
    if url == CONSOLE:
        return "console"
    plugin, _ = _instantiate(url)
    if isinstance(plugin, NotifySlack):
        return "slack"
    if isinstance(plugin, NotifyEmail):
        return "email"
    if plugin is not None and plugin.resolve_format(None) == NotifyFormat.MARKDOWN:
        return "markdown"
    return "text"


def send(url: str, message: Message) -> None:
    """Deliver one message; raise DeliveryError (without secrets) when the channel refuses."""
    if url == CONSOLE:
        print(f"== {message.title}", message.body, "", sep="\n", file=sys.stdout, flush=True)
        return

    scheme = _scheme(url) or "channel"
    plugin, reason = _instantiate(url)
    if plugin is None:
        detail = f": {reason.rstrip(' :.')}" if reason else ""
        raise DeliveryError(f"the {scheme}:// URL is not usable{detail}.", _HINT)

    sender = apprise.Apprise()
    sender.add(plugin)
    try:
        result = sender.notify(
            body=message.body,
            title=message.title,
            body_format=message.body_format,
            timeout=CALL_TIMEOUT_SECONDS,
        )
    except Exception as exc:  # noqa: BLE001 -- a plugin bug must not take the daemon down
        raise DeliveryError(
            f"the {scheme}:// channel failed with {type(exc).__name__}: {redact(str(exc), url)}.",
            _HINT,
        ) from None
    if result:
        return
    raise DeliveryError(
        f"the {scheme}:// channel did not accept the message: {_reason(result, url)}.", _HINT
    )


def _reason(result: apprise.AppriseResult, url: str) -> str:
    """A short, redacted explanation from a failed call's log entries."""
    if result.timeout_count:
        return f"no answer within {CALL_TIMEOUT_SECONDS:g} s"
    messages = [
        entry.message
        for entry in result.logs()
        if entry.level in ("WARNING", "ERROR", "CRITICAL") and entry.message.strip()
    ]
    for text in messages:
        status = _HTTP_STATUS.search(text)
        if status:
            return f"HTTP {status.group(1)} ({redact(text, url).rstrip('.')})"
    if messages:
        return redact(messages[0], url).rstrip(".")
    return f"apprise reported {result.status.name.lower()}"
