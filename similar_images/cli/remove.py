"""``similar-images remove``: take images out of the database."""

from __future__ import annotations

import click

from similar_images.cli import setup_logging
from similar_images.cli.options import database_options, open_from_options


@click.command(name="remove")
@click.argument("paths", nargs=-1, required=True)
@click.option("--missing-ok", is_flag=True, help="Ignore paths that are not in the database.")
@database_options("image")
def remove(paths, missing_ok, vectors, index, exact, image_dir, verbose):
    """Remove images, given by path or by name as in the manifest.

    Their vectors and index entries are deleted together, atomically; they never
    appear in results again. Other images keep their ids until the next `compact`. Unless --missing-ok,
    a path that is not in the database is an error and nothing is removed.
    """
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError

    try:
        db = open_from_options("image", vectors, index, exact, image_dir)
        removed = db.remove(list(paths), missing_ok=missing_ok)
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"removed {len(removed)} image(s); the database now holds {len(db)}")
