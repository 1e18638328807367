"""Which URLs a fetch may take, and which addresses it may connect to (SSRF checks).

A URL is checked before any lookup: only ``http``/``https``, no user name or password,
a host. The host is then resolved and *every* address it resolves to must be public
(not private, loopback, link-local, multicast, unspecified or reserved; IPv4, IPv6 and
IPv4-mapped or -embedded IPv6 alike) unless the policy allows private addresses.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from similar_images.errors import ImageError

SCHEMES = {"http": 80, "https": 443}


def split_url(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path_and_query)`` of an acceptable URL; no lookup, no connection.

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

    The lookup is the system resolver's (its own timeouts apply, not the fetch deadline:
    a blocking ``getaddrinfo`` cannot be interrupted).

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
