"""``similar-images add``: put new images into an existing database (no rebuild)."""

from __future__ import annotations

import click

from similar_images.cli import setup_logging
from similar_images.cli.options import database_options, open_from_options


def skip_reason(item: dict) -> str:
    """``path: why`` for a skipped file, the path said once (messages often start with it)."""
    message = str(item.get("message") or item.get("reason"))
    path = str(item["path"])
    return message if message.startswith(path + ":") else f"{path}: {message}"


@click.command(name="add")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-b", "--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
              help="Images per model call.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@database_options("image", device=True)
def add(paths, batch_size, no_progress, vectors, index, exact, image_dir, device, verbose):
    """Add image files, or every image in the given folders, to the database.

    The new vectors are appended and encoded with the trained index (no retraining);
    the files change together atomically. Images already in the database are not
    added twice. Files that cannot be loaded are listed and skipped (exit code 1).
    """
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError

    try:
        db = open_from_options("image", vectors, index, exact, image_dir, device=device)
        report = db.add(list(paths), batch_size=batch_size, show_progress=not no_progress)
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {len(report.added)} image(s); {len(report.already_present)} already present; "
               f"{len(report.skipped)} skipped; the database now holds {len(db)}")
    for item in report.skipped:
        click.echo(f"skipped {skip_reason(item)}", err=True)
    if report.skipped:
        raise click.exceptions.Exit(1)
