"""Fetching feeds over HTTP: the only module doing HTTP (I/O).

`Fetcher.fetch_all` fetches many feeds concurrently with aiohttp on its own event loop and
returns one `FetchResult` per request, in order. Every per-feed problem (HTTP error, timeout,
refused redirect, oversized body, network failure) is a result with a readable `error`, never
an exception. Conditional GET (ETag / Last-Modified sent back exactly), manual redirects with
an http/https check at every hop, a size cap enforced while inflating, per-host and global
concurrency bounds on one keep-alive connection pool. Server hints (Retry-After,
Cache-Control, Expires) are returned in `headers` and interpreted by the decide step.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
# A redirect body is read (to keep the connection reusable) only up to this size.
MAX_REDIRECT_BODY = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class FetchLimits:
    user_agent: str
    timeout: float = 60.0  # total per fetch (all redirect hops and the body), seconds
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # between reads: a trickling server is cut off by `timeout`
    max_body: int = 10 * 1024 * 1024  # bytes after decompression, enforced while streaming
    max_redirects: int = 10
    per_host: int = 2
    concurrency: int = 32  # global bound


@dataclass(frozen=True, kw_only=True)
class FetchRequest:
    feed: str  # feed name, echoed back
    url: str
    etag: str | None = None  # sent back exactly as received, as If-None-Match
    last_modified: str | None = None  # sent back exactly, as If-Modified-Since


@dataclass(frozen=True, kw_only=True)
class FetchResult:
    feed: str
    url: str  # as requested
    final_url: str  # the last URL requested (after redirects)
    status: int | None  # final HTTP status; None when there was no response
    not_modified: bool  # 304
    body: bytes | None  # set for 2xx only
    headers: Mapping[str, str]  # final response headers, lower-case keys
    redirects: tuple[tuple[int, str], ...]  # each hop: (status code, absolute Location)
    error: str | None  # a readable sentence when the fetch failed; None on 2xx/304
    elapsed: float  # seconds


class _Failed(Exception):
    """A per-feed failure with its readable message (internal)."""


@dataclass
class _Progress:
    """What one fetch has seen so far, so that a failure still reports it."""

    url: URL
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    redirects: list[tuple[int, str]] = field(default_factory=list)
    started: float | None = None  # monotonic time the first hop got its slots


def _size(n: int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


def _seconds(s: float) -> str:
    return f"{s:g} s"


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = key.lower()
        out[k] = f"{out[k]}, {value}" if k in out else value
    return out


def _host_port(url: URL) -> str:
    return f"{url.host}:{url.port}" if url.port is not None else str(url.host)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Inflater:
    """Decodes a Content-Encoding incrementally, never producing more than `max_body` bytes:
    a gzip bomb is refused after inflating at most max_body + one chunk."""

    def __init__(self, encoding: str, max_body: int) -> None:
        self.max_body = max_body
        self.total = 0
        self.parts: list[bytes] = []
        encoding = encoding.strip().lower()
        self._deflate_raw_fallback = False
        if encoding in ("", "identity"):
            self._z: zlib._Decompress | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            # Servers send either zlib-wrapped or raw deflate; wbits 32+ auto-detects
            # gzip/zlib, and a raw stream is retried below.
            self._z = zlib.decompressobj(zlib.MAX_WBITS)
            self._deflate_raw_fallback = True
        else:
            raise _Failed(f"unsupported Content-Encoding {encoding!r}")
        self._started = False

    def feed(self, data: bytes) -> None:
        if self._z is None:
            self._add(data)
            return
        while data:
            try:
                out = self._z.decompress(data, CHUNK)
            except zlib.error as exc:
                if self._deflate_raw_fallback and not self._started:
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._deflate_raw_fallback = False
                    continue
                raise _Failed(f"the compressed response is corrupt ({exc})") from exc
            self._started = True
            self._add(out)
            data = self._z.unconsumed_tail
            if self._z.eof:  # trailing bytes after the stream end are ignored
                break

    @property
    def identity(self) -> bool:
        return self._z is None

    def finish(self) -> bytes:
        if self._z is not None and self._started and not self._z.eof:
            raise _Failed("the compressed response ended early")
        return b"".join(self.parts)

    def _add(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.max_body:
            raise _Failed(f"response larger than {_size(self.max_body)} (max_body)")
        if data:
            self.parts.append(data)


class Fetcher:
    """Fetches feeds concurrently within `FetchLimits`. Not reentrant: one fetch_all at a time."""

    def __init__(self, limits: FetchLimits) -> None:
        self.limits = limits
        # Reentrant: cancel() may run in a signal handler that interrupted fetch_all holding it.
        self._lock = threading.RLock()
        self._cancelled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[FetchResult]] = []

    def fetch_all(self, requests: Sequence[FetchRequest]) -> list[FetchResult]:
        """Fetch every request; results in request order. Runs its own event loop in the
        calling thread (which must not be running one). Never raises for a per-feed problem."""
        loop = asyncio.new_event_loop()
        with self._lock:
            self._loop = loop
        try:
            return loop.run_until_complete(self._run(list(requests)))
        finally:
            with self._lock:
                self._loop = None
                self._tasks = []
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def cancel(self) -> None:
        """Abandon in-flight fetches promptly; callable from any thread or a signal handler.
        Their results carry the error "cancelled". A cancelled Fetcher stays cancelled: a
        later fetch_all returns every request as cancelled at once (the daemon is stopping)."""
        with self._lock:
            self._cancelled = True
            loop = self._loop
            if loop is not None:
                loop.call_soon_threadsafe(self._cancel_tasks)

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def _run(self, requests: list[FetchRequest]) -> list[FetchResult]:
        limits = self.limits
        connector = aiohttp.TCPConnector(limit=limits.concurrency, limit_per_host=limits.per_host)
        timeout = aiohttp.ClientTimeout(
            total=limits.timeout,
            # sock_connect, not connect: `connect` would also count the wait for a pool slot.
            sock_connect=limits.connect_timeout,
            sock_read=limits.read_timeout,
        )
        async with aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # feeds get no cookies
            timeout=timeout,
            trust_env=True,  # HTTP(S)_PROXY / NO_PROXY
            auto_decompress=False,  # we inflate ourselves, bounded by max_body
            headers={
                "User-Agent": limits.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": "gzip, deflate",
            },
        ) as session:
            slots = asyncio.Semaphore(limits.concurrency)
            hosts: dict[str, asyncio.Semaphore] = {}
            self._tasks = [
                asyncio.create_task(self._fetch_one(session, slots, hosts, r)) for r in requests
            ]
            if self._cancelled:  # cancel() came before the tasks existed
                self._cancel_tasks()
            if self._tasks:
                await asyncio.wait(self._tasks)
            results: list[FetchResult] = []
            for req, task in zip(requests, self._tasks, strict=True):
                if task.cancelled():
                    results.append(_cancelled(req))
                else:
                    results.append(task.result())
            return results

    async def _fetch_one(
        self,
        session: aiohttp.ClientSession,
        slots: asyncio.Semaphore,
        hosts: dict[str, asyncio.Semaphore],
        req: FetchRequest,
    ) -> FetchResult:
        progress = _Progress(url=URL())
        body: bytes | None = None
        error: str | None = None
        try:
            body = await self._follow(session, slots, hosts, req, progress)
        except _Failed as exc:
            error = str(exc)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            error = self._describe(exc, progress.url)
        except Exception as exc:  # noqa: BLE001 - one feed's surprise must not stop the others
            log.warning("feed %s: unexpected error while fetching: %r", req.feed, exc)
            error = f"unexpected error: {type(exc).__name__}: {exc}"
        status = progress.status
        started = progress.started
        return FetchResult(
            feed=req.feed,
            url=req.url,
            final_url=str(progress.url) if progress.url.is_absolute() else req.url,
            status=status,
            not_modified=status == 304 and error is None,
            body=body if error is None else None,
            headers=progress.headers,
            redirects=tuple(progress.redirects),
            error=error,
            elapsed=0.0 if started is None else time.monotonic() - started,
        )

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        slots: asyncio.Semaphore,
        hosts: dict[str, asyncio.Semaphore],
        req: FetchRequest,
        progress: _Progress,
    ) -> bytes | None:
        """Request, following redirects by hand; returns the body of a 2xx, None for a 304."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        url = _checked_url(req.url)
        progress.url = url
        headers: dict[str, str] = {}
        if req.etag is not None:
            headers["If-None-Match"] = req.etag
        if req.last_modified is not None:
            headers["If-Modified-Since"] = req.last_modified
        deadline: float | None = None
        while True:
            host = (url.host or "").lower()
            gate = hosts.setdefault(host, asyncio.Semaphore(limits.per_host))
            # Our own bounds (the connector's are a backstop). The host slot is taken before
            # a global one, so feeds queueing for one busy host do not starve other hosts;
            # both are held per hop, never across hops, so redirects cannot deadlock.
            async with gate, slots:
                if deadline is None:
                    # The total timeout counts from the first hop holding its slots, so a
                    # long queue does not time feeds out before they are even requested.
                    deadline = loop.time() + limits.timeout
                    progress.started = time.monotonic()
                async with (
                    asyncio.timeout_at(deadline),
                    session.get(url, headers=headers, allow_redirects=False) as resp,
                ):
                    progress.status = resp.status
                    progress.headers = _lower_headers(resp.headers)
                    location = resp.headers.get("Location")
                    if resp.status in REDIRECT_CODES and location is not None:
                        await _drain(resp)
                        target = _resolve(url, location)
                    elif resp.status == 304:
                        return None
                    elif 200 <= resp.status < 300:
                        return await self._read_body(resp)
                    else:
                        reason = resp.reason or ""
                        missing = resp.status in REDIRECT_CODES
                        detail = " without a Location header" if missing else ""
                        raise _Failed(f"HTTP {resp.status} {reason}".rstrip() + detail)
            progress.redirects.append((resp.status, str(target)))
            if target.scheme not in ("http", "https"):
                raise _Failed(f"redirect to a non-http(s) URL refused ({target})")
            if len(progress.redirects) > limits.max_redirects:
                raise _Failed(f"more than {limits.max_redirects} redirects (max_redirects)")
            url = target
            progress.url = url

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        max_body = self.limits.max_body
        encoding = resp.headers.get("Content-Encoding", "")
        inflater = _Inflater(encoding, max_body)
        # An uncompressed body that announces its excess is refused before reading it.
        length = resp.content_length
        if inflater.identity and length is not None and length > max_body:
            raise _Failed(f"response larger than {_size(max_body)} (max_body)")
        async for chunk in resp.content.iter_chunked(CHUNK):
            inflater.feed(chunk)
        return inflater.finish()

    def _describe(self, exc: BaseException, url: URL) -> str:
        """A readable sentence for a network-level failure."""
        limits = self.limits
        where = _host_port(url) if url.is_absolute() else str(url)
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"could not connect to {where} within {_seconds(limits.connect_timeout)}"
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return f"no data from {where} for {_seconds(limits.read_timeout)} (read_timeout)"
        if isinstance(exc, TimeoutError):
            return f"timed out after {_seconds(limits.timeout)}"
        if isinstance(exc, aiohttp.ClientConnectorDNSError):
            return f"could not resolve host {url.host}"
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            return f"TLS certificate of {url.host} not accepted: {exc.certificate_error}"
        if isinstance(exc, aiohttp.ClientSSLError):
            return f"TLS handshake with {where} failed: {exc}"
        if isinstance(exc, aiohttp.ClientConnectorError):
            if exc.os_error.errno == errno.ECONNREFUSED:
                return f"connection refused by {where}"
            reason = exc.os_error.strerror or str(exc.os_error)
            return f"could not connect to {where}: {reason}"
        # aiohttp names a reset during the body only in the payload error's message.
        if _caused_by(exc, ConnectionResetError) or "ConnectionResetError" in str(exc):
            return "connection reset by peer"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return f"{where} closed the connection without a complete response"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return f"the response from {where} was cut short"
        if isinstance(exc, aiohttp.ClientResponseError):
            return f"invalid HTTP response from {where}: {exc.message}"
        if isinstance(exc, aiohttp.InvalidURL | ValueError):
            return f"invalid URL {str(exc) or url}"
        return f"network error: {exc or type(exc).__name__}"


def _checked_url(url: str) -> URL:
    try:
        parsed = URL(url)
    except ValueError as exc:
        raise _Failed(f"invalid URL {url!r}") from exc
    if parsed.scheme not in ("http", "https"):
        raise _Failed(f"not an http(s) URL: {url}")
    if not parsed.host:
        raise _Failed(f"no host in URL {url}")
    return parsed.with_fragment(None)


def _resolve(base: URL, location: str) -> URL:
    try:
        return base.join(URL(location)).with_fragment(None)
    except ValueError as exc:
        raise _Failed(f"invalid redirect Location {location!r}") from exc


async def _drain(resp: aiohttp.ClientResponse) -> None:
    # Reading a small redirect body lets the connection go back to the keep-alive pool.
    read = 0
    async for chunk in resp.content.iter_chunked(CHUNK):
        read += len(chunk)
        if read > MAX_REDIRECT_BODY:
            resp.close()
            return


def _cancelled(req: FetchRequest) -> FetchResult:
    return FetchResult(
        feed=req.feed,
        url=req.url,
        final_url=req.url,
        status=None,
        not_modified=False,
        body=None,
        headers={},
        redirects=(),
        error="cancelled",
        elapsed=0.0,
    )
