"""What the demo prints: the ranked table, whether it is right, and the next commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# `run` below is a similar_images.demo.run.DemoRun (not imported: run.py imports this module)

NO_CLOSE_MATCH_LINE = "No close match in this collection: even the first result ({score:.3f}) is unrelated."


def no_close_match(run: Any) -> bool:
    """Whether even the first result is \"unrelated\" for the model (docs/search.md)."""
    return bool(run.results) and run.results[0].verdict == "unrelated"


def format_results(run: Any) -> str:
    """The ranked results as a text table (score, what it means, image; ``*``: an edited
    copy of the query photo), with a one-line verdict for sample queries."""
    width = max([len(r.name) for r in run.results] + [5])
    said = max([len(r.verdict or "") for r in run.results] + [0])
    head = f"  {'verdict':<{said}}" if said else ""
    lines = [f"{'rank':>4}  {'score':>6}{head}  image"]
    for r in run.results:
        column = f"  {r.verdict or '':<{said}}" if said else ""
        lines.append((f"{r.rank:>4}  {r.score:>6.3f}{column}  {r.name:<{width}}" + ("  *" if r.marked else "")).rstrip())
    if run.query_photo is not None:
        lines.append("(*: an edited copy of the query photo)")
        lines.append(verdict(run))
    elif no_close_match(run):
        lines.append(NO_CLOSE_MATCH_LINE.format(score=run.results[0].score))
    return "\n".join(lines)


def verdict(run: Any) -> str:
    """Whether the images of the query photo rank above every other photo, said truly."""
    marked = [r.rank for r in run.results if r.marked]
    others = [r for r in run.results if not r.marked]
    name = f"'{run.query_photo}'"
    if not marked:
        return f"No image of {name} in the top {len(run.results)}: something is wrong."
    if others and min(r.rank for r in others) < max(marked):
        return f"Some other photos rank above images of {name}: something is wrong."
    best_other = f"; the best other photo scores {others[0].score:.3f}" if others else ""
    if len(marked) < run.copies and not others:
        return (f"All {len(run.results)} results are images of {name} (the database holds {run.copies}; "
                f"-k {run.copies + 1} shows them all and the best other photo).")
    return f"All {len(marked)} images of {name} in the database rank first (1-{max(marked)}){best_other}."


def next_steps(run: Any, *, serve_available: bool | None = None) -> str:
    """The exact commands to go on with the database this run made."""
    import importlib.util
    import shlex

    vectors = shlex.quote(shown_path(run.vectors)) if run.vectors else "VECTORS"
    if serve_available is None:
        serve_available = importlib.util.find_spec("similar_images.service") is not None
    lines = [
        "Next steps:",
        f"  * Look at the results: {shown_path(run.html)}  (picture: {shown_path(run.png)})",
        "  * Search the sample database with any photo:",
        f"      similar-images search PHOTO.jpg --vectors {vectors}",
    ]
    if run.query_photo is not None:
        lines.append("    or see the whole demo for your photo: similar-images demo --query PHOTO.jpg")
    lines += [
        "  * Browse it in the notebook: jupyter notebook \"Similar image.ipynb\"  (as root: add --allow-root)",
    ]
    if serve_available:
        lines.append(f"  * Serve it as a web page: make serve  (or: similar-images serve --vectors {vectors})")
    lines += [
        "  * Index your own photos: similar-images extract -l LIST.txt -d FOLDER --model efficientnet-lite0 "
        "-o mine.npy, then similar-images build -i mine.npy  (docs/extraction.md)",
    ]
    return "\n".join(lines)


def shown_path(path) -> str:
    """A path as a user types it: relative to the current folder when inside it."""
    if path is None:
        return "?"
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
