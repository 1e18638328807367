"""An extraction job, as both engines run it (local: :func:`similar_images.extract.run_extraction`;
Ray: :mod:`similar_images.cluster.ray_extract`).

:func:`validate_job` checks the arguments before any model loads, :func:`open_job` opens or
resumes the checkpoint and applies the input rules (``db/inputs.py``), :func:`commit_job`
joins the finished chunks in file-list order and commits the one vectors-file layout both
engines write.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from similar_images.db.checkpoint import Checkpoint, check_compatible, partial_dir
from similar_images.db.inputs import check_names
from similar_images.db.vectors import save_vectors
from similar_images.errors import SimilarImagesError
from similar_images.fileio.files import read_file_list, sha256_lines
from similar_images.pipeline import Timer

logger = logging.getLogger(__name__)

STARVED = 0.05  # the time line names decoding as the limit when the model waited for input longer


def validate_job(
    file_list: str | os.PathLike,
    image_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
) -> list[str]:
    """Check an extraction job's arguments before any model is loaded; return the names.

    Raises:
        SimilarImagesError: missing or empty file list, missing image folder, output
            folder missing or not writable, output or an interrupted run in the way.
    """
    file_list, image_dir, output = Path(file_list), Path(image_dir), Path(output)
    if not file_list.is_file():
        raise SimilarImagesError(f"file list {file_list} not found")
    try:
        names = read_file_list(file_list)
    except (OSError, UnicodeDecodeError) as exc:
        raise SimilarImagesError(f"file list {file_list} is unreadable ({exc})") from None
    if not names:
        raise SimilarImagesError(f"file list {file_list} is empty")
    if not image_dir.is_dir():
        raise SimilarImagesError(f"image folder {image_dir} not found")
    folder = output.parent
    if output.is_dir():
        raise SimilarImagesError(f"output {output} is a folder; give a file name")
    if not folder.is_dir():
        raise SimilarImagesError(f"cannot write {output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SimilarImagesError(f"cannot write {output}: folder {folder} is not writable")
    if output.exists() and not force:
        raise SimilarImagesError(f"{output} already exists; use --force to overwrite it")
    if partial_dir(output).exists() and not (resume or force):
        raise SimilarImagesError(
            f"an interrupted run left {partial_dir(output)}; use --resume to continue it "
            "or --force to start over"
        )
    return names


def finished_run(file_list: str | os.PathLike, output: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``output`` if it already holds this file list's finished extraction, else None.

    A run killed after its commit point has a complete output and may still have its
    ``.partial/`` folder: ``--resume`` then says so and removes the folder. "Finished"
    means the database opens and verifies and its manifest records the same file list
    (``file_list_sha256``).
    """
    from similar_images.db.database import Database

    output = Path(output)
    if not output.exists():
        return None
    try:
        names = read_file_list(file_list)
    except (OSError, UnicodeDecodeError):
        return None
    manifest = Database.open(output).manifest
    if manifest.get("file_list_sha256") != sha256_lines(names):
        return None
    Checkpoint(output).remove()
    return manifest


@dataclass
class Job:
    """An extraction opened for running, by either engine: its checked names cut into
    chunks, the skipped ones with their reasons, and its checkpoint and state."""

    file_list: str
    image_dir: str
    output: Path
    checkpoint: Checkpoint
    state: dict[str, Any]
    chunks: list[list[str]]
    skipped: list[dict[str, str]]


def open_job(file_list, image_dir, output, extractor, *, batch_size: int, chunk_batches: int,
             resume: bool, force: bool, allow_urls: bool) -> Job:
    """Check a job (:func:`validate_job`), open or resume its checkpoint, apply the input rules."""
    names = validate_job(file_list, image_dir, output, resume=resume, force=force)
    checkpoint = Checkpoint(output)
    state = {
        "file_list": str(file_list),
        "file_list_sha256": sha256_lines(names),
        "count": len(names),
        "image_dir": str(image_dir),
        "model": extractor.describe(),
        "batch_size": int(batch_size),
        "chunk_size": int(batch_size) * int(chunk_batches),
    }
    state = _open_checkpoint(checkpoint, state, resume=resume)
    size = state["chunk_size"]
    checked = check_names(names, image_dir, allow_urls=allow_urls)  # the same rules as add
    for item in checked.skipped:
        logger.info("skipped %s", item["message"])
    chunks = [checked.names[i : i + size] for i in range(0, len(checked.names), size)]
    return Job(str(file_list), str(image_dir), Path(output), checkpoint, state, chunks, checked.skipped)


