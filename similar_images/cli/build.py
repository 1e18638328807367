"""``similar-images build`` (and the root script ``build_search_db.py``): build the search index."""

from __future__ import annotations

from pathlib import Path

import click

from similar_images.cli import Command, setup_logging
from similar_images.db.database import COCO_INDEX as DEFAULT_INDEX
from similar_images.db.database import COCO_VECTORS as DEFAULT_VECTORS
from similar_images.db.index import INDEX_TYPES
from similar_images.db.recall import TARGET_RECALL


@click.command(name="build", cls=Command)
@click.option("-i", "--input_vectors", "--input-vectors", "input_vectors", default=DEFAULT_VECTORS,
              show_default=True, type=click.Path(dir_okay=False), help="Vectors file (with its manifest).")
@click.option("-o", "--output_filename", "--output-filename", "output_filename", default=None,
              type=click.Path(dir_okay=False),
              help=f"Index file to write.  [default: {DEFAULT_INDEX} for the default vectors, "
                   "else <vectors stem>.faiss.index]")
@click.option("-d", "--dimension", default=None, type=click.IntRange(min=1),
              help="Expected vector dimension, a check (4096 for vgg16, 1280 for efficientnet-lite0).  "
                   "[default: the dimension the vectors manifest records]")
@click.option("--index-type", default="ivfpq", show_default=True, type=click.Choice(list(INDEX_TYPES)),
              help="ivfpq: IVF100,PQ16 (7 MB, the original; more lists past 100,000 vectors); flat: exact; "
                   "pca-ivfpq: PCA256,IVF100,PQ16 (smallest); opq-ivfpq: learned rotation to 256-d, then "
                   "IVF100,PQ16 (fewer candidates to re-rank: faster searches of 1280-d vectors, slower to train "
                   "at 4096-d); hnsw: graph over the full vectors (no training, fastest search, large).")
@click.option("--nlist", default=None, type=click.IntRange(min=1),
              help="IVF lists (ivfpq, pca-ivfpq, opq-ivfpq); fewer when the training sample is small.  "
                   "[default: from the collection's size: 100 up to 100,000 vectors, then 4 x sqrt(N), at most "
                   "one per 39 training vectors; an HNSW graph finds the lists from 4096]")
@click.option("--pq", default=None, type=click.IntRange(min=1),
              help="Bytes of a PQ code (ivfpq, pca-ivfpq, opq-ivfpq); finer codes need fewer candidates re-ranked.  "
                   "[default: from the collection's size: 16 up to 100,000 vectors (the original's), then 64]")
@click.option("--nprobe", default=None, type=click.IntRange(min=1),
              help="IVF lists a query scans.  [default: measured: the cheapest nprobe and re-ranking pool "
                   "that reach --recall-target]")
@click.option("--recall-target", default=TARGET_RECALL, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="recall@10 against exact search (with re-ranking, on 200 of the collection's own vectors) "
                   "that the measured nprobe and re-ranking pool must reach.")
@click.option("--train-size", default=50_000, show_default=True, type=click.IntRange(min=1000),
              help="Train on at most this many vectors (a random sample).")
@click.option("--refine", default="auto", show_default=True, type=click.Choice(["auto", "yes", "no"]),
              help="Write the refine stage (IVF types): 8-bit codes of every row beside the index (1 byte a value, "
                   "mapped), which cut a query's candidates to the best 2 x k before the exact rows are read.  "
                   "auto: from 4,000,000 vectors.")
@click.option("--force", is_flag=True, help="Replace an existing index.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="ray: train here, encode shards of the vectors in Ray tasks, merge (docs/scale.md).")
@click.option("--address", default=None,
              help="ray: the cluster to join ('auto', or HOST:PORT).  [default: start a local Ray]")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def build(input_vectors, output_filename, dimension, index_type, nlist, pq, nprobe, recall_target, train_size, refine,
          force, no_progress, engine, address, verbose):
    """Build the Faiss index that `similar-images search` uses.

    Prints the decision (the IVF lists from the collection's size; nprobe and the
    re-ranking pool measured to reach --recall-target), the build time, the index size
    and its recall@10 against exact search (with and without exact re-ranking),
    measured with 200 of the collection's own vectors as queries.
    """
    setup_logging(verbose)
    from similar_images.db.build import build_index_files, build_summary
    from similar_images.db.database import default_index_path
    from similar_images.errors import SimilarImagesError

    if output_filename is None:
        output_filename = DEFAULT_INDEX if input_vectors == DEFAULT_VECTORS else str(default_index_path(input_vectors))
    if Path(output_filename).exists() and not force:  # before any work (the build checks again)
        raise click.ClickException(f"{output_filename} already exists; use --force to replace it")
    if not Path(input_vectors).exists():
        raise click.ClickException(f"{input_vectors}: vectors file not found (make it with `similar-images extract`)")
    if address and engine != "ray":
        raise click.UsageError("--address needs --engine ray")
    click.echo(f"building the {index_type} index of {input_vectors} ...", err=True)
    options = {"index_type": index_type, "dimension": dimension, "force": force, "nlist": nlist, "pq": pq,
               "nprobe": nprobe, "refine": refine,
               "recall_target": recall_target, "train_size": train_size, "show_progress": not no_progress}
    try:
        if engine == "ray":
            from similar_images.cluster.ray_build import build_index_files_ray

            manifest = build_index_files_ray(input_vectors, output_filename, address=address, **options)
        else:
            manifest = build_index_files(input_vectors, output_filename, **options)
    except (SimilarImagesError, ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    lines = build_summary(manifest, output_filename).splitlines()
    # the pool choice speaks to us, not to users: -v shows it
    click.echo("\n".join(line for line in lines if verbose or not line.startswith("re-ranking pool:")))
