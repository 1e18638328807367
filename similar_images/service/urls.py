"""Fetch an image URL without letting a client reach the server's own network (SSRF).

Every hop is checked before any connection: only ``http``/``https``, no user:password,
the host is resolved and *every* address it resolves to must be public (not private,
loopback, link-local, multicast, unspecified or reserved; IPv4, IPv6 and IPv4-mapped
or -embedded IPv6 alike). The connection then goes to the address that was checked, so
a second DNS answer cannot swap it (DNS rebinding). Redirects are followed by hand, at
most ``max_redirects``, each checked again. Every read has a timeout, the whole fetch a
deadline, and the body a byte cap.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from similar_images.errors import ImageError

log = logging.getLogger(__name__)

SCHEMES = {"http": 80, "https": 443}
REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may do."""

    allow_private: bool = False
    timeout: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 3


def refused_reason(address: str) -> str | None:
    """Why ``address`` (an IP literal) may not be fetched from; None if it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    candidates = []
    if ip.version == 6:  # the IPv4 address inside an IPv6 one is checked first, and named
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        candidates += [e for e in embedded if e is not None]
        if ip.ipv4_mapped is None and int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    candidates.append(ip)
    for candidate in candidates:
        for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
            if getattr(candidate, f"is_{kind}"):
                return f"{kind.replace('_', '-')} address {candidate}"
        if not candidate.is_global:
            return f"non-public address {candidate}"
    return None


def resolve_checked(host: str, port: int, *, allow_private: bool) -> str:
    """Resolve ``host`` and check every address; return the one to connect to.

    Raises:
        ImageError: "refused url" if any address is refused, or the host does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise ImageError(f"cannot resolve host {host!r} ({exc})", "refused url") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise ImageError(f"host {host!r} has no address", "refused url")
    if not allow_private:
        for address in addresses:
            reason = refused_reason(address)
            if reason:
                raise ImageError(f"refused URL: host {host!r} resolves to a {reason}", "refused url")
    return addresses[0]


def split_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path_and_query)`` of an acceptable URL.

    Raises:
        ImageError: "refused url" for another scheme, credentials, or no host.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ImageError(f"refused URL: malformed ({exc})", "refused url") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ImageError("refused URL: only http and https are allowed", "refused url")
    if parts.username is not None or parts.password is not None:
        raise ImageError("refused URL: user names and passwords in URLs are not allowed", "refused url")
    if not parts.hostname:
        raise ImageError("refused URL: no host", "refused url")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or SCHEMES[scheme], path


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """Download ``url`` under ``policy``.

    Raises:
        ImageError: "refused url", "http error", "timeout" or "too large".
    """
    deadline = time.monotonic() + policy.timeout * (policy.max_redirects + 2)
    current = url
    for hop in range(policy.max_redirects + 1):
        status, location, body = _fetch_one(current, policy, deadline)
        if status in REDIRECTS:
            if not location:
                raise ImageError(f"HTTP {status} redirect without a Location", "http error")
            current = urljoin(current, location)
            log.debug("redirect %d to %s", hop + 1, current)
            continue
        if status != 200:
            raise ImageError(f"the URL answered HTTP {status}", "http error")
        return body
    raise ImageError(f"refused URL: more than {policy.max_redirects} redirects", "refused url")


def _fetch_one(url: str, policy: FetchPolicy, deadline: float) -> tuple[int, str | None, bytes]:
    scheme, host, port, path = split_url(url)
    address = resolve_checked(host, port, allow_private=policy.allow_private)
    connection = open_connection(scheme, host, address, port, policy.timeout)
    try:
        host_header = host if port == SCHEMES[scheme] else f"{host}:{port}"
        connection.request("GET", path, headers={"Host": host_header, "User-Agent": "similar-images",
                                                 "Accept": "image/*"})
        response = connection.getresponse()
        if response.status in REDIRECTS:
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            return response.status, None, b""
        return 200, None, _read_capped(response, policy.max_bytes, deadline)
    except TimeoutError:
        raise ImageError(f"timed out after {policy.timeout:g} s", "timeout") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ImageError(f"download failed ({type(exc).__name__}: {exc})", "http error") from None
    finally:
        connection.close()


def open_connection(scheme: str, host: str, address: str, port: int, timeout: float) -> http.client.HTTPConnection:
    """An HTTP(S) connection to the checked ``address``, speaking to ``host`` (SNI, certificate)."""
    if scheme == "https":
        return _PinnedHTTPSConnection(host, address, port, timeout)
    return _PinnedHTTPConnection(host, address, port, timeout)


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def _read_capped(response, max_bytes: int, deadline: float) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise ImageError(f"too large ({int(length)} bytes, limit {max_bytes})", "too large")
    chunks, total = [], 0
    while chunk := response.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise ImageError(f"too large (more than {max_bytes} bytes)", "too large")
        if time.monotonic() > deadline:
            raise ImageError("timed out: the download took too long", "timeout")
        chunks.append(chunk)
    return b"".join(chunks)
