"""A real local HTTP/1.1 feed server for tests, with conditional GET and fault injection.

Threaded, keep-alive capable, bound to 127.0.0.1 on a free port. Each path serves what was
`put()` there; `fault()` makes a path misbehave (see `FeedServer.fault` for the modes).
Every request is recorded. Usable as a context manager or with start()/stop().

    with FeedServer() as srv:
        srv.put("/feed.xml", b"<rss>...</rss>")
        srv.fault("/slow", "delay", seconds=0.5)
        fetch(srv.url("/feed.xml"))
        assert srv.requests_for("/feed.xml")[0].headers["user-agent"]
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http
import os
import re
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

RSS_TYPE = "application/rss+xml; charset=utf-8"
MiB = 1024 * 1024

FAULT_MODES = frozenset(
    {
        "status",
        "slow_first_byte",
        "trickle",
        "reset",
        "redirect",
        "redirect_loop",
        "gzip_bomb",
        "oversized",
        "html_page",
        "content_type",
        "invalid_utf8",
        "redirect_file",
        "delay",
    }
)


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it. `path` is the request target (query included);
    `headers` have lower-case keys; `at` is wall-clock time.time() when it arrived."""

    path: str
    method: str
    headers: dict[str, str]
    at: float


@dataclass
class _Resource:
    body: bytes = b""
    content_type: str = RSS_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    modified: float = 0.0  # the time behind last_modified
    present: bool = False  # put() was called (a fault alone may need no body)
    fault: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


# Gzip bombs are expensive to build (compressing 200 MiB of zeros), so each size is built once
# per process, streaming, and kept compressed (about 0.1 % of its inflated size).
_bomb_lock = threading.Lock()
_bombs: dict[int, bytes] = {}


def gzip_bomb(inflated_size: int) -> bytes:
    """A gzip stream that inflates to `inflated_size` zero bytes (built once, cached)."""
    with _bomb_lock:
        cached = _bombs.get(inflated_size)
        if cached is None:
            compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: gzip container
            chunk = bytes(MiB)
            parts: list[bytes] = []
            left = inflated_size
            while left > 0:
                parts.append(compressor.compress(chunk[: min(left, MiB)]))
                left -= MiB
            parts.append(compressor.flush())
            cached = _bombs[inflated_size] = b"".join(parts)
        return cached


