"""``similar-images evaluate``: fidelity, COCO semantic quality and robustness reports."""

from __future__ import annotations

import click

from similar_images.cli import setup_logging
from similar_images.db.database import COCO_VECTORS as DEFAULT_VECTORS

DEFAULT_ANNOTATIONS = "ms_coco/annotations/instances_val2014.json"


def _csv(ctx, param, value):
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter("give at least one name, separated by commas")
    return items


@click.command()
@click.argument("reports", nargs=-1, required=True,
                type=click.Choice(["fidelity", "coco", "robustness", "duplicates", "all"]))
@click.option("--vectors", "vectors", multiple=True, type=click.Path(dir_okay=False),
              help=f"Vectors file of a database (repeat for several models). Default: {DEFAULT_VECTORS}.")
@click.option("--index", "index", type=click.Path(dir_okay=False), default=None,
              help="Index file of the (first) database. Default: the one beside its vectors, if any.")
@click.option("--models", callback=_csv, default=None, metavar="A,B",
              help="Systems to compare side by side: MODEL, INDEX_TYPE or MODEL:INDEX_TYPE, comma-separated "
                   "(e.g. 'flat,ivfpq,hnsw' or 'vgg16,efficientnet-lite0'). Index types: flat, ivfpq, "
                   "pca-ivfpq, hnsw, saved (the index file) or exact. With --images: the models to "
                   "extract the folder with.")
@click.option("--annotations", type=click.Path(dir_okay=False), default=DEFAULT_ANNOTATIONS,
              show_default=True, help="COCO instances file (coco report).")
@click.option("--images", "images", type=click.Path(file_okay=False), default=None,
              help="Robustness: build a database per model from this folder instead of using --vectors.")
@click.option("--queries", type=click.IntRange(min=1), default=None,
              help="Query images per report (default: fidelity and coco 1000, robustness 200; fewer if the "
                   "collection is smaller).")
@click.option("--edits", callback=_csv, default=None, metavar="A,B",
              help="Robustness edits (default all): crop70, resize50, jpeg30, hflip, rotate10, "
                   "brightness-contrast, grayscale, text.")
@click.option("--group-separator", default=None, metavar="SEP",
              help="Robustness: names sharing the stem before SEP are copies of one photo (the demo's "
                   "sample collection uses '__').")
@click.option("--seed", type=int, default=0, show_default=True, help="Which images are sampled as queries.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="evaluation",
              show_default=True, help="Folder for the JSON and PNG reports (and cached indexes/vectors).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def evaluate(reports, vectors, index, models, annotations, images, queries, edits, group_separator, seed,
             out_dir, progress, verbose):
    """How good are a database's results? Print, save (JSON) and plot (PNG) REPORTS.

    \b
    fidelity    recall@1/@10/@100 of the search against exact search, and latency
    coco        semantic precision@k and mAP@k on COCO val2014 vs a random ranking
    robustness  edited copies (crop, resize, JPEG, flip, ...) searched against the originals
    duplicates  precision/recall of the duplicate threshold per model (--models, default
                efficientnet-lite0) on a generated set of the demo photos and their edits
    all         fidelity, coco and robustness (coco only where the annotations file exists)

    \b
    Examples:
      similar-images evaluate fidelity --models ivfpq,pca-ivfpq,hnsw
      similar-images evaluate coco --vectors vgg.npy --vectors effnet.npy --models vgg16,efficientnet-lite0
      similar-images evaluate robustness --images my_photos/ --models efficientnet-lite0
    """
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError
    from similar_images.evaluation.run import run_reports

    names = ["fidelity", "coco", "robustness"] if "all" in reports else list(dict.fromkeys(reports))
    if "duplicates" in names:
        names.remove("duplicates")
        _duplicates(models or ["efficientnet-lite0"], out_dir, progress)
        if not names:
            return
    try:
        for report, written in run_reports(
            names, vectors=list(vectors) or [DEFAULT_VECTORS], index=index, models=models,
            annotations=annotations, images=images, queries=queries, edits=edits,
            group_separator=group_separator, seed=seed, out_dir=out_dir, show_progress=progress,
            skip_missing_annotations="all" in reports,
        ):
            click.echo(report.table())
            click.echo("saved: " + ", ".join(str(p) for p in written.values()) + "\n")
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _duplicates(models: list[str], out_dir: str, progress: bool) -> None:
    from similar_images.duplicates.evaluate import calibrate_models, summary
    from similar_images.errors import SimilarImagesError
    from similar_images.features import get_extractor

    try:
        report = calibrate_models({m: get_extractor(m) for m in models}, out_dir, show_progress=progress)
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(summary(report))
    click.echo("saved: " + ", ".join(report["files"]) + "\n")
