"""`[monitor] listen`: `/healthz` and `/metrics` over HTTP, served from a daemon thread.

I/O: a standard-library ThreadingHTTPServer. What "healthy" means and how many alerts are pending
are callbacks supplied by the service; the metrics themselves come from metrics.py.
"""

from __future__ import annotations

import errno
import logging
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast
from urllib.parse import urlsplit

from monitor import metrics
from monitor.errors import MonitorError

log = logging.getLogger("monitor.health")

HealthCheck = Callable[[], tuple[bool, str]]
PendingCounts = Callable[[], Mapping[str, int]]

REQUEST_TIMEOUT = 10.0  # seconds; a client that stalls does not keep a thread forever


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:9100`) -> (host, port). Port 0 picks a free port."""
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise MonitorError(
            f"[monitor] listen = {listen!r} is not HOST:PORT",
            hint='use e.g. listen = "127.0.0.1:9100"',
        )
    return host, int(port)


class HealthServer:
    """Serves GET /healthz (200 "ok" or 503 with the reason) and GET /metrics; 404 otherwise."""

    def __init__(
        self, listen: str, *, is_healthy: HealthCheck, pending: PendingCounts | None = None
    ) -> None:
        self.listen = listen
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._server = _Server((host, port), family, is_healthy, pending)
        except OSError as exc:
            raise MonitorError(
                f"cannot listen on [monitor] listen = {listen!r}: {exc.strerror or exc}",
                hint=_bind_hint(exc),
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )
        self._thread.start()
        log.info("serving /healthz and /metrics on %s (port %d)", self.listen, self.port)

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call once whether started or not."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()


def _bind_hint(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            "another process uses this port (`ss -ltnp` shows which): stop it or pick a free port"
        )
    if exc.errno == errno.EACCES:
        return "ports below 1024 need privileges: pick a port such as 9100"
    return 'use an address of this host, e.g. "127.0.0.1:9100" (or "0.0.0.0:9100" for all)'


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        is_healthy: HealthCheck,
        pending: PendingCounts | None,
    ) -> None:
        self.address_family = family
        self.is_healthy = is_healthy
        self.pending = pending
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host's FQDN (a DNS lookup); we never use it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = (
            str(self.server_address[0]),
            int(self.server_address[1]),
        )


class _Handler(BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT
    server_version = "monitor"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._healthz()
        elif path == "/metrics":
            self._metrics()
        else:
            self._reply(404, b"not found: try /healthz or /metrics\n")

    def _healthz(self) -> None:
        server = cast(_Server, self.server)
        try:
            healthy, reason = server.is_healthy()
        except Exception as exc:  # noqa: BLE001 -- a failing check is an unhealthy daemon, not a crashed server
            healthy, reason = False, f"health check failed: {type(exc).__name__}: {exc}"
        if healthy:
            self._reply(200, b"ok\n")
        else:
            self._reply(503, f"{reason}\n".encode())

    def _metrics(self) -> None:
        server = cast(_Server, self.server)
        pending: Mapping[str, int] | None = None
        if server.pending is not None:
            try:
                pending = server.pending()
            except Exception as exc:  # noqa: BLE001 -- the other metrics are still worth serving
                message = (
                    exc.message if isinstance(exc, MonitorError) else f"{type(exc).__name__}: {exc}"
                )
                log.warning("metrics: pending alerts not read: %s", message)
        self._reply(200, metrics.exposition(pending), content_type=metrics.CONTENT_TYPE)

    def _reply(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # The default writes every request to stderr; scrapes every 15 s would flood the journal.
        log.debug("%s %s", self.address_string(), format % args)
