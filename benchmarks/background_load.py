#!/usr/bin/env python3
"""A background load that stops by itself: N busy processes for a bounded time.

The test suite must pass on a loaded machine (issue 26: a load average of 10 on 2 cores),
so this reproduces that load without installing anything (``stress-ng --cpu 8 --timeout
30m`` does the same where it is installed). Each worker spins on arithmetic; the parent
stops them after ``--seconds`` (and on Ctrl-C or SIGTERM), and every worker also checks
the clock itself, so none outlives the run even if the parent is killed with SIGKILL.

Usage::

    .venv/bin/python benchmarks/background_load.py --workers 8 --seconds 1800 &
    make test                                  # the suite under a load average near 10 on 2 cores
    .venv/bin/python benchmarks/background_load.py --workers 8 --seconds 60 --report   # check the load it makes

It prints the load average when it starts and when it stops.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import time


def busy(until: float) -> None:
    """Spin until the monotonic clock passes ``until`` (checked every few milliseconds)."""
    x = 0
    while time.monotonic() < until:
        for i in range(20_000):
            x = (x * 31 + i) % 1_000_003


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def run(workers: int, seconds: float, report: bool = False) -> int:
    until = time.monotonic() + seconds
    print(f"background load: {workers} busy processes for {seconds:.0f} s; load average {load_average()}",
          flush=True)
    context = multiprocessing.get_context("spawn")  # no fork of a parent's threads
    procs = [context.Process(target=busy, args=(until,), daemon=True) for _ in range(workers)]
    for proc in procs:
        proc.start()

    def stop(*_):
        for proc in procs:
            proc.terminate()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while time.monotonic() < until and any(proc.is_alive() for proc in procs):
            time.sleep(min(5.0, max(0.1, until - time.monotonic())))
            if report:
                print(f"load average {load_average()}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.join(5)
    print(f"background load stopped; load average {load_average()}", flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8, help="busy processes (default 8)")
    parser.add_argument("--seconds", type=float, default=1800, help="stop after this long (default 30 min)")
    parser.add_argument("--report", action="store_true", help="print the load average every 5 s")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.seconds <= 0:
        parser.error("--workers must be >= 1 and --seconds > 0")
    return run(args.workers, args.seconds, args.report)


if __name__ == "__main__":
    sys.exit(main())