def commit_job(job: Job, extractor, timer: Timer, elapsed: float, *, resumed: int,
               timings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Join a job's finished chunks in file-list order and commit the vectors file: the one
    layout both engines write. ``timings`` adds engine-specific entries. Returns the manifest."""
    vectors, kept, skipped, total_s = job.checkpoint.assemble(len(job.chunks), int(extractor.dim))
    vectors, kept, skipped = drop_non_finite(vectors, kept, skipped)
    vectors, model = whiten_if_asked(job.state["model"], vectors, job.output)
    model_files = keep_model_files(extractor, job.output)
    manifest = save_vectors(job.output, vectors, {
        "model": model,
        **({"model_files": model_files} if model_files else {}),
        "names": kept,
        "image_dir": recorded_image_dir(job.image_dir, job.output),
        "file_list": job.file_list,
        "file_list_sha256": job.state["file_list_sha256"],
        "skipped": job.skipped + skipped,
        "timings": {**_timings(elapsed, total_s, timer, resumed, len(job.chunks), job.state), **(timings or {})},
    })
    job.checkpoint.remove()
    logger.info("%s", extraction_summary(manifest))
    if (breakdown := time_summary(manifest)) is not None:
        logger.info("%s", breakdown)
    return manifest


def whiten_if_asked(model: dict[str, Any], vectors: np.ndarray, output) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit the PCA-whitening on the collection when its recipe asks (``descriptor.whiten``),
    save it beside ``output`` and whiten the vectors; the model description then names the
    file (``whitening``), so queries and added images are whitened the same way."""
    if not (model.get("descriptor") or {}).get("whiten"):
        return vectors, model
    from similar_images.models import whitening

    if len(vectors) < 2:
        raise SimilarImagesError(f"--whiten needs at least 2 images to fit on, got {len(vectors)}")
    mean, projection = whitening.fit(vectors)
    record = whitening.save(output, mean, projection, fitted_on=len(vectors))
    logger.info("whitening fitted on %d vectors, saved as %s", len(vectors), record["file"])
    return whitening.apply(vectors, mean, projection), {**model, "whitening": record}


def drop_non_finite(vectors: np.ndarray, names: list[str], skipped: list[dict]):
    """Skip rows the model made NaN or infinite (with a reason): they are never stored."""
    finite = np.isfinite(vectors).all(axis=1)  # (n,)
    if finite.all():
        return vectors, names, skipped
    bad = [{"path": names[i], "reason": "non-finite",
            "message": f"{names[i]}: the model's vector holds NaN or infinity"} for i in np.flatnonzero(~finite)]
    return vectors[finite], [n for n, ok in zip(names, finite) if ok], skipped + bad


def keep_model_files(extractor, output: str | os.PathLike) -> str | None:
    """Copy a quantised model beside ``output`` so the database travels; its folder name, or None.

    The copy is named by its calibration sample (``<output>.int8-<sample>``), so a crash
    before the vectors are committed leaves only a folder the next run reuses.
    """
    source = getattr(extractor, "model_folder", None)
    if source is None:
        return None
    from similar_images.models.quantize import save_model_folder

    sample = str(extractor.describe().get("calibration", {}).get("sample_sha256", "model"))[:12]
    output = Path(output)
    target = save_model_folder(source, output.parent / f"{output.name}.int8-{sample}")
    return target.name


def recorded_image_dir(image_dir: str | os.PathLike, output: str | os.PathLike) -> str:
    """The image folder as the manifest records it: relative to the database's folder when
    the images live there (so a moved or copied database still finds them), else absolute."""
    images, home = Path(os.path.abspath(image_dir)), Path(os.path.abspath(output)).parent
    if images == home or home in images.parents:
        return Path(os.path.relpath(images, home)).as_posix()
    return str(images)


def _open_checkpoint(checkpoint: Checkpoint, state: dict[str, Any], *, resume: bool) -> dict[str, Any]:
    """The state to run with: the saved one when resuming a matching run, else a fresh one."""
    if resume and checkpoint.exists():
        saved = checkpoint.load_state()
        check_compatible(saved, state, checkpoint.dir)
        if saved.get("batch_size") != state["batch_size"]:
            logger.warning("resuming with the partial run's batch size %s (not %s) so vectors match",
                           saved.get("batch_size"), state["batch_size"])
        return {**state, "batch_size": saved["batch_size"], "chunk_size": saved["chunk_size"]}
    if resume:  # the CLI says so to the user; library callers may pass resume=True routinely
        logger.info("nothing to resume at %s; starting from the beginning", checkpoint.dir)
    checkpoint.start(state)
    return state


def _timings(elapsed, total_s, timer, resumed, chunks, state) -> dict[str, Any]:
    return {
        "finished_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 3),
        "images_per_s": round(timer.images / elapsed, 3) if elapsed > 0 else None,
        "images_this_run": timer.images,
        "model_s": round(timer.model_s, 3),
        "decode_s": round(timer.decode_s, 3),
        "decode_cpu_s": round(timer.decode_cpu_s, 3),
        "decode_wait_s": round(timer.decode_wait_s, 3),
        "preprocess_s": round(timer.preprocess_s, 3),
        "input_wait_s": round(timer.input_wait_s, 3),
        "write_s": round(timer.write_s, 3),
        "all_runs_s": round(total_s, 3),
        "chunks": chunks,
        "resumed_chunks": resumed,
        "batch_size": state["batch_size"],
        "chunk_size": state["chunk_size"],
    }


def extraction_summary(manifest: dict[str, Any]) -> str:
    """One line: done, skipped, elapsed, images/s."""
    timings = manifest.get("timings", {})
    rate = timings.get("images_per_s")
    text = (f"done {manifest['count']}, skipped {len(manifest.get('skipped', []))}, "
            f"elapsed {timings.get('elapsed_s', 0):.1f} s, "
            f"{rate if rate is not None else 0:.2f} images/s")
    if timings.get("resumed_chunks"):
        text += f" (resumed: {timings['resumed_chunks']} of {timings['chunks']} chunks were already done)"
    return text


def time_summary(manifest: dict[str, Any]) -> str | None:
    """One line: where the run's time went, or None when it was not measured (Ray, old manifests).

    ``model`` is the model thread waiting for results, ``input wait`` the model thread
    waiting for prepared batches (the model short of input), ``write`` the checkpoint saves;
    decode (CPU seconds and wall ms per image, summed over the decode threads: the wall time
    is longer when they wait for a core) and preprocessing run on other threads, in parallel
    with the model.
    """
    t = manifest.get("timings", {})
    if "decode_cpu_s" not in t or not t.get("images_this_run"):
        return None
    n = t["images_this_run"]
    cpu = t["decode_cpu_s"]
    text = (f"time: model {t['model_s']:.1f} s, input wait {t['input_wait_s']:.1f} s, "
            f"write {t['write_s']:.1f} s of {t['elapsed_s']:.1f} s; in parallel: decode {cpu:.1f} "
            f"CPU s ({1000 * cpu / n:.1f} ms/image; wall {1000 * t['decode_s'] / n:.1f} ms, waited "
            f"{t['decode_wait_s']:.1f} s), preprocess {t['preprocess_s']:.1f} s")
    if t["input_wait_s"] > STARVED * t["elapsed_s"] > 0:
        text += (f" (the model waited for input {100 * t['input_wait_s'] / t['elapsed_s']:.0f}% of the run: "
                 "decoding or preparing is the limit; more --workers may help)")
    return text
