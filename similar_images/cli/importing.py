"""``similar-images import``: a database from vectors computed elsewhere (a ``.npy`` and a names file)."""

from __future__ import annotations

import click

from similar_images.cli import setup_logging


@click.command(name="import")
@click.argument("vectors", type=click.Path(dir_okay=False))
@click.option("--names", "names", required=True, type=click.Path(dir_okay=False),
              help="UTF-8 text file, one name a line, in row order (image paths, or texts with --name-rule text).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The new database's vectors file (.npy); it must not exist.")
@click.option("--model", default="none", show_default=True,
              help="The model that made the vectors (vgg16, efficientnet-lite0, clip-vit-b-32), so image queries "
                   "work; none: searches by id or by vector only.")
@click.option("--image-dir", default=None, type=click.Path(file_okay=False),
              help="Folder the names are relative to (recorded).  [default: the database's folder]")
@click.option("--name-rule", default="path", show_default=True, type=click.Choice(["path", "text"]),
              help="path: names are image files (a//b.jpg and a/b.jpg are one); text: exact strings.")
@click.option("--store", default=None, type=click.Choice(["float32", "float16"]),
              help="How the rows are kept: float16 halves the disk and what a re-ranking reads, for cosines "
                   "within float16 rounding, but costs CPU to convert while the rows fit in memory.  "
                   "[default: float32]")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def import_vectors(vectors, names, output, model, image_dir, name_rule, store, no_progress, verbose):
    """Create a database from VECTORS (.npy, n x d, float16/32/64) and --names (n lines).

    Everything is checked before anything is written: the dtype, finite values, one name
    a row, no name twice. Build the index afterwards with `similar-images build -i OUTPUT`.
    """
    setup_logging(verbose)
    from similar_images.db.importing import NO_MODEL
    from similar_images.db.importing import import_vectors as run_import
    from similar_images.errors import SimilarImagesError

    described = None
    if model != NO_MODEL:
        from similar_images.features import get_extractor

        try:
            described = get_extractor(model).describe()
        except ValueError as exc:
            raise click.UsageError(f"--model: {exc}; or none") from None
    try:
        manifest = run_import(vectors, names, output, model=described, image_dir=image_dir, name_rule=name_rule,
                              store=store, show_progress=not no_progress)
    except (SimilarImagesError, ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"imported {manifest['count']:,} vectors of dimension {manifest['dimension']} "
               f"({manifest['model']['name']}, {manifest.get('store', 'float32')} store) into {output}; build its "
               "index with "
               f"`similar-images build -i {output}`")
