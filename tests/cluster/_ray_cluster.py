"""Ray for the cluster tests, on 127.0.0.1 only (tests may not talk to other addresses).

* :func:`local_ray`: a Ray inside the test process with 2 CPUs.
* :func:`two_nodes`: ``ray start --head`` plus a second ``ray start --address``, one CPU
  each, in their own process groups under a short temporary folder; stopped by the
  fixture (SIGTERM, then SIGKILL, of those process groups only).

Both start under load as well as on a quiet machine (issue 26: at a load average of 10 on
2 cores Ray's node timed out during start-up): Ray's processes start without the optional
rfc3987-syntax that made each of them spend 2.3 s of CPU importing jsonschema (``_no_rfc3987``
first on their path), Ray's start-up waits are set explicitly and generously
(``session.STARTUP_ENV``), every wait here has a generous limit, and a start that fails
anyway is cleaned up and tried once more (``session.start_with_retry``).

Ray rewrites 127.0.0.1 into the machine's outward address, except when its cluster
switch is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), which ``ray start --address``
refuses. The head runs with the switch off; the second node runs ``ray start`` through a
wrapper that keeps the loopback address as given.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest
from _waiting import patience

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
NO_RFC3987 = HERE / "_no_rfc3987"  # Ray's processes start 4x faster without it: see its docstring
PYTHONPATH = os.pathsep.join(map(str, (NO_RFC3987, ROOT, TESTS, HERE)))
KEEP_LOOPBACK = ("import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
                 "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())")


def _env(**extra) -> dict:
    from similar_images.cluster.session import STARTUP_ENV

    return {**STARTUP_ENV, **os.environ, "PYTHONPATH": PYTHONPATH, "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled", **extra}


@pytest.fixture(scope="session")
def ray_auth_off():
    """Token authentication off for every Ray of the session (loopback only): Ray reads the
    mode once a process, so a local Ray and the 2-node cluster must agree on it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    yield
    patch.undo()


# Ray 2.60 waits fixed times at start-up (its raylet 15 s for the dashboard agent, the driver 30 s
# for the node) that no setting raises. With 8 busy processes beside the suite (load 20-25 on
# 2 cores, 2026-12-03) a start missed them 2 times in 2 in one run and made it in the next:
# each try is a fresh chance, so a loaded machine costs minutes here, not a red suite.
START_ATTEMPTS = 5


@pytest.fixture(scope="module")
def local_ray(ray_auth_off):
    """``ray.init(num_cpus=2)`` on 127.0.0.1; the tests' helper modules importable by workers."""
    import ray

    from similar_images.cluster.session import loopback_only, start_with_retry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", PYTHONPATH)
        with loopback_only():
            start_with_retry(lambda: ray.init(address="local", num_cpus=2, include_dashboard=False,
                                              log_to_driver=False), attempts=START_ATTEMPTS)
    yield ray
    ray.shutdown()


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


START_TIMEOUT_S = patience(180)  # each wait of a cluster start; a loaded machine is slow, not broken


def _wait_for(predicate, what: str, timeout: float = START_TIMEOUT_S, processes=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        dead = [p.args[1:3] for p in processes if p.poll() is not None]
        if dead:  # ray start gave up (its own start-up timeout): no use waiting longer
            raise TimeoutError(f"Ray did not {what}: {dead} exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray did not {what} within {timeout} s")
        time.sleep(0.5)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:  # each ray start --block leads its own process group
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + patience(20)
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)  # what is left of that group
        except ProcessLookupError:
            pass


def _kill_leftovers(temp: Path) -> None:
    """Ray workers start their own process groups: kill the ones of this cluster (their
    command line names its temporary folder) by process id."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if str(temp).encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _start_two_nodes(temp: Path, processes: list[subprocess.Popen]) -> str:
    """Start the head and the second node under ``temp``; their address once both are alive."""
    import ray

    from similar_images.cluster.session import loopback_only

    ray_cli = str(Path(sys.executable).with_name("ray"))
    log = temp / "ray-start.log"
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    processes.append(_start([ray_cli, "start", "--head", "--port=0", "--node-ip-address=127.0.0.1",
                             "--include-dashboard=false", f"--temp-dir={temp}", *common],
                            _env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"), log))
    current = temp / "ray_current_cluster"
    _wait_for(lambda: current.is_file() and current.read_text().strip(), "write its address", processes=processes)
    address = current.read_text().strip()
    assert address.startswith("127.0.0.1:"), address
    processes.append(_start([sys.executable, "-c", KEEP_LOOPBACK, "start", f"--address={address}", *common],
                            _env(), log))
    with loopback_only():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        _wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, "start its second node",
                  processes=processes)
    finally:
        ray.shutdown()
    return address


@pytest.fixture(scope="module")
def two_nodes(ray_auth_off):
    """A 2-node Ray cluster on 127.0.0.1 (one CPU a node); yields its address. A start that
    fails (under load) is stopped, cleaned up and tried again in a fresh folder."""
    for attempt in range(1, START_ATTEMPTS + 1):
        temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
        processes: list[subprocess.Popen] = []
        try:
            try:
                address = _start_two_nodes(temp, processes)
            except Exception as exc:  # Ray's start-up timeout is a bare Exception
                if attempt == START_ATTEMPTS:
                    raise
                warnings.warn(f"the 2-node Ray cluster did not start ({exc}); trying again", stacklevel=1)
                continue
            yield address
            return
        finally:
            _stop(processes)
            _kill_leftovers(temp)
            shutil.rmtree(temp, ignore_errors=True)  # its logs and sockets: nothing left in /tmp
