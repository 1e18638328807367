"""Start a local Ray, or connect to a running cluster, for the length of one job."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator

from similar_images.errors import SimilarImagesError

logger = logging.getLogger(__name__)

# Ray's own start-up waits, made explicit and generous: on a loaded machine (load average 10
# on 2 cores) the defaults (30 s for the GCS port and an agent's registration, 60 s for a
# worker's) run out and the start fails with "The current node timed out during startup".
# Ray's processes read these from the environment they start with, so they are set only
# while a local Ray starts. Two waits cannot be set (Ray 2.60): the driver's 30 s for its node
# and the raylet's 15 s for its agents' port files; a start that misses them is retried once.
# What makes the agents that slow is `import ray` itself where jsonschema finds the optional
# rfc3987-syntax (Jupyter pulls it in): 3.4 s of CPU instead of 0.8 s (docs/scale.md).
STARTUP_ENV = {"RAY_gcs_server_port_wait_time_s": "120", "RAY_agent_register_timeout_ms": "120000",
               "RAY_worker_register_timeout_seconds": "180"}
START_ATTEMPTS = 2  # one retry


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[dict]:
    """Make sure Ray is up while the block runs; yield the cluster's resources.

    Args:
        address: ``None`` starts a Ray inside this process's machine (stopped at the
            end); ``"auto"`` joins the cluster started on this machine by ``ray start``;
            ``"HOST:PORT"`` (or ``ray://HOST:PORT``) joins that cluster. When Ray is
            already initialised (a notebook, a test), it is used as it is.
        num_cpus: CPUs of a local Ray (default: all cores); ignored when joining.

    Raises:
        SimilarImagesError: the cluster at ``address`` cannot be reached.
    """
    import ray

    started = False
    if not ray.is_initialized():
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                  "configure_logging": False}
        try:
            if address is None:
                with loopback_only():
                    start_with_retry(lambda: ray.init(address="local", num_cpus=num_cpus, **kwargs))
            elif is_loopback(address):  # a cluster on this machine: as loaded as we are
                with loopback_only():
                    start_with_retry(lambda: ray.init(address=address, **kwargs))
            else:
                ray.init(address=address, **kwargs)
        except Exception as exc:  # Ray raises a bare Exception when its node times out at start-up
            where = address or "a local Ray"
            raise SimilarImagesError(f"cannot start or reach Ray at {where} ({exc}); "
                                     "check --address (see docs/scale.md)") from None
        started = True
    try:
        resources = ray.cluster_resources()
        logger.info("Ray: %d node(s), %s CPUs, %s GPUs", len(ray.nodes()), resources.get("CPU", 0),
                    resources.get("GPU", 0))
        yield resources
    finally:
        if started:
            ray.shutdown()


def start_with_retry(start: Callable[[], object], attempts: int = START_ATTEMPTS):
    """``start()`` (a local ``ray.init``) with :data:`STARTUP_ENV`, once more if it fails.

    A start that timed out under load leaves a half-started Ray (its GCS, monitor and agents
    run on without their raylet): it is shut down and the processes it started are ended
    before the retry. The last failure is raised.
    """
    import ray

    for attempt in range(1, attempts + 1):
        before = _child_pids()
        try:
            with startup_env():
                return start()
        except Exception as exc:  # "The current node timed out during startup" is a bare Exception
            ray.shutdown()
            for pid in _child_pids() - before:  # this attempt's Ray processes, by id
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if attempt == attempts:
                raise
            logger.warning("Ray did not start (%s); trying once more", exc)
    return None


def _child_pids() -> set[int]:
    """This process's children (from /proc; where there is none, none are found or ended)."""
    me, found = str(os.getpid()), set()
    try:
        names = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return found
    for name in names:
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                if f.read().rsplit(")", 1)[1].split()[1] == me:  # "pid (comm) state ppid ..."
                    found.add(int(name))
        except (OSError, IndexError):
            continue
    return found


@contextlib.contextmanager
def startup_env() -> Iterator[None]:
    """:data:`STARTUP_ENV` in the environment while Ray's processes start (a value already set wins)."""
    added = {key: value for key, value in STARTUP_ENV.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def is_loopback(address: str) -> bool:
    """``127.0.0.1:PORT``, ``localhost:PORT``, ``[::1]:PORT`` (with or without ``ray://``)."""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While a local Ray starts, keep it on 127.0.0.1.

    Ray replaces 127.0.0.1 by the machine's outward address unless clusters are off
    (its ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` switch, read once at import); a Ray that
    only this machine uses needs no outward address.
    """
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


def quiet_data_context() -> None:
    """Ray Data's own bars off (the job shows one bar over images, with rate and ETA)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_operator_progress_bars = False
    ctx.verbose_stats_logs = False
