"""A TCP server on 127.0.0.1 that misbehaves on purpose, one behaviour per path.

Raw sockets, not http.server: the point is to send a response's bytes as slowly, or as
endlessly, as an attacker would.

* ``/drip-headers``: the status line and headers, one byte every ``drip_s``;
* ``/drip-body``: honest headers (Content-Length 100000), then the body one byte every ``drip_s``;
* ``/stall``: reads the request, then sends nothing;
* ``/endless``: headers without a length, then 1 KB every 10 ms, forever;
* ``/endless-fast``: headers without a length, then 64 KB blocks as fast as the client reads;
* ``/slow-redirect/N``: waits ``drip_s``, then redirects to ``/slow-redirect/N+1``;
* ``/ok.png``: a small PNG, at once;
* any path in ``routes``: those raw response bytes, at once (redirect tests).

With ``tls`` (a server-side SSLContext) it speaks HTTPS. Its threads are named
``hostile-...`` (thread-count tests leave them out), and all of them end when the
server is closed.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading

from PIL import Image

DRIP_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def redirect(location: str | None, status: int = 302) -> bytes:
    """A raw redirect response (no Location header when ``location`` is None)."""
    where = f"Location: {location}\r\n" if location is not None else ""
    return f"HTTP/1.1 {status} Found\r\n{where}Content-Length: 0\r\n\r\n".encode()


class HostileServer:
    """``with HostileServer(drip_s=1.0) as server: server.url("/drip-headers")``."""

    def __init__(self, drip_s: float = 1.0, routes: dict[str, bytes] | None = None, tls: ssl.SSLContext | None = None):
        self.drip_s, self.routes, self.tls = drip_s, dict(routes or {}), tls
        self.closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.served: list[str] = []  # request paths, in order
        self._accepter = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HostileServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closed.set()
        self.listener.close()
        self._accepter.join(timeout=5)

    def hostile_threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("hostile-")]

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="hostile-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                if self.tls is not None:
                    conn.settimeout(10)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                path = self._read_request(conn)
                self.served.append(path)
                self._answer(conn, path)
            except OSError:
                pass  # the client gave up: that is the point

    def _read_request(self, conn: socket.socket) -> str:
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                raise ConnectionResetError
            data += chunk
        return data.split(b" ", 2)[1].decode()

    def _answer(self, conn: socket.socket, path: str) -> None:
        if path in self.routes:
            conn.sendall(self.routes[path])
        elif path == "/ok.png":
            body = png()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        elif path == "/drip-headers":
            self._drip(conn, DRIP_HEADERS + b"x" * 100)
        elif path == "/drip-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            self._drip(conn, b"x" * 100000)
        elif path == "/stall":
            self.closed.wait()
        elif path.startswith("/endless"):
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            fast = path == "/endless-fast"
            block = b"x" * (65536 if fast else 1024)
            while not self.closed.is_set():
                conn.sendall(block)
                if not fast:
                    self.closed.wait(0.01)
        elif path.startswith("/slow-redirect/"):
            if self.closed.wait(self.drip_s):
                return
            conn.sendall(redirect(f"/slow-redirect/{int(path.rsplit('/', 1)[1]) + 1}"))
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            if self.closed.wait(self.drip_s):
                return
