"""``similar-images compact`` and ``migrate``: the full writes of a growing database."""

from __future__ import annotations

import click

from similar_images.cli import setup_logging
from similar_images.db.database import COCO_VECTORS

VECTORS = click.option("--vectors", default=COCO_VECTORS, show_default=True, type=click.Path(dir_okay=False),
                       help="Vectors file of the database (image or text).")
INDEX = click.option("--index", default=None, type=click.Path(dir_okay=False),
                     help="Its Faiss index.  [default: the one beside the vectors, if any]")


def _index_for(vectors, index):
    from similar_images.search import find_default_index

    return index if index is not None else find_default_index(vectors)


@click.command(name="compact")
@VECTORS
@INDEX
@click.option("--store", default=None, type=click.Choice(["float32", "float16"]),
              help="Rewrite the rows as float32 or float16 (half the disk and the bytes a re-ranking reads).  "
                   "[default: the database's store]")
@click.option("--retrain", is_flag=True,
              help="Then train the index again for the collection as it is now (its lists from today's size, "
                   "nprobe and pool measured again): after it has grown past what it was trained for.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def compact(vectors, index, store, retrain, verbose):
    """Fold the images added and removed since the last full write into a new generation.

    Adds write small segment files and removes write tombstones, so each costs what it
    changes; compaction rewrites the vectors file and the index once for all of them
    (no retraining) and numbers the items 0..n-1 again. Writes run it by themselves when
    added rows pass 10% of the collection or deleted rows 20%. Readers keep the old files
    until they close.
    """
    setup_logging(verbose)
    from similar_images.db.compaction import compact as run_compaction
    from similar_images.db.database import Database
    from similar_images.errors import SimilarImagesError

    try:
        before = Database.open(vectors, None, trust=True)
        dropped, added = len(before.deleted), before.id_count - len(before.base_rows)
        index = _index_for(vectors, index)
        if retrain and index is None:
            raise click.UsageError("--retrain needs an index (--index, or one beside the vectors)")
        manifest = run_compaction(vectors, index, store=store)
        click.echo(f"compacted {vectors}: {manifest['count']} items ({added} added rows folded in, "
                   f"{dropped} removed rows dropped; {manifest.get('store', 'float32')} store)")
        if retrain:
            from similar_images.db.build import build_summary
            from similar_images.db.build import retrain as run_retrain

            click.echo(f"training the index {index} again ...", err=True)
            click.echo(build_summary(run_retrain(vectors, index, show_progress=False), index))
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command(name="migrate")
@VECTORS
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def migrate(vectors, verbose):
    """Convert a database written by an earlier version (names in the manifest) to the
    catalog format (V.catalog.sqlite), so adds and removes cost what they change.

    The vectors and index files are kept as they are; the first add or remove does the
    same by itself.
    """
    setup_logging(verbose)
    from similar_images.db.compaction import migrate as run_migration
    from similar_images.errors import SimilarImagesError

    try:
        done = run_migration(vectors)
    except SimilarImagesError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"migrated {vectors} to the catalog format" if done else f"{vectors} is already in the catalog format")
