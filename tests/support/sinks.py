"""Real local receivers for delivery tests: an SMTP server and an HTTP webhook endpoint.

Both bind 127.0.0.1 on a free port, run in background threads and are context managers.
`slack_redirect` sends apprise's Slack requests to a local URL (e.g. a WebhookSink).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import importlib.util
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session


def _free_port() -> int:
    # aiosmtpd's Controller probes its port to see it is up, so it cannot take port 0.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


class SmtpSink:
    """An aiosmtpd server that keeps every message it receives.

    with SmtpSink() as smtp:
        send(smtp.mailto_url(), message)
        smtp.wait_for(1)
        smtp.messages[0]["Subject"]
    """

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._lock = threading.Lock()
        self._messages: list[EmailMessage] = []
        self._envelopes: list[tuple[str, list[str]]] = []
        self._controller = Controller(self, hostname=self.host, port=self.port)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self._messages.append(parsed)
            self._envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        """A snapshot of the messages received so far, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        """(MAIL FROM, RCPT TO list) per message."""
        with self._lock:
            return list(self._envelopes)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least n messages arrived; raises AssertionError on timeout."""
        if not _wait(lambda: len(self.messages) >= n, timeout):
            raise AssertionError(f"expected {n} email(s), got {len(self.messages)}")
        return self.messages

    def mailto_url(
        self, to: str = "alerts@example.org", sender: str = "monitor@example.org"
    ) -> str:
        """An apprise URL that delivers to this server: plain SMTP, no TLS, no login.

        mailto:// (not mailtos://) means apprise's "insecure" mode: no STARTTLS.
        """
        return (
            f"mailto://{self.host}:{self.port}"
            f"?from={quote(sender, safe='@')}&to={quote(to, safe='@')}"
        )

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class WebhookSink:
    """A threaded HTTP server that records every POSTed JSON body.

    Answers 200 with body `ok` (what apprise's Slack webhook mode expects), or
    `{"ok": true}` for Slack API paths (/api/...), or the status set by fail_with().
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[Any] = []
        self._paths: list[str] = []
        self._headers: list[dict[str, str]] = []
        self._refused = 0
        self._fail_status: int | None = None
        self.delay = 0.0  # seconds between recording a post and answering it
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                status = sink._fail_status
                if status is not None:
                    with sink._lock:
                        sink._refused += 1
                    self._reply(status, b'{"ok": false, "error": "refused by test"}')
                    return
                try:
                    body: Any = json.loads(data.decode("utf-8")) if data else None
                except ValueError:
                    body = data.decode("utf-8", "replace")
                with sink._lock:
                    sink._posts.append(body)
                    sink._paths.append(self.path)
                    sink._headers.append(dict(self.headers.items()))
                if sink.delay:
                    time.sleep(sink.delay)
                if self.path.startswith("/api/"):
                    self._reply(200, b'{"ok": true, "ts": "1.0"}')
                else:
                    self._reply(200, b"ok")

            do_PUT = do_POST

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = "127.0.0.1"
        self.port = int(self._server.server_address[1])
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def json_url(self, path: str = "/hook") -> str:
        """An apprise json:// URL that posts to this sink."""
        return f"json://{self.host}:{self.port}{path}"

    @property
    def posts(self) -> list[Any]:
        """A snapshot of the parsed JSON bodies of accepted posts, oldest first."""
        with self._lock:
            return list(self._posts)

    @property
    def paths(self) -> list[str]:
        """The request path (with query) of each accepted post."""
        with self._lock:
            return list(self._paths)

    @property
    def headers(self) -> list[dict[str, str]]:
        """The request headers of each accepted post."""
        with self._lock:
            return list(self._headers)

    @property
    def refused(self) -> int:
        """How many posts were answered with the fail_with() status."""
        with self._lock:
            return self._refused

    def fail_with(self, status: int | None) -> None:
        """Answer every post with this HTTP status until called with None."""
        self._fail_status = status

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        """Wait until at least n posts were accepted; raises AssertionError on timeout."""
        if not _wait(lambda: len(self.posts) >= n, timeout):
            raise AssertionError(f"expected {n} post(s), got {len(self.posts)}")
        return self.posts

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _slack_capture() -> ModuleType:
    # Loaded by path under the name sitecustomize imports, so both share one patch state.
    existing = sys.modules.get("slack_capture")
    if existing is not None:
        return existing
    path = Path(__file__).parent / "slackcapture" / "slack_capture.py"
    spec = importlib.util.spec_from_file_location("slack_capture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["slack_capture"] = module
    spec.loader.exec_module(module)
    return module


SLACKCAPTURE_DIR = Path(__file__).parent / "slackcapture"
"""Put this on PYTHONPATH (and set MONITOR_TEST_SLACK_URL) to redirect Slack in a subprocess."""


@contextlib.contextmanager
def slack_redirect(url: str) -> Iterator[None]:
    """In this process, send requests for hooks.slack.com / slack.com to `url` instead."""
    capture = _slack_capture()
    capture.install(url)
    try:
        yield
    finally:
        capture.uninstall()
