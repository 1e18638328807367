"""``similar-images extract`` (and the root script ``extract_image_vectors.py``)."""

from __future__ import annotations

import inspect

import click

from similar_images.cli import Command, setup_logging
from similar_images.db.database import COCO_FILE_LIST as DEFAULT_FILE_LIST
from similar_images.features import DEFAULT_MODEL, MODELS

DEFAULT_IMG_DIR = "ms_coco/val2014"
DEFAULT_MODEL_FILE = "vgg_4096.h5"


@click.command(name="extract", cls=Command)
@click.option("-l", "--filename_list", "--filename-list", "filename_list", default=DEFAULT_FILE_LIST,
              show_default=True, type=click.Path(),
              help="Text file with one image path a line, relative to --img_dir.")
@click.option("-d", "--img_dir", "--img-dir", "img_dir", default=DEFAULT_IMG_DIR, show_default=True,
              type=click.Path(), help="Folder holding the images.")
@click.option("-o", "--output_filename", "--output-filename", "output_filename", default=None,
              type=click.Path(), help="Vectors file to write.  [default: <list>.saved_predictions.npy]")
@click.option("-m", "--model_filename", "--model-filename", "model_filename", default=DEFAULT_MODEL_FILE,
              show_default=True, type=click.Path(),
              help="Where the VGG16 ImageNet model cut at fc2 is cached (vgg16 only).")
@click.option("-b", "--batch_size", "--batch-size", "batch_size", default=32, show_default=True,
              type=click.IntRange(min=1), help="Images per model call.")
@click.option("--model", "model", default=DEFAULT_MODEL, show_default=True,
              type=click.Choice(sorted(MODELS)), help="Feature model.")
@click.option("--weights", default=None,
              help="Model weights: the model's pretrained ones by default (vgg16: 'imagenet', "
                   "downloaded once; efficientnet-lite0: 'pretrained', offline; clip-vit-b-32: the "
                   "open_clip tag 'openai', downloaded once by open_clip), 'none' "
                   "(random, seeded: tests only) or a path to a weights/model file (docs/clip.md for CLIP's).")
@click.option("--runtime", default="native", show_default=True, type=click.Choice(["native", "openvino"]),
              help="Run the model in its own framework (TensorFlow/PyTorch) or in OpenVINO (faster on CPUs).")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
              help="Where the model runs; auto: cuda when torch sees a GPU (native runtime only), else cpu.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "int8"]),
              help="int8 (openvino only): quantised on a sample of these images, checked against fp32, cached.")
@click.option("--pooling", default="avg", show_default=True, type=click.Choice(["avg", "gem", "max", "rmac"]),
              help="How the last convolutional map becomes the vector: avg is each model's classic vector "
                   "(efficientnet-lite0: average pool; vgg16: fc2); gem, max, rmac pool the map "
                   "(vgg16: block5_conv3, 512-d). Recorded in the database; searches use it (docs/descriptors.md).")
@click.option("--gem-p", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True, max=100),
              help="GeM's exponent (--pooling gem): 1 is average pooling, large values tend to max pooling.")
@click.option("--scales", default="1", show_default=True, metavar="S,S",
              help="Image scales whose vectors are summed, e.g. 1,0.707 (each L2-normalised first).")
@click.option("--whiten", is_flag=True, help="PCA-whitening fitted on these images, stored beside the vectors.")
@click.option("--force-int8", is_flag=True, help="Use INT8 even when its fidelity check fails.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoints.")
@click.option("--force", is_flag=True, help="Overwrite an existing output (and discard a partial run "
                                              "unless --resume).")
@click.option("--allow-urls", is_flag=True, help="Fetch http(s):// lines of the file list (default: skip them "
                                                   "with a reason).")
@click.option("--workers", default=None, type=click.IntRange(min=1),
              help="Image decoding threads.  [default: cores, at most 4; every core with --device cuda]")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--chunk-batches", default=16, type=click.IntRange(min=1), hidden=True,
              help="Batches per checkpoint chunk.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: this process; ray: decode tasks and model actors on a Ray cluster (docs/scale.md).")
