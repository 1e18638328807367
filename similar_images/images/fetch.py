"""Fetch an image URL under one deadline: connect, TLS, headers, body and every redirect.

One fetcher serves the CLI, the notebook and the service; only the policy differs (the
service refuses private addresses, see :mod:`.addresses`).

Why a deadline and not only a socket timeout: a timeout bounds each wait, so a server
that sends its headers one byte every 2 s never trips a 10 s read timeout. Here every
blocking call on the socket first asks the fetch's :class:`Deadline` how long it may
wait (the silence allowed, ``timeout``, cut to the time left) and sets the socket's
timeout to that; past the deadline the next call fails at once. :meth:`Deadline.cancel`
shuts the sockets down from another thread, so the service can end a fetch whose request
has timed out, and its thread with it.

Redirects are followed by hand, each hop checked again before any connection, and the
connection goes to the address that was checked (a second DNS answer cannot swap it).
"""

from __future__ import annotations

import functools
import http.client
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from similar_images.errors import ImageError
from similar_images.images.addresses import SCHEMES, resolve_checked, split_url

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # seconds: the longest silence from a server (connect, any one read)
DEFAULT_DEADLINE = 20.0  # seconds: the whole fetch, however the server drips it
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # size cap for URL downloads
REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024
_EARLY = 0.05  # s: a socket timeout this close to the deadline is the deadline's


@dataclass(frozen=True)
class FetchPolicy:
    """What one fetch may do.

    Attributes:
        allow_private: also connect to private, loopback, link-local... addresses (the CLI
            and notebook of a local user; a service only with ``--allow-private-urls``).
        timeout: longest silence accepted from the server, in seconds.
        deadline: the whole fetch in seconds: every connect, TLS handshake, header, body
            byte and redirect.
        max_bytes: largest body accepted.
        max_redirects: redirects followed, each checked again.
    """

    allow_private: bool = False
    timeout: float = DEFAULT_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = 3


class DeadlinePassed(TimeoutError):
    """The fetch ran out of time (a TimeoutError, so http.client treats it as a socket timeout)."""


class Deadline:
    """The time one fetch has left; :meth:`cancel` ends it early from any thread."""

    def __init__(self, seconds: float, timeout: float):
        self.seconds, self.timeout = float(seconds), float(timeout)
        self.end = time.monotonic() + self.seconds
        self.cancelled = False
        self.lock = threading.Lock()  # cancel() vs closing: never shut down a reused descriptor
        self._sockets: list[socket.socket] = []

    def wait(self) -> float:
        """Seconds the next blocking call may wait: ``timeout``, cut to the time left.

        Raises:
            DeadlinePassed: no time is left, or the fetch was cancelled.
        """
        if self.cancelled:
            raise DeadlinePassed("cancelled")
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlinePassed(f"not downloaded within the {self.seconds:g} s deadline")
        return min(self.timeout, left)

    def passed(self) -> bool:
        return self.cancelled or time.monotonic() >= self.end - _EARLY

    def watch(self, sock: socket.socket) -> None:
        """Make :meth:`cancel` shut ``sock`` down (at once if the fetch is already cancelled)."""
        with self.lock:
            self._sockets.append(sock)
            if self.cancelled:
                _shutdown(sock)

    def cancel(self) -> None:
        """End the fetch: blocked reads return at once, and the next wait raises."""
        with self.lock:
            self.cancelled = True
            for sock in self._sockets:
                _shutdown(sock)

    def error(self, exc: BaseException) -> ImageError:
        """The one-line error for a timeout ``exc`` met during this fetch."""
        if self.cancelled:
            return ImageError("cancelled: the request ended before the download", "timeout")
        if isinstance(exc, DeadlinePassed) or self.passed():
            return ImageError(f"not downloaded within the {self.seconds:g} s deadline", "timeout")
        return ImageError(f"timed out: no answer from the server for {self.timeout:g} s", "timeout")


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed already, or never connected


class _Timed:
    """Socket mixin: each blocking call waits at most what the deadline allows."""

    deadline: Deadline | None = None

    def _limit(self) -> None:
        if self.deadline is not None:
            self.settimeout(self.deadline.wait())

    def recv_into(self, *args, **kwargs):
        self._limit()
        return super().recv_into(*args, **kwargs)

    def recv(self, *args, **kwargs):
        self._limit()
        return super().recv(*args, **kwargs)

    def sendall(self, *args, **kwargs):
        self._limit()
        return super().sendall(*args, **kwargs)

    def _real_close(self, *args, **kwargs):  # where the descriptor is closed, for sockets and SSL alike
        if self.deadline is None:
            return super()._real_close(*args, **kwargs)
        with self.deadline.lock:
            return super()._real_close(*args, **kwargs)


class _TimedSocket(_Timed, socket.socket):
    pass


class _TimedSSLSocket(_Timed, ssl.SSLSocket):
    pass


@functools.cache
def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.sslsocket_class = _TimedSSLSocket
    return context


class _Connection(http.client.HTTPConnection):
    """HTTP(S) to the checked ``address``, speaking to ``host`` (SNI, certificate), under ``deadline``."""

    def __init__(self, scheme: str, host: str, address: str, port: int, deadline: Deadline):
        super().__init__(host, port)
        self.scheme, self.address, self.deadline = scheme, address, deadline

    def connect(self):
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = _TimedSocket(family, socket.SOCK_STREAM)
        sock.deadline = self.deadline
        self.deadline.watch(sock)
        try:
            sock.settimeout(self.deadline.wait())
            sock.connect((self.address, self.port))
            if self.scheme == "https":
                sock = _tls_context().wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
                sock.deadline = self.deadline
                self.deadline.watch(sock)
                sock.settimeout(self.deadline.wait())
                sock.do_handshake()
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def open_connection(scheme: str, host: str, address: str, port: int, deadline: Deadline) -> http.client.HTTPConnection:
    """An unopened HTTP(S) connection to the checked ``address`` (tests stand a local server in here)."""
    return _Connection(scheme, host, address, port, deadline)


