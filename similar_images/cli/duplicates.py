"""``similar-images duplicates``: near-duplicate and byte-identical images of a collection."""

from __future__ import annotations

import click

from similar_images.cli import setup_logging
from similar_images.cli.options import database_options, open_from_options


def _threshold(ctx, param, value):
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a cosine (e.g. 0.9) nor 'auto'") from None
    if not -1.0 <= number <= 1.0:
        raise click.BadParameter(f"a cosine lies in [-1, 1], got {number}")
    return number


@click.command(name="duplicates")
@click.option("--threshold", default="auto", show_default=True, callback=_threshold,
              help="Lowest cosine of a near-duplicate, or 'auto': the model's calibrated default.")
@click.option("-k", default=10, show_default=True, type=click.IntRange(min=1), help="Neighbours examined per image.")
@click.option("--rule", type=click.Choice(["centre", "components"]), default="centre", show_default=True,
              help="Grouping: every member near the group's centre, or connected components (chains).")
@click.option("--no-hash", is_flag=True, help="Do not compare files by content (SHA-256).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the groups as JSON to this file ('-': stdout).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write one row per member (group, member, score to the keeper, keep/remove) ('-': stdout).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write an HTML report with thumbnails of each group.")
@click.option("--remove-list", "remove_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the paths that could be deleted, one a line (never the keepers).")
@click.option("--max-groups", type=click.IntRange(min=0), default=50, show_default=True,
              help="Groups shown in the table on stdout (the files get all of them).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@database_options("image")
def duplicates(threshold, k, rule, no_hash, json_path, csv_path, html_path, remove_path, max_groups, progress,
               vectors, index, exact, image_dir, verbose):
    """Group the near-duplicate and byte-identical images of a database, and suggest one
    keeper per group (highest resolution, then largest file, then shortest name).

    Nothing is deleted or moved: --remove-list writes the paths a user may delete.
    """
    setup_logging(verbose)
    from similar_images.duplicates import find_duplicates, html, report
    from similar_images.errors import SimilarImagesError

    try:
        db = open_from_options("image", vectors, index, exact, image_dir)
        found = find_duplicates(db, threshold=threshold, k=k, rule=rule, hash_files=not no_hash,
                                show_progress=progress)
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    outputs = [(json_path, report.json_text), (csv_path, report.csv_text), (remove_path, report.remove_list_text)]
    to_stdout = any(path == "-" for path, _ in outputs)
    if not to_stdout:
        click.echo(report.table(found, max_groups=max_groups), nl=False)
    for path, text in outputs:
        if path == "-":
            click.echo(text(found), nl=False)
        elif path:
            report.write_text(path, text(found))
            click.echo(f"wrote {path}", err=True)
    if html_path:
        html.write_duplicates_html(html_path, found)
        click.echo(f"wrote {html_path}", err=True)