@click.option("--address", default=None,
              help="ray: the cluster to join ('auto', or HOST:PORT).  [default: start a local Ray]")
@click.option("--actors", default=None, type=click.IntRange(min=1),
              help="ray: model actors, one model each.  [default: one per 2 CPUs of the cluster]")
@click.option("--gpus-per-actor", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="ray: GPUs each model actor reserves.")
@click.option("-v", "--verbose", is_flag=True, help="Log details.")
def extract(filename_list, img_dir, output_filename, model_filename, batch_size, model, weights,
            runtime, device, precision, pooling, gem_p, scales, whiten, force_int8, resume, force, allow_urls,
            workers, no_progress, chunk_batches,
            engine, address, actors, gpus_per_actor, verbose):
    """Extract a feature vector for every image of a file list.

    Writes OUTPUT (.npy, float32, one row per image) and OUTPUT.manifest.json (the
    image of each row, skipped files and why, model, timings). Progress is saved as
    it goes: after an interruption, run the same command with --resume.
    """
    setup_logging(verbose)
    from tqdm.contrib.logging import logging_redirect_tqdm

    from similar_images.db.checkpoint import partial_dir
    from similar_images.errors import SimilarImagesError
    from similar_images.extract import run_extraction
    from similar_images.features import get_extractor
    from similar_images.jobs import extraction_summary, finished_run, time_summary, validate_job

    check_paths(filename_list, img_dir)
    output = output_filename or f"{filename_list}.saved_predictions.npy"
    try:
        if resume and not force and (done := finished_run(filename_list, output)) is not None:
            click.echo(f"{output} is complete ({done['count']} vectors); nothing to resume")
            return
        # Arguments first: a typo must not cost a model load.
        validate_job(filename_list, img_dir, output, resume=resume, force=force)
        if resume and not partial_dir(output).exists():
            click.echo(f"note: no interrupted run to resume ({partial_dir(output)} does not exist); "
                       "starting from the beginning", err=True)
        from similar_images.models.devices import decode_workers, resolve_device

        device = resolve_device(device, runtime=runtime)  # before the model loads: a clear one-line error
        if device == "cpu":  # the measured CPU runtimes; on a GPU the native runtime is the fast one
            speed_hint(filename_list, model, runtime, precision)
        if engine == "local" and (address or actors or gpus_per_actor):
            raise click.UsageError("--address, --actors and --gpus-per-actor need --engine ray")
        workers = workers or decode_workers(device)
        from similar_images.models.descriptors import Descriptor, parse_scales

        recipe = Descriptor(pooling=pooling, gem_p=gem_p, scales=parse_scales(scales), whiten=whiten)
        options = {**model_options(model, weights=weights, model_file=model_filename, device=device,
                                   descriptor=None if recipe.classic else recipe),
                   **runtime_options(runtime, precision, filename_list, img_dir,
                                     force_int8=force_int8, show_progress=not no_progress)}
        if not recipe.classic and "descriptor" not in options:
            raise click.UsageError(f"--pooling, --scales and --whiten: model {model} has no descriptor recipes "
                                   "(efficientnet-lite0 and vgg16 have)")
        extractor = get_extractor(model, **options)
        if str(extractor.describe().get("weights", "")).startswith("none"):
            click.echo(f"note: {model} runs with RANDOM weights ({extractor.describe()['weights']}); "
                       "the vectors are for testing only", err=True)
        with logging_redirect_tqdm():  # log lines above the bar, not through it
            if engine == "ray":
                from similar_images.cluster.ray_extract import run_ray_extraction
                from similar_images.cluster.recipes import recipe_for

                manifest = run_ray_extraction(filename_list, img_dir, output, extractor,
                                              recipe_for(extractor, model, options), batch_size=batch_size,
                                              chunk_batches=chunk_batches, resume=resume, force=force,
                                              show_progress=not no_progress, address=address, actors=actors,
                                              gpus_per_actor=gpus_per_actor, allow_urls=allow_urls)
            else:
                manifest = run_extraction(filename_list, img_dir, output, extractor, batch_size=batch_size,
                                          workers=workers, resume=resume, force=force,
                                          show_progress=not no_progress, chunk_batches=chunk_batches,
                                          allow_urls=allow_urls)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"interrupted; finished chunks are kept in {output}.partial, rerun with --resume to continue"
        ) from None
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{extraction_summary(manifest)}; vectors in {output}")
    if (breakdown := time_summary(manifest)) is not None:
        if verbose:  # where the time went: for tuning, not for every run
            click.echo(breakdown)
        elif "more --workers may help" in breakdown:
            click.echo("note: the model often waited for decoded images; more --workers may help (-v: timings)")
    click.echo(f"next: similar-images build -i {output}   (the index that `similar-images search` uses)")
    if engine == "ray":
        timings = manifest["timings"]
        click.echo(f"ray: {timings['nodes']} node(s), {timings['actors']} model actor(s), "
                   f"{timings['model_s']:.1f} actor-seconds in the model")


