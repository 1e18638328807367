"""``similar-images verify``: a full check of a database, one verdict per file."""

from __future__ import annotations

from pathlib import Path

import click

from similar_images.cli import setup_logging
from similar_images.db.database import COCO_VECTORS, default_index_path


@click.command(name="verify")
@click.option("--vectors", default=COCO_VECTORS, show_default=True, type=click.Path(dir_okay=False),
              help="Vectors file of the database (with its .manifest.json).")
@click.option("--index", "index", default=None, type=click.Path(dir_okay=False),
              help="Index file.  [default: the one beside the vectors, if it exists]")
@click.option("--repair", is_flag=True, help="Rebuild a damaged or missing-manifest index from verified vectors.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def verify(vectors, index, repair, verbose):
    """Check every file of a database: checksums, finite values, fields, and that they belong together.

    Prints one line per file (ok or BAD, and why). Exit code 0 when all is well
    (after --repair, when every fault was repaired), 1 otherwise.
    """
    setup_logging(verbose)
    from similar_images.db import verify as checks

    if index is None and default_index_path(vectors).exists():
        index = str(default_index_path(vectors))
    verdicts = checks.verify_database(vectors, index)
    for verdict in verdicts:
        click.echo(verdict.line())
    bad = [v for v in verdicts if not v.ok]
    if bad and repair and index is not None:
        fixed = checks.repair(vectors, index, verdicts)
        for line in fixed:
            click.echo(line)
        if fixed:
            bad = [v for v in checks.verify_database(vectors, index) if not v.ok]
            for verdict in bad:
                click.echo(verdict.line())
    if bad:
        hint = " (--repair can fix the index)" if any(v.repairable for v in bad) and not repair else ""
        click.echo(f"error: {len(bad)} file(s) of {Path(vectors).name} failed the check{hint}", err=True)
        raise click.exceptions.Exit(1)
    click.echo(f"verified: {Path(vectors).name} and {'its index' if index else 'no index'} are intact")