def fetch(url: str, policy: FetchPolicy, deadline: Deadline | None = None) -> bytes:
    """Download ``url`` under ``policy``, all hops within one deadline.

    Args:
        url: an http(s) URL.
        policy: addresses, timeouts and caps.
        deadline: the fetch's clock, to cancel it from another thread; a new one by default.

    Raises:
        ImageError: "refused url", "http error", "timeout" or "too large"; the message does
            not repeat the URL (:func:`fetch_url` adds it).
    """
    deadline = deadline or Deadline(policy.deadline, policy.timeout)
    chain = [url]
    for _ in range(policy.max_redirects + 1):
        status, reason, location, body = _fetch_one(chain[-1], policy, deadline)
        if deadline.cancelled:  # a shut-down socket reads as an early end, not as data
            raise deadline.error(DeadlinePassed())
        if status == 200:
            return body
        if status not in REDIRECTS:
            raise ImageError(f"the server answered HTTP {status} {reason}".strip(), "http error")
        chain.append(_next_hop(chain, status, location))
        log.debug("redirect %d to %s", len(chain) - 1, chain[-1])
    raise ImageError(f"refused URL: more than {policy.max_redirects} redirects ({' -> '.join(chain)})",
                     "refused url")


def _next_hop(chain: list[str], status: int, location: str | None) -> str:
    """Where a redirect goes, or an error saying what is wrong with it."""
    if not location:
        raise ImageError(f"HTTP {status} redirect without a Location header", "http error")
    target = urljoin(chain[-1], location.strip())
    scheme = urlsplit(target).scheme.lower()
    if scheme not in SCHEMES:
        raise ImageError(f"refused URL: HTTP {status} redirect to a {scheme or 'relative'}: URL ({target[:200]}); "
                         "only http and https are allowed", "refused url")
    if target in chain:
        loop = chain[chain.index(target):] + [target]
        raise ImageError(f"redirect loop: {' -> '.join(loop)}", "http error")
    return target


def _fetch_one(url: str, policy: FetchPolicy, deadline: Deadline) -> tuple[int, str, str | None, bytes]:
    """``(status, reason, location, body)`` of one GET; the body only for a 200."""
    scheme, host, port, path = split_url(url)  # before any lookup: scheme, credentials, host
    try:
        deadline.wait()  # a redirect that came as the time ran out: the deadline's one line, not a raw error
    except DeadlinePassed as exc:
        raise deadline.error(exc) from None
    address = resolve_checked(host, port, allow_private=policy.allow_private)
    connection = open_connection(scheme, host, address, port, deadline)
    try:
        try:
            connection.connect()
        except TimeoutError as exc:
            raise deadline.error(exc) from None
        except OSError as exc:
            raise ImageError(f"cannot connect to {host} port {port} ({exc.strerror or exc})", "http error") from None
        host_header = host if port == SCHEMES[scheme] else f"{host}:{port}"
        connection.request("GET", path, headers={"Host": host_header, "User-Agent": "similar-images",
                                                 "Accept": "image/*"})
        response = connection.getresponse()
        if response.status != 200:
            return response.status, response.reason, response.getheader("Location"), b""
        return 200, response.reason, None, _read_capped(response, policy.max_bytes)
    except TimeoutError as exc:
        raise deadline.error(exc) from None
    except (OSError, http.client.HTTPException) as exc:
        if deadline.cancelled:
            raise deadline.error(exc) from None
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise ImageError(f"download failed ({type(exc).__name__}{': ' + detail if detail else ''})",
                         "http error") from None
    finally:
        connection.close()


def _read_capped(response: http.client.HTTPResponse, max_bytes: int) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ImageError(f"too large ({int(length)} bytes, limit {max_bytes})", "too large")
    chunks, total = [], 0
    while chunk := response.read(_CHUNK):  # each socket read inside waits at most what the deadline allows
        total += len(chunk)
        if total > max_bytes:
            raise ImageError(f"too large (more than {max_bytes} bytes)", "too large")
        chunks.append(chunk)
    return b"".join(chunks)


def fetch_url(url: str, *, timeout: float | None = None, max_bytes: int | None = None,
              deadline: float | None = None, max_redirects: int = 5) -> bytes:
    """Download ``url`` for a local user (CLI, notebook): any host, loopback and private included.

    ``timeout`` is the longest silence accepted, ``deadline`` the whole fetch (connect,
    headers, body, redirects), so a dripping server cannot hold a query. None: this
    module's ``DEFAULT_TIMEOUT``, ``DEFAULT_MAX_BYTES``, ``DEFAULT_DEADLINE``, read at call time.

    Raises:
        ImageError: "refused url", "http error", "timeout" or "too large", the message
            starting with the URL.
    """
    policy = FetchPolicy(allow_private=True, timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
                         deadline=DEFAULT_DEADLINE if deadline is None else deadline,
                         max_bytes=DEFAULT_MAX_BYTES if max_bytes is None else max_bytes, max_redirects=max_redirects)
    try:
        return fetch(url, policy)
    except ImageError as exc:
        raise ImageError(f"{url}: {exc}", exc.reason) from None