def check_paths(filename_list: str, img_dir: str) -> None:
    """A folder given as the list, or a missing image folder: one line saying what to give."""
    from pathlib import Path

    if Path(filename_list).is_dir():
        raise click.ClickException(
            f"-l {filename_list} is a folder; -l takes a text file of image paths, one a line, relative to -d. "
            f"For every image of a folder: similar-images add {filename_list} (into an existing database), or list "
            f"them: (cd {filename_list} && find . -type f -iname '*.jpg') > list.txt, then -l list.txt "
            f"-d {filename_list}")
    if Path(filename_list).is_file() and not Path(img_dir).is_dir():  # a missing list is said first, by the job
        raise click.ClickException(f"image folder {img_dir} not found: give the folder the list's paths are relative to "
                               f"with -d/--img_dir (default: {DEFAULT_IMG_DIR})")


def model_options(model: str, **given) -> dict:
    """The options among ``given`` that ``model``'s factory names (``None`` = not given)."""
    import importlib

    module_name, factory_name = MODELS[model].split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    parameters = inspect.signature(factory).parameters
    return {key: value for key, value in given.items() if value is not None and key in parameters}


def runtime_options(runtime: str, precision: str, filename_list: str, img_dir: str, *, force_int8: bool,
                    show_progress: bool) -> dict:
    """``runtime``/``precision`` options; INT8 calibrates on a sample of the images being indexed."""
    if runtime == "native":
        if precision != "fp32" or force_int8:
            raise click.UsageError("--precision int8 and --force-int8 need --runtime openvino")
        return {}
    options = {"runtime": runtime, "precision": precision, "show_progress": show_progress}
    if precision == "int8":
        from similar_images.fileio.files import read_file_list
        from similar_images.pipeline import resolve

        names = read_file_list(filename_list)
        options.update(calibration_paths=[resolve(name, img_dir) for name in names], force_int8=force_int8)
    elif force_int8:
        raise click.UsageError("--force-int8 needs --precision int8")
    return options


def speed_hint(filename_list: str, model: str, runtime: str, precision: str) -> None:
    """Before a long run, name the faster runtime/precision options measured on this machine;
    before a short INT8 one, say when its start-up is not paid back (and what fp32 would take)."""
    from similar_images.fileio.files import read_file_list
    from similar_images.models.int8_costs import int8_advice
    from similar_images.models.speeds import runtime_hint

    count = len(read_file_list(filename_list))
    hint = runtime_hint(model, runtime, precision, count)
    if precision == "int8" and runtime == "openvino":
        hint = int8_advice(model, count) or hint
    if hint:
        click.echo(hint, err=True)