def _strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _corrupt(body: bytes, count: int) -> bytes:
    """Replace `count` letters of text content (between tags) with 0xFF, keeping markup intact."""
    letters = [
        m.start(1) + i
        for m in re.finditer(rb">([^<]+)<", body)
        for i, byte in enumerate(m.group(1))
        if chr(byte).isalpha()
    ] or list(range(len(body)))  # no markup: any byte will do
    out = bytearray(body)
    step = max(1, len(letters) // max(1, count))
    for pos in letters[step // 2 :: step][:count]:
        out[pos] = 0xFF
    return bytes(out)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block stop()
    allow_reuse_address = True

    def __init__(self, owner: FeedServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (timeouts, cancellation, refused bodies) are expected in tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server
    timeout = 30  # an idle keep-alive connection is dropped after this

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.owner._connections_add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._connections_discard(self.connection)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, *, head: bool) -> None:
        owner = self.server.owner
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            k = key.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        owner._record(Recorded(self.path, self.command, headers, time.time()))
        owner._enter()
        try:
            _Responder(self, owner, head).respond()
        except OSError:  # the client hung up or the connection was reset on purpose
            self.close_connection = True
        finally:
            owner._leave()


class _Responder:
    """Answers one request according to the path's resource and fault."""

    def __init__(self, handler: _Handler, owner: FeedServer, head: bool) -> None:
        self.h = handler
        self.owner = owner
        self.head = head
        self.res = owner._lookup(handler.path)

    # -- helpers -----------------------------------------------------------------------------

    def send(
        self,
        code: int,
        body: bytes = b"",
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        h = self.h
        h.send_response(code, reason)
        sent_type = False
        for key, value in (headers or {}).items():
            h.send_header(key, value)
            sent_type |= key.lower() == "content-type"
        if content_type is not None and not sent_type:
            h.send_header("Content-Type", content_type)
        if code != 304 and not any(k.lower() == "content-length" for k in headers or {}):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not self.head and code != 304 and body:
            h.wfile.write(body)

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True when it stopped."""
        return self.owner._stopping.wait(seconds)

    def validators(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.res.etag:
            out["ETag"] = self.res.etag
        if self.res.last_modified:
            out["Last-Modified"] = self.res.last_modified
        return out

    def not_modified(self) -> bool:
        inm = self.h.headers.get("If-None-Match")
        if inm is not None:
            if self.res.etag is None:
                return False
            tags = re.findall(r'\*|(?:W/)?"[^"]*"', inm)  # entity-tags may contain commas
            return "*" in tags or self.res.etag in tags or f"W/{self.res.etag}" in tags
        ims = self.h.headers.get("If-Modified-Since")
        if ims is not None and self.res.last_modified is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims)
                modified = email.utils.parsedate_to_datetime(self.res.last_modified)
            except (TypeError, ValueError):
                return False
            return modified <= since
        return False

    def normal(self, *, content_type: str | None = None, body: bytes | None = None) -> None:
        res = self.res
        if not res.present:
            self.send(404, b"not found\n", content_type="text/plain")
            return
        headers = {**self.validators(), **res.headers}
        if self.not_modified():
            self.send(304, headers=headers)
            return
        self.send(
            200,
            res.body if body is None else body,
            headers=headers,
            content_type=content_type or res.content_type,
        )

    def absolute(self, location: str) -> str:
        return self.owner.url(location) if location.startswith("/") else location

    # -- dispatch ----------------------------------------------------------------------------

    def respond(self) -> None:
        mode = self.res.fault
        o = self.res.options
        if mode is None:
            self.normal()
        elif mode == "status":
            code = int(o.get("code", 500))
            headers = dict(o.get("headers") or {})
            retry_after = o.get("retry_after")
            if isinstance(retry_after, datetime):
                headers["Retry-After"] = email.utils.format_datetime(retry_after, usegmt=True)
            elif retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            reason = o.get("reason")
            body = o.get("body", f"{code} {reason or _reason(code)}\n".encode())
            self.send(code, body, reason=reason, headers=headers, content_type="text/plain")
        elif mode == "delay" or mode == "slow_first_byte":
            if not self.wait(float(o.get("seconds", 1.0))):
                self.normal()
        elif mode == "trickle":
            self.trickle(o)
        elif mode == "reset":
            self.reset(o)
        elif mode in ("redirect", "redirect_file"):
            default = "file:///etc/passwd" if mode == "redirect_file" else "/"
            location = self.absolute(str(o.get("location", default)))
            self.send(int(o.get("code", 302)), headers={"Location": location})
        elif mode == "redirect_loop":
            # Every hop is a new URL (…?hop=N), so only a hop count can stop a client.
            path = urlsplit(self.h.path).path
            query = urlsplit(self.h.path).query
            hop = int(query[4:]) + 1 if query.startswith("hop=") else 1
            location = self.owner.url(f"{path}?hop={hop}")
            self.send(int(o.get("code", 302)), headers={"Location": location})
        elif mode == "gzip_bomb":
            bomb = gzip_bomb(int(o.get("size", 200 * MiB)))
            self.send(
                200,
                bomb,
                headers={"Content-Encoding": "gzip"},
                content_type=str(o.get("content_type", RSS_TYPE)),
            )
        elif mode == "oversized":
            self.oversized(o)
        elif mode == "html_page":
            href = str(o.get("href", "/feed.xml"))
            page = (
                "<!DOCTYPE html>\n<html><head><title>A news site</title>\n"
                f'<link rel="alternate" type="application/rss+xml" title="RSS" href="{href}">\n'
                "</head><body><h1>Latest news</h1><p>Not a feed.</p></body></html>\n"
            )
            self.send(200, page.encode(), content_type="text/html; charset=utf-8")
        elif mode == "content_type":
            self.normal(content_type=str(o.get("value", "text/plain; charset=iso-8859-1")))
        elif mode == "invalid_utf8":
            self.normal(body=_corrupt(self.res.body, int(o.get("count", 3))))
        else:  # pragma: no cover - fault() validates modes
            raise AssertionError(mode)

    def trickle(self, o: dict[str, Any]) -> None:
        chunk = bytes(o.get("chunk", b"<")) or b"<"
        interval = float(o.get("interval", 0.2))
        duration = float(o.get("seconds", 600.0))
        h = self.h
        h.send_response(200)
        h.send_header("Content-Type", RSS_TYPE)
        h.send_header("Content-Length", str(10 * MiB))
        h.end_headers()
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            h.wfile.write(chunk)
            if self.wait(interval):
                break
        h.close_connection = True

    def reset(self, o: dict[str, Any]) -> None:
        h = self.h
        if o.get("after_headers"):
            h.send_response(200)
            h.send_header("Content-Type", RSS_TYPE)
            h.send_header("Content-Length", "100000")
            h.end_headers()
            h.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
            h.wfile.flush()
        # Linger 0 makes close() send RST instead of FIN. detach() is needed because the
        # handler's rfile/wfile hold references that would otherwise keep the fd open.
        sock = h.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.owner._connections_discard(sock)
        os.close(sock.detach())
        h.close_connection = True

    def oversized(self, o: dict[str, Any]) -> None:
        size = int(o.get("size", 11 * MiB))
        chunked = bool(o.get("chunked", False))
        h = self.h
        h.send_response(200)
        h.send_header("Content-Type", RSS_TYPE)
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(size))
        h.end_headers()
        if self.head:
            return
        block = (b"<item><title>padding</title></item>\n" * 2000)[: 64 * 1024]
        left = size
        while left > 0:
            piece = block[: min(left, len(block))]
            if chunked:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                h.wfile.write(piece)
            left -= len(piece)
        if chunked:
            h.wfile.write(b"0\r\n\r\n")


def _reason(code: int) -> str:
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


class FeedServer:
    """A local HTTP/1.1 server serving feeds put() into it, with fault injection."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[str, _Resource] = {}
        self._requests: list[Recorded] = []
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections: set[socket.socket] = set()
        self._connections_opened = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self)
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FeedServer:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in delay/trickle modes
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:  # idle keep-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- content -----------------------------------------------------------------------------

    def url(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    def put(
        self,
        path: str,
        body: bytes,
        content_type: str = RSS_TYPE,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve `body` at `path` (and clear any fault there). Strong ETag from the body,
        Last-Modified = now; `headers` are added to every 200/304 and may override both."""
        extra = dict(headers or {})
        etag: str | None = _strong_etag(body)
        with self._lock:
            previous = self._resources.get(path)
        # HTTP dates have 1 s resolution: a changed body put within the same second as the
        # last one still gets a later Last-Modified, so If-Modified-Since cannot hide it.
        now = float(int(time.time()))
        if previous is not None and previous.present and previous.body != body:
            now = max(now, previous.modified + 1)
        last_modified: str | None = email.utils.formatdate(now, usegmt=True)
        for key in list(extra):
            if key.lower() == "etag":
                etag = extra.pop(key) or None
            elif key.lower() == "last-modified":
                last_modified = extra.pop(key) or None
        with self._lock:
            self._resources[path] = _Resource(
                body=body,
                content_type=content_type,
                headers=extra,
                etag=etag,
                last_modified=last_modified,
                modified=now,
                present=True,
            )

    def put_file(self, path: str, file: Path, content_type: str = RSS_TYPE) -> None:
        self.put(path, Path(file).read_bytes(), content_type)

    def fault(self, path: str, mode: str, **options: Any) -> None:
        """Make `path` misbehave until put() or clear_fault() (so put() first when the mode
        serves the put() body). Modes and their options:

        status          code=500, reason=None (standard phrase), headers={}, body=...,
                        retry_after=None (seconds int/str, or an aware datetime -> HTTP-date)
        slow_first_byte seconds=1.0, then serves the put() body normally
        delay           seconds=1.0, same as slow_first_byte (meant for concurrency checks)
        trickle         chunk=b"<", interval=0.2, seconds=600 (announces a 10 MiB body)
        reset           after_headers=False: TCP RST (SO_LINGER 0) right after the request,
                        or after the headers and a little of the body
        redirect        location="/" (a path is made absolute), code=302
        redirect_loop   code=302: each hop goes to path?hop=N+1, forever
        redirect_file   location="file:///etc/passwd", code=302
        gzip_bomb       size=200 MiB inflated (Content-Encoding: gzip), content_type=RSS
        oversized       size=11 MiB, chunked=False (Content-Length) — streamed, never in memory
        html_page       href="/feed.xml": an HTML page with <link rel="alternate" ...>
        content_type    value="text/plain; charset=iso-8859-1": the put() body, wrong type
        invalid_utf8    count=3: the put() body with `count` letters replaced by 0xFF
        """
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; known: {sorted(FAULT_MODES)}")
        if mode == "gzip_bomb":
            gzip_bomb(int(options.get("size", 200 * MiB)))  # build now, outside any timing
        with self._lock:
            res = self._resources.setdefault(path, _Resource())
            res.fault = mode
            res.options = dict(options)

    def clear_fault(self, path: str) -> None:
        with self._lock:
            res = self._resources.get(path)
            if res is not None:
                res.fault = None
                res.options = {}

    # -- observation -------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> list[Recorded]:
        """Requests whose target is `path`, or whose target without its query is `path`."""
        return [r for r in self.requests if r.path == path or r.path.split("?", 1)[0] == path]

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (fewer than requests means keep-alive worked)."""
        with self._lock:
            return self._connections_opened

    def reset_stats(self) -> None:
        """Forget recorded requests, the in-flight high-water mark and the connection count."""
        with self._lock:
            self._requests.clear()
            self._max_in_flight = self._in_flight
            self._connections_opened = 0

    # -- internals used by the handler -------------------------------------------------------

    def _lookup(self, target: str) -> _Resource:
        with self._lock:
            res = self._resources.get(target) or self._resources.get(urlsplit(target).path)
            if res is None:
                return _Resource()
            # A copy, so a concurrent put() cannot change a response half-way.
            return _Resource(**{**res.__dict__, "options": dict(res.options)})

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self._requests.append(rec)

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _connections_add(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            self._connections_opened += 1

    def _connections_discard(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
