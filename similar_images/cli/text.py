"""``similar-images text``: the same search for short texts.

Subcommands: ``download`` (a Sentiment140 sample), ``build`` (CSV -> vectors + index),
``search`` (free text or a corpus id) and ``add`` (more texts into a database).
They parse arguments and call :mod:`similar_images.corpus` and
:mod:`similar_images.text_search`.
"""

from __future__ import annotations

import click

from . import setup_logging

DEFAULT_VECTORS = "tweets.csv.saved_predictions.npy"
DEFAULT_INDEX = "tweets.faiss.index"


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)


@click.group()
def text() -> None:
    """Search short texts (tweets) by meaning."""


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
    from .. import corpus

    setup_logging(verbose)
    try:
        summary = corpus.prepare_tweets(
            output, url=url or corpus.SENTIMENT140_URL, zip_path=zip_path, n=n, seed=seed, force=force
        )
    except (corpus.SimilarImagesError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    click.echo(f"wrote {summary['count']} of {summary['total']} tweets (seed {seed}) to {summary['output']}")
