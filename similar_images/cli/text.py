"""``similar-images text``: the same search for short texts.

Subcommands: ``download`` (a Sentiment140 sample), ``build`` (CSV -> vectors + index),
``search`` (free text or a corpus id), ``add`` and ``remove`` (change a database
atomically), ``sync`` (follow a CSV file). Default files, in the current folder: ``tweets.csv`` ->
``tweets.csv.saved_predictions.npy`` (+ manifest) and ``tweets.csv.faiss.index``.
They parse arguments and call :mod:`similar_images.text.corpus` and
:mod:`similar_images.text.database`.
"""

from __future__ import annotations

from pathlib import Path

import click

from similar_images.cli import setup_logging
from similar_images.cli.options import database_options, open_from_options
from similar_images.db.index import INDEX_TYPES


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


@click.group()
def text() -> None:
    """Search short texts (tweets) by meaning."""
    import os

    # transformers shows a bar while it loads weights; ours (texts/s) is the one that matters.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@text.command()
@click.option("--url", default=None, help="Where to download trainingandtestdata.zip (default: the authors' site).")
@click.option("--zip", "zip_path", default="trainingandtestdata.zip", show_default=True,
              type=click.Path(dir_okay=False), help="The archive; downloaded only if missing.")
@click.option("-o", "--output", default="tweets.csv", show_default=True, type=click.Path(dir_okay=False),
              help="CSV to write (columns polarity,id,date,query,user,text).")
@click.option("-n", "--count", "n", default=20_000, show_default=True, type=click.IntRange(min=1),
              help="How many tweets to sample.")
