"""Ray for the cluster tests, on 127.0.0.1 only (tests may not talk to other addresses).

* :func:`local_ray`: a Ray inside the test process with 2 CPUs.
* :func:`two_nodes`: ``ray start --head`` plus a second ``ray start --address``, one CPU
  each, in their own process groups under a short temporary folder; stopped by the
  fixture (SIGTERM, then SIGKILL, of those process groups only).

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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
PYTHONPATH = os.pathsep.join(map(str, (ROOT, TESTS, HERE)))
KEEP_LOOPBACK = ("import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
                 "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; sys.exit(main())")


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", **extra}
    return env


@pytest.fixture(scope="session")
def ray_auth_off():
    """Token authentication off for every Ray of the session (loopback only): Ray reads the
    mode once a process, so a local Ray and the 2-node cluster must agree on it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    yield
    patch.undo()


@pytest.fixture(scope="module")
def local_ray(ray_auth_off):
    """``ray.init(num_cpus=2)`` on 127.0.0.1; the tests' helper modules importable by workers."""
    import ray

    from similar_images.cluster.session import loopback_only

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", PYTHONPATH)
        with loopback_only():
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray did not {what} within {timeout} s")
        time.sleep(0.5)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:  # each ray start --block leads its own process group
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
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


@pytest.fixture(scope="module")
def two_nodes(ray_auth_off):
    """A 2-node Ray cluster on 127.0.0.1 (one CPU a node); yields its address."""
    import ray

    ray_cli = str(Path(sys.executable).with_name("ray"))
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    log = temp / "ray-start.log"
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    head = _start([ray_cli, "start", "--head", "--port=0", "--node-ip-address=127.0.0.1",
                   "--include-dashboard=false", f"--temp-dir={temp}", *common],
                  _env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0"), log)
    processes = [head]
    try:
        current = temp / "ray_current_cluster"
        _wait_for(lambda: current.is_file() and current.read_text().strip(), "write its address")
        address = current.read_text().strip()
        assert address.startswith("127.0.0.1:"), address
        processes.append(_start([sys.executable, "-c", KEEP_LOOPBACK, "start", f"--address={address}", *common],
                                _env(), log))
        from similar_images.cluster.session import loopback_only

        with loopback_only():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        try:
            _wait_for(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, "start its second node", 90)
        finally:
            ray.shutdown()
        yield address
    finally:
        _stop(processes)
        _kill_leftovers(temp)
        shutil.rmtree(temp, ignore_errors=True)  # its logs and sockets: nothing left in /tmp
