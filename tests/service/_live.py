"""A real uvicorn server on 127.0.0.1 (random free port) in a thread of the test process."""

from __future__ import annotations

import contextlib
import threading
import time

from _index_data import free_port
from _waiting import patience


@contextlib.contextmanager
def live_server(app):
    """Serve ``app``; yields its base URL (``http://127.0.0.1:PORT``); stops it after."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + patience(120)  # start-up under load (issue 26): slower, not broken
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=patience(15))