@click.option("--seed", default=0, show_default=True, help="Random seed of the sample.")
@click.option("--force", is_flag=True, help="Replace an existing output CSV.")
@click.option("-v", "--verbose", is_flag=True)
def download(url, zip_path, output, n, seed, force, verbose) -> None:
    """Download Sentiment140 and write a reproducible random sample of N tweets."""
    from similar_images.text import corpus

    setup_logging(verbose)
    try:
        summary = corpus.prepare_tweets(
            output, url=url or corpus.SENTIMENT140_URL, zip_path=zip_path, n=n, seed=seed, force=force
        )
    except (corpus.SimilarImagesError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(f"wrote {summary['count']} of {summary['total']} tweets (seed {seed}) to {summary['output']}")


@text.command()
@click.argument("csv_file", metavar="CSV", type=click.Path(dir_okay=False))
@click.option("--column", default="text", show_default=True, help="The CSV column holding the texts.")
@click.option("-o", "--output", "vectors", default=None, type=click.Path(dir_okay=False),
              help="Vectors file to write.  [default: CSV.saved_predictions.npy]")
@click.option("--index", default=None, type=click.Path(dir_okay=False),
              help="Index file to write.  [default: CSV.faiss.index; with -o V.npy: V.faiss.index]")
@click.option("--model", default="all-MiniLM-L6-v2", show_default=True,
              help="A sentence-transformers model name or folder (the default loads offline).")
@click.option("--index-type", default="hnsw", show_default=True, type=click.Choice(list(INDEX_TYPES)),
              help="Faiss index (hnsw: exact top 10 on 20,000 tweets, < 1 ms; ivfpq/pca-ivfpq fall back "
                   "to flat below 1000 texts).")
@click.option("-b", "--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Texts per model call.")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda).")
@click.option("--force", is_flag=True, help="Replace an existing database.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def build(csv_file, column, vectors, index, model, index_type, batch_size, device, force, no_progress, verbose):
    """Encode the texts of a CSV column and build their search index.

    Prints the encoding throughput (texts/s). An interrupted build continues where it
    stopped when run again.
    """
    setup_logging(verbose)
    from similar_images.db.build import build_summary
    from similar_images.errors import SimilarImagesError
    from similar_images.text.build import build_text_database

    try:
        result = build_text_database(
            csv_file, column=column, vectors=vectors, index=index, model=model, index_type=index_type,
            batch_size=batch_size, device=device, force=force, show_progress=not no_progress,
        )
    except (SimilarImagesError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    if result["reused_vectors"]:
        click.echo(f"vectors: {result['vectors']} (already built from this CSV; reused)")
    else:
        resumed = f", {result['resumed']} resumed from an interrupted build" if result["resumed"] else ""
        click.echo(f"encoded {result['encoded']} texts in {result['encode_seconds']:.1f} s: "
                   f"{result['texts_per_s']:.1f} texts/s ({model}, batch {batch_size}, {device}{resumed})")
        click.echo(f"vectors: {result['vectors']} ({result['count']} texts; {result['skipped']} rows skipped)")
    for row in result["skipped_rows"]:
        if row["reason"].startswith("malformed"):
            click.echo(f"warning: {csv_file} {row['path']} skipped: {row['reason']}", err=True)
    click.echo(build_summary(result["index_manifest"], result["index"]))
    click.echo(f"search it: {search_command(result['vectors'], result['index'])}")


def search_command(vectors: str, index: str) -> str:
    """The exact ``text search`` command for a database just built (options only where needed)."""
    import shlex

    from similar_images.cli.options import DEFAULT_VECTORS
    from similar_images.db.database import default_index_path

    words = ["similar-images", "text", "search", "'a sentence to look for'"]
    if Path(vectors).resolve() != Path(DEFAULT_VECTORS["text"]).resolve():
        words += ["--vectors", shlex.quote(str(vectors))]
    if Path(index).resolve() != default_index_path(vectors).resolve():
        words += ["--index", shlex.quote(str(index))]
    return " ".join(words)


@text.command()
@click.argument("queries", nargs=-1)
@click.option("--id", "ids", multiple=True, type=click.IntRange(min=0),
              help="Also search from the text with this id (no model run); repeatable.")
@click.option("-k", default=8, show_default=True, type=click.IntRange(min=1), help="Results per query.")
@click.option("--json", "as_json", is_flag=True,
              help='Print JSON: [{"query", "results": [{"id", "text", "score"}]}].')
@database_options("text")
def search(queries, ids, k, as_json, vectors, index, exact, verbose):
    """Print the K texts most similar to each QUERY (a sentence; quote it).

    Scores are cosine similarities (1.0: the same text).
    """
    import json

    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError

    if not queries and not ids:
        raise click.UsageError('give at least one QUERY (quoted: "a sentence") or --id')
    try:
        db = open_from_options("text", vectors, index, exact)
        asked = list(queries) + list(ids)
        labels = list(queries) + [f"#{i}: {db.text(i)}" for i in ids]
        results = db.search(asked, k=k)
    except (SimilarImagesError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps([{"query": label, "results": [r._asdict() for r in rows]}
                               for label, rows in zip(labels, results)], indent=1, ensure_ascii=False))
        return
    for label, rows in zip(labels, results):
        click.echo(f"query: {label}")
        for rank, r in enumerate(rows, start=1):
            click.echo(f"{rank:3d}. {r.score:.3f}  [{r.id}] {r.text}")


def _texts_from(texts, csv_file, column) -> list[str]:
    from similar_images.text.texts import read_texts

    out = list(texts)
    if csv_file:
        out += read_texts(csv_file, column)[0]
    if not out:
        raise click.UsageError("give TEXTs or --csv")
    return out


@text.command()
@click.argument("texts", nargs=-1)
@click.option("--csv", "csv_file", default=None, type=click.Path(dir_okay=False),
              help="Also add the texts of this CSV file.")
@click.option("--column", default="text", show_default=True, help="The column of --csv.")
@database_options("text")
def add(texts, csv_file, column, vectors, index, exact, verbose):
    """Add TEXTs (and/or a CSV column) to a text database, atomically, without a rebuild.

    Texts already in the database are not added twice.
    """
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError

    try:
        new = _texts_from(texts, csv_file, column)
        db = open_from_options("text", vectors, index, exact)
        result = db.add(new)
    except (SimilarImagesError, ValueError) as exc:
        raise _fail(exc) from None
    click.echo(f"added {len(result.added)} text(s); {len(result.already_present)} already present; "
               f"the database now holds {len(db)}")


@text.command()
@click.argument("texts", nargs=-1, required=True)
@database_options("text")
def remove(texts, vectors, index, exact, verbose):
    """Remove TEXTs (exactly as stored) from a text database, atomically."""
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError

    try:
        db = open_from_options("text", vectors, index, exact)
        removed = db.remove(list(texts))
    except (SimilarImagesError, ValueError) as exc:
        raise _fail(exc) from None
    click.echo(f"removed {len(removed)} text(s); the database now holds {len(db)}")


@text.command(name="sync")
@click.argument("csv_file", metavar="CSV", type=click.Path(dir_okay=False))
@click.option("--column", default="text", show_default=True, help="The CSV column holding the texts.")
@click.option("--vectors", default=None, type=click.Path(dir_okay=False),
              help="The text database.  [default: CSV.saved_predictions.npy]")
@click.option("-b", "--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Texts per model call.")
@click.option("--device", default="cpu", show_default=True, help="torch device (cpu, cuda).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def sync(csv_file, column, vectors, batch_size, device, no_progress, verbose):
    """Make a text database follow a CSV file: new texts are added, texts no longer in it removed.

    The first sync builds the database (and its index). A changed row is its old text
    removed and its new text added; texts are stored once, as in `build`.
    """
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError
    from similar_images.text.follow import sync_texts

    try:
        report = sync_texts(csv_file, column=column, vectors=vectors, batch_size=batch_size, device=device,
                            show_progress=not no_progress)
    except (SimilarImagesError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(report.summary())
