"""The options that say which database a command works on: one set for images and texts.

``@database_options("image")`` gives ``--vectors`` (default: the COCO database),
``--index``, ``--exact``, ``--image-dir`` and ``-v``; ``@database_options("text")`` the same
without ``--image-dir`` (default: the tweets database). :func:`open_from_options` opens what
they name, with the same index rule for both: the index beside the vectors when there is
one, else exact search (said on stderr).
"""

from __future__ import annotations

from pathlib import Path

import click

from similar_images.db.database import COCO_INDEX, COCO_VECTORS, default_index_path, find_databases
from similar_images.text.database import DEFAULT_VECTORS as TEXT_VECTORS

DEFAULT_VECTORS = {"image": COCO_VECTORS, "text": TEXT_VECTORS}
KINDS = tuple(DEFAULT_VECTORS)


def database_options(kind: str = "image", *, device: bool = False):
    """The database options of ``kind`` (``"image"`` or ``"text"``) as one decorator; with
    ``device``, also ``--device`` (commands that run the image model on queries or new images)."""
    if kind not in KINDS:
        raise ValueError(f"unknown database kind {kind!r}; choose from: {', '.join(KINDS)}")
    default = DEFAULT_VECTORS[kind]
    options = [
        click.option("--vectors", default=default, show_default=True, type=click.Path(dir_okay=False),
                     help=f"Vectors file of {'an image' if kind == 'image' else 'a text'} database "
                          "(with its .manifest.json)."),
        click.option("--index", "index", default=None, type=click.Path(dir_okay=False),
                     help=f"Faiss index file.  [default: the one beside the vectors ({default_index_path(default)} "
                          "for the default vectors) if it exists, else exact search]"),
        click.option("--exact", is_flag=True, help="Ignore the index: exact search over the vectors."),
    ]
    if kind == "image":
        options.append(click.option("--image-dir", default=None, type=click.Path(file_okay=False),
                                    help="Folder the image names are relative to.  [default: the manifest's]"))
    if kind == "image" and device:
        options.append(click.option("--device", default="auto", show_default=True,
                                    type=click.Choice(["auto", "cpu", "cuda"]),
                                    help="Where the query model runs; auto: cuda when torch sees a GPU."))
    options.append(click.option("--trust", is_flag=True, expose_value=False, callback=_remember_trust,
                                help="Skip the content checksums on open (sizes, headers and fields are "
                                     "still checked); see `similar-images verify`."))
    options.append(click.option("-v", "--verbose", is_flag=True, help="Log details."))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _remember_trust(ctx: click.Context, _param, value: bool) -> None:
    ctx.meta["similar_images.trust"] = bool(value)


def trust_from_context() -> bool:
    """Whether the running command was given ``--trust``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get("similar_images.trust"))


def index_from_options(vectors: str, index: str | None, exact: bool) -> str | None:
    """The index file the options select: given, else the one beside the vectors, else None (exact)."""
    if exact:
        if index:
            raise click.UsageError("--exact and --index exclude each other")
        return None
    if index:
        return index
    default = default_index_path(vectors)
    if default.exists():
        return str(default)
    if Path(vectors).exists():
        click.echo(f"note: no index {default}; searching the vectors exactly", err=True)
    return None


def open_from_options(kind: str, vectors: str, index: str | None, exact: bool, image_dir: str | None = None,
                      device: str = "auto"):
    """Open the database the options name: a ``SimilarImages`` or a ``TextDatabase``.

    ``device`` is where an image database's query model runs (``--device``).

    A missing vectors file is an error that lists the databases of this kind it can find
    (beside the vectors, here, and the demo's), each with the option that selects it.
    """
    if kind == "image" and vectors == DEFAULT_VECTORS["image"] and (here := only_database_here()) is not None:
        click.echo(f"note: no COCO database here; using {here.name}, the only image database in this folder", err=True)
        vectors = str(here)
    if not Path(vectors).exists():
        raise click.ClickException(f"{vectors}: no such database ({database_hint(kind, vectors)})")
    index_path = index_from_options(vectors, index, exact)
    if kind == "text":
        from similar_images.text.database import TextDatabase

        return TextDatabase.open(vectors, index_path, trust=trust_from_context())
    from similar_images.search import SimilarImages

    db = SimilarImages.open(vectors=vectors, index=index_path, image_dir=image_dir, trust=trust_from_context(),
                            device=device)
    if device != "auto":  # a clear error now, not when the first query loads the model
        from similar_images.models.devices import resolve_device

        resolve_device(device, runtime=db.model.get("runtime") or "native")
    return db


def only_database_here() -> Path | None:
    """The one image database in the current folder when the default (COCO) one is not here:
    what commands open without ``--vectors`` after ``similar-images sync my_photos/``."""
    if Path(DEFAULT_VECTORS["image"]).exists():
        return None
    found = find_databases([Path(".")], name_rule="path")
    return found[0][0] if len(found) == 1 else None


__all__ = ["COCO_INDEX", "COCO_VECTORS", "DEFAULT_VECTORS", "database_options", "open_from_options"]


def database_hint(kind: str, vectors: str | Path) -> str:
    """What to use instead of a missing database: the ones found, or how to make one."""
    from similar_images.demo.run import DEFAULT_WORKDIR, shown_path

    folders = [Path(vectors).parent, Path("."), Path(DEFAULT_WORKDIR)]
    found = find_databases(folders, name_rule="text" if kind == "text" else "path")
    if not found:
        make = ("`similar-images text build CSV`" if kind == "text" else
                "`similar-images demo` for a sample, or `similar-images extract` for your own images")
        return f"no other database found; make one with {make}"
    shown = [f"--vectors {shown_path(path)} ({manifest['items']} {'texts' if kind == 'text' else 'images'}, "
             f"{manifest['model'].get('name', '?')})" for path, manifest in found[:3]]
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return "found: " + "; ".join(shown) + more
