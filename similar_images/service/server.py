"""Run the service under uvicorn (stops cleanly on Ctrl-C and SIGTERM)."""

from __future__ import annotations

import ipaddress
import logging

from similar_images.search import SimilarImages
from similar_images.service.config import ServiceConfig
from similar_images.service.engine import Engine

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(db: SimilarImages, config: ServiceConfig, *, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "warning", watch=None, poll_s: float | None = None) -> None:
    """Open the service on ``host:port`` and serve until interrupted.

    The model is loaded and warmed before the port opens. uvicorn handles SIGINT and
    SIGTERM: it stops accepting, lets running requests finish, then returns. With
    ``watch`` (a folder), the database follows it while serving (``watching.py``).
    """
    import uvicorn

    from similar_images.service.app import create_app

    if not is_loopback(host) and not config.token:
        log.warning("serving on %s without --token: anyone who can reach this port can search", host)
    engine = Engine(db, config)
    engine.warm_up()
    app = create_app(engine, warm_up=False)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                           timeout_graceful_shutdown=10, server_header=False))
    watcher = None
    if watch is not None:
        from similar_images.service.watching import start_watching

        watcher = start_watching(engine, watch, poll_s=poll_s)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown; that is the normal stop
        log.info("stopped by Ctrl-C")
    finally:
        if watcher is not None:
            watcher.stop()
