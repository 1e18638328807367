"""``similar-images search``: the most similar images to one or more query images."""

from __future__ import annotations

import json
from pathlib import Path

import click

from similar_images.cli import setup_logging

DEFAULT_VECTORS = "ms_coco_file_list.txt.saved_predictions.npy"
DEFAULT_INDEX = "ms_coco_file_list.faiss.index"


def database_options(command):
    """The options that say which database a command works on (shared by search/add/remove)."""
    options = [
        click.option("--vectors", default=DEFAULT_VECTORS, show_default=True, type=click.Path(dir_okay=False),
                     help="Vectors file (with its .manifest.json)."),
        click.option("--index", "index", default=None, type=click.Path(dir_okay=False),
                     help=f"Faiss index file.  [default: {DEFAULT_INDEX} if it exists, else exact search]"),
        click.option("--exact", is_flag=True, help="Ignore the index: exact search over the vectors."),
        click.option("--image-dir", default=None, type=click.Path(file_okay=False),
                     help="Folder the image names are relative to.  [default: the manifest's]"),
        click.option("-v", "--verbose", is_flag=True, help="Log details."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def open_database(vectors: str, index: str | None, exact: bool, image_dir: str | None):
    """Open the database the options name; no --index and no default index file: exact search."""
    from similar_images.search import SimilarImages

    if exact:
        if index:
            raise click.UsageError("--exact and --index exclude each other")
        index_path = None
    elif index:
        index_path = index
    else:
        from similar_images.db.database import default_index_path
        from similar_images.search import find_default_index

        index_path = find_default_index(vectors)
        if index_path is None and Path(vectors).exists():
            click.echo(f"note: no index {default_index_path(vectors)}; searching the vectors exactly", err=True)
    return SimilarImages.open(vectors=vectors, index=index_path, image_dir=image_dir)


@click.command(name="search")
@click.argument("images", nargs=-1)
@click.option("--id", "ids", multiple=True, type=click.IntRange(min=0),
              help="Also search for the image with this id (no model run); repeatable.")
@click.option("-k", default=8, show_default=True, type=click.IntRange(min=1), help="Results per query.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON document: [{"query", "results": [{"id", "path", "file", "score"}]}].')
@click.option("--no-rerank", is_flag=True, help="Show the index's approximate scores (no exact re-ranking).")
@database_options
def search(images, ids, k, as_json, no_rerank, vectors, index, exact, image_dir, verbose):
    """Print the K images most similar to each IMAGE (file path or http(s) URL).

    The model loads once for all queries. Scores are cosine similarities (1.0: the
    same image). Exit code 1 if any query failed (the others are still answered).
    """
    setup_logging(verbose)
    from similar_images.errors import ImageError, SimilarImagesError

    if not images and not ids:
        raise click.UsageError("give at least one IMAGE or --id")
    try:
        db = open_database(vectors, index, exact, image_dir)
        queries, labels, failed = [], [], []
        for image in images:
            try:
                queries.append(db.load_query(image))  # decoded as extraction decodes
                labels.append(image)
            except ImageError as exc:
                failed.append({"query": image, "error": str(exc)})
        queries += [int(i) for i in ids]
        labels += [f"id:{i}" for i in ids]
        found = db.search(queries, k=k, rerank=not no_rerank) if queries else []
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    answers = [{"query": label, "results": [{"id": r.id, "path": r.path, "file": str(db.image_path(r)),
                                             "score": round(r.score, 6)} for r in hits]}
               for label, hits in zip(labels, found)]
    if as_json:
        click.echo(json.dumps(answers + failed, indent=1))
    else:
        for answer in answers:
            click.echo(f"{answer['query']}:")
            for rank, hit in enumerate(answer["results"], 1):
                click.echo(f"  {rank:2d}. {hit['score']:.4f}  {hit['file']}")
    for item in failed:
        click.echo(f"error: {item['error']}", err=True)
    if failed:
        raise click.exceptions.Exit(1)
