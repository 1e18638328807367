"""``similar-images demo``: the one-command tour (``make demo``)."""

from __future__ import annotations

import click

from similar_images.cli import setup_logging
from similar_images.features import MODELS


@click.command(name="demo")
@click.option("--workdir", default="demo_output", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the sample photos, the database and the results page (reused).")
@click.option("--query", default=None, type=click.Path(dir_okay=False),
              help="Search this image instead of the held-out sample query.")
@click.option("--photo", default="chelsea", show_default=True,
              help="Sample photo whose held-out edit is the query (see --list-photos).")
@click.option("--photos", default=None,
              help="Only these sample photos in the database, comma-separated (default: all).")
@click.option("-k", default=10, show_default=True, type=click.IntRange(min=1), help="Results to show.")
@click.option("--model", default="efficientnet-lite0", show_default=True, type=click.Choice(sorted(MODELS)),
              help="Feature model (EfficientNet-Lite0 is pretrained and works offline).")
@click.option("--weights", default=None, help="Model weights (default: the model's own).")
@click.option("--rebuild", is_flag=True, help="Build the sample database again.")
@click.option("--list-photos", is_flag=True, help="List the sample photos and exit.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def demo(workdir, query, photo, photos, k, model, weights, rebuild, list_photos, no_progress, verbose):
    """Build a sample database from offline photos, search it, show the results.

    The first run writes real photos shipped by scikit-image, scikit-learn and
    matplotlib plus edited copies (crops, flips, resizes, recompressions, rotations, tone)
    into WORKDIR, extracts their vectors and indexes them; later runs reuse them. The
    query is a held-out edit of one photo: its edited copies should rank first.
    Results are printed and written to WORKDIR/results.html and results.png
    (query-results.html and .png for --query, so the sample's stay).
    """
    setup_logging(verbose)
    from similar_images.demo import sample_photos

    if list_photos:
        click.echo("\n".join(sample_photos.PHOTOS))
        return
    chosen = None if photos is None else [name.strip() for name in photos.split(",") if name.strip()]
    for name, hint in [(photo, "--photo")] + [(name, "--photos") for name in chosen or []]:
        if name not in sample_photos.PHOTOS:
            raise click.BadParameter(f"{name!r}: choose from {', '.join(sample_photos.PHOTOS)}", param_hint=hint)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from similar_images.cli.extract import model_options
    from similar_images.demo.run import format_results, next_steps, run_demo
    from similar_images.errors import SimilarImagesError

    click.echo(f"similar-images demo: sample database in {workdir}/ ({model})", err=True)
    try:
        with logging_redirect_tqdm():
            run = run_demo(workdir, query=query, photo=photo, photos=chosen, k=k, model=model,
                           model_options=model_options(model, weights=weights), rebuild=rebuild,
                           show_progress=not no_progress)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; run the demo again to continue where it stopped") from None
    except (SimilarImagesError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.timings.items())
    click.echo(("Built" if run.built else "Reused") + f" the sample database: {run.database_size} images "
               f"({steps})", err=True)
    origin = f"a held-out edit of '{run.query_photo}', not in the database" if run.query_photo else "your image"
    click.echo(f"\nQuery: {run.query}  ({origin})\n")
    click.echo(format_results(run))
    click.echo("\n" + next_steps(run))
