"""``similar-images search``: the most similar images to query images, ids or words (CLIP)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from similar_images.cli import setup_logging
from similar_images.cli.options import database_options, open_from_options


@click.command(name="search")
@click.argument("images", nargs=-1)
@click.option("--id", "ids", multiple=True, type=click.IntRange(min=0),
              help="Also search for the image with this id (no model run); repeatable.")
@click.option("--text", "texts", multiple=True,
              help="Also search for the images that match these words (CLIP databases); repeatable.")
@click.option("-k", default=8, show_default=True, type=click.IntRange(min=1), help="Results per query.")
@click.option("--json", "as_json", is_flag=True,
              help='Print one JSON document: [{"query", "no_close_match", "results": [{"id", "path", "file", "score", '
                   '"verdict"}]}].')
@click.option("--no-rerank", is_flag=True, help="Show the index's approximate scores (no exact re-ranking).")
@database_options("image", device=True)
def search(images, ids, texts, k, as_json, no_rerank, vectors, index, exact, image_dir, device, verbose):
    """Print the K images most similar to each IMAGE (file path or http(s) URL), id or --text.

    The model loads once for all queries. Scores are cosine similarities (1.0: the
    same image), each with a verdict (same photo, similar, unrelated) where the model's
    scores were measured (docs/search.md). Exit code 1 if any query failed (the others
    are still answered).
    """
    setup_logging(verbose)
    from similar_images.errors import ImageError, SimilarImagesError

    if not images and not ids and not texts:
        raise click.UsageError("give at least one IMAGE, --id or --text")
    # A missing file is said before the model loads (seconds): only real files and URLs go on.
    failed = [{"query": image, "error": f"{image}: not found"} for image in images
              if "://" not in image and not Path(image).is_file()]
    images = [image for image in images if image not in {item["query"] for item in failed}]
    if failed and not images and not ids and not texts:
        if as_json:
            click.echo(json.dumps(failed, indent=1))
        for item in failed:
            click.echo(f"error: {item['error']}", err=True)
        raise click.exceptions.Exit(1)
    try:
        db = open_from_options("image", vectors, index, exact, image_dir, device=device)
        by_text = db.search_text(list(texts), k=k, rerank=not no_rerank) if texts else []  # refused first
        queries, labels = [], []
        for image in images:
            try:
                queries.append(db.load_query(image))  # decoded as extraction decodes
                labels.append(image)
            except ImageError as exc:
                failed.append({"query": image, "error": str(exc)})
        queries += [int(i) for i in ids]
        labels += [f"id:{i}" for i in ids]
        found = (db.search(queries, k=k, rerank=not no_rerank) if queries else []) + by_text
        labels += [f"text:{t}" for t in texts]
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    from similar_images.models.score_bands import NO_CLOSE_MATCH, bands_for, no_close_match, verdict

    bands = bands_for(db.model)  # None for a model whose scores were never measured: no verdicts
    # scores rounded to 6 places: float32 cosines print as 1.0000001192092896 otherwise
    answers = [{"query": label, "no_close_match": no_close_match([r.score for r in hits], bands),
                "results": [{"id": r.id, "path": r.path, "file": str(db.image_path(r)), "score": round(float(r.score), 6),
                             "verdict": verdict(round(float(r.score), 6), bands)} for r in hits]}
               for label, hits in zip(labels, found)]
    if as_json:
        click.echo(json.dumps(answers + failed, indent=1))
    else:
        width = max((len(hit["verdict"] or "") for a in answers for hit in a["results"]), default=0)
        for answer in answers:
            click.echo(f"{answer['query']}:")
            if answer["no_close_match"]:
                click.echo(f"  ({NO_CLOSE_MATCH}: even the first result is unrelated)")
            for rank, hit in enumerate(answer["results"], 1):
                label = f"  {hit['verdict'] or '':<{width}}" if width else ""
                click.echo(f"  {rank:2d}. {hit['score']:.4f}{label}  {hit['file']}")
    for item in failed:
        click.echo(f"error: {item['error']}", err=True)
    if failed:
        raise click.exceptions.Exit(1)
