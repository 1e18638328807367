#!/usr/bin/env python3
"""How much each extra installs: the size on disk of a requirement set's dependency closure.

No download and no fresh venv: the closure of the extra's requirements is resolved from the
metadata of the packages installed in this environment (``make setup``'s .venv, every
extra installed at the pinned versions), and the sizes of their files (their RECORDs) are
added up. torch counts as the build installed here (the CPU build, about 0.7 GB); from PyPI
on Linux it is the CUDA build, several GB more (docs/install.md, "GPUs").

Usage::

    .venv/bin/python benchmarks/install_size.py [--extras core,demo,serve,all]
"""

from __future__ import annotations

import argparse
import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> set[str]:
    """Installed distributions needed by ``requirements`` (with their extras), recursively."""
    seen: set[str] = set()
    todo = [(Requirement(r), ()) for r in requirements]
    while todo:
        requirement, _ = todo.pop()
        name = canonical(requirement.name)
        if name == "similar-images":
            todo += [(Requirement(r), ()) for extra in requirement.extras for r in extra_requirements(extra)]
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = (name, tuple(sorted(requirement.extras)))
        if key in seen:
            continue
        seen.add(key)
        for text in dist.requires or []:
            inner = Requirement(text)
            if inner.marker is None or any(inner.marker.evaluate({"extra": e}) for e in requirement.extras or {""}):
                todo.append((inner, ()))
    return {name for name, _ in seen}


def extra_requirements(extra: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] if extra == "core" else project["optional-dependencies"][extra]


def size_of(name: str) -> int:
    dist = metadata.distribution(name)
    total = 0
    for file in dist.files or []:
        path = Path(dist.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", default="core,demo,serve,notebook,openvino,text,ray,vgg16,all")
    args = parser.parse_args()
    core = extra_requirements("core")
    print("| install | packages | size on disk |\n|---|---|---|")
    for extra in args.extras.split(","):
        names = closure(core if extra == "core" else core + extra_requirements(extra))
        sizes = sorted(((size_of(n), n) for n in names), reverse=True)
        total = sum(s for s, _ in sizes)
        top = ", ".join(f"{n} {s / 1e9:.2f}" for s, n in sizes[:3])
        label = "core" if extra == "core" else f"[{extra}]"
        print(f"| {label} | {len(names)} | {total / 1e9:.2f} GB (largest, GB: {top}) |")


if __name__ == "__main__":
    main()
