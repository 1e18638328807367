"""``similar-images extract --engine ray``: the local extraction, scheduled on a Ray cluster.

Stages (Ray Data streams them, so decoding and the model overlap across the cluster):

1. The pending chunks of the file list (the local engine's chunks: ``batch_size *
   chunk_batches`` names each) become a Ray Dataset, one row per chunk.
2. **Decode** in CPU tasks with :func:`similar_images.pipeline.decode_one`, the local
   engine's own function: ``(m, h, w, 3)`` uint8 images plus the failures with reasons.
3. **Embed** in an actor pool, one model per actor, with
   :func:`similar_images.pipeline.embed_decoded` (the local engine's batches, so the
   same vectors). The actor writes the chunk as a shard in ``<output>.partial/``
   (:meth:`~similar_images.db.checkpoint.Checkpoint.save_chunk`: temporary name, then
   rename), so a shard present is complete.
4. The driver counts finished chunks (one progress bar over images, rate and ETA across
   the cluster), then joins the shards in file-list order and commits them with
   :func:`similar_images.db.vectors.save_vectors`: exactly the local database layout.

Actors and decode tasks reserve half a CPU each by default: on a 2-CPU machine, an
actor holding a whole CPU leaves the read tasks nothing and the job stalls. A killed actor is restarted and
its chunk retried by Ray (Ray Data's actor pools restart without limit); a killed
driver leaves finished shards, which ``--resume`` keeps.

On a real cluster the image folder and the output folder must be on storage every node
sees at the same path (NFS, a mounted bucket); see ``docs/scale.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any

import numpy as np

from similar_images.cluster.recipes import ExtractorRecipe
from similar_images.cluster.session import quiet_data_context, ray_session
from similar_images.db.checkpoint import Checkpoint
from similar_images.errors import ImageError, SimilarImagesError
from similar_images.images import Size, fit_of, prepare_batch
from similar_images.jobs import commit_job, finished_run, open_job
from similar_images.pipeline import Timer, decode_one, embed_decoded, progress_bar

logger = logging.getLogger(__name__)

DEFAULT_CPUS_PER_ACTOR = 0.5
# Decode tasks reserve half a CPU too: on nodes of one CPU with an actor each, a
# whole-CPU task would fit nowhere and the job would wait forever.
CPUS_PER_DECODE = 0.5
RAY_WRAPPERS = ("ray.", "UserCodeException", "RayTaskError", "RayDataUserCodeException")


def decode_chunk(row: dict[str, Any], *, image_root: str, size: Size) -> dict[str, Any]:
    """Decode task: one chunk's names to ``(m, h, w, 3)`` uint8 images and the failures."""
    names = list(row["names"])
    images, errors = [], []
    for position, name in enumerate(names):
        result = decode_one(name, image_root, size)
        if isinstance(result, ImageError):
            errors.append([position, str(result), result.reason])
        else:
            images.append(result)
    stacked = np.stack(images) if images else prepare_batch([], size)
    # failures as JSON: a ragged list column would be pickled by Ray Data
    return {"chunk": row["chunk"], "names": names, "errors": json.dumps(errors), "images": stacked}


def decoded_pairs(names, errors, images):
    """``(name, image or ImageError)`` in the chunk's order, as the local reader yields them.

    ``errors`` is :func:`decode_chunk`'s JSON list of ``[position, message, reason]``.
    """
    failed = {int(position): ImageError(str(message), str(reason)) for position, message, reason in json.loads(errors)}
    good = iter(images)
    for position, name in enumerate(names):
        yield name, failed[position] if position in failed else next(good)


class EmbedActor:
    """One model per actor; embeds decoded chunks and writes each as a shard."""

    def __init__(self, recipe: ExtractorRecipe, output: str, batch_size: int):
        self.extractor = recipe.build()
        self.checkpoint = Checkpoint(output)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chunks, counts, embedded, seconds = [], [], [], []
        for i in range(len(batch["chunk"])):
            start = time.perf_counter()
            names = [str(name) for name in batch["names"][i]]
            pairs = decoded_pairs(names, batch["errors"][i], batch["images"][i])
            result = embed_decoded(pairs, self.extractor, batch_size=self.batch_size)
            elapsed = time.perf_counter() - start
            self.checkpoint.save_chunk(int(batch["chunk"][i]), result, elapsed_s=elapsed)
            chunks.append(int(batch["chunk"][i]))
            counts.append(len(names))
            embedded.append(len(result.names))
            seconds.append(elapsed)
        return {"chunk": np.array(chunks), "count": np.array(counts), "embedded": np.array(embedded),
                "model_s": np.array(seconds)}


def run_ray_extraction(
    file_list: str | os.PathLike,
    image_dir: str | os.PathLike,
    output: str | os.PathLike,
    extractor,
    recipe: ExtractorRecipe,
    *,
    batch_size: int = 32,
    chunk_batches: int = 16,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: float = DEFAULT_CPUS_PER_ACTOR,
    gpus_per_actor: float = 0.0,
    threads_per_actor: int | None = None,
    allow_urls: bool = False,
) -> dict[str, Any]:
    """Like :func:`similar_images.extract.run_extraction`, on Ray; the same files come out.

    Args:
        file_list, image_dir, output, batch_size, chunk_batches, resume, force,
            show_progress: as in :func:`~similar_images.extract.run_extraction`.
        extractor: the driver's extractor (its ``describe()`` and ``dim`` go in the manifest).
        recipe: how each actor rebuilds it (:func:`~similar_images.cluster.recipes.recipe_for`).
        address: ``None`` (a local Ray), ``"auto"`` or ``"HOST:PORT"`` (see :func:`ray_session`).
        actors: model actors (default: one per 2 CPUs of the cluster, at least 1).
        cpus_per_actor: CPUs each actor reserves (fractions allowed).
        gpus_per_actor: GPUs each actor reserves (0: CPU inference).
        threads_per_actor: the model's CPU threads in each actor (``OMP_NUM_THREADS``);
            default: the cluster's CPUs shared among the actors, at most one node's CPUs
            (Ray alone would give an actor of half a CPU one thread).

    Returns:
        The manifest written beside ``output``; ``timings`` also holds ``engine``,
        ``nodes`` and ``actors``.
    """
    if batch_size < 1 or chunk_batches < 1 or (actors is not None and actors < 1):
        raise ValueError(f"batch_size, chunk_batches and actors must be at least 1, "
                         f"got {batch_size}, {chunk_batches} and {actors}")
    if cpus_per_actor <= 0 or gpus_per_actor < 0:
        raise ValueError(f"cpus_per_actor must be positive and gpus_per_actor not negative, "
                         f"got {cpus_per_actor} and {gpus_per_actor}")
    if resume and not force and (finished := finished_run(file_list, output)) is not None:
        logger.info("%s is already complete; nothing to resume", output)
        return finished
    job = open_job(file_list, image_dir, output, extractor, batch_size=batch_size, chunk_batches=chunk_batches,
                   resume=resume, force=force, allow_urls=allow_urls)
    checkpoint, state, chunks = job.checkpoint, job.state, job.chunks
    done = checkpoint.finished(len(chunks))
    if done:
        logger.info("resuming: %d of %d chunks already done", len(done), len(chunks))
    timer, started = Timer(), time.perf_counter()
    with ray_session(address) as resources:
        import ray

        alive = [node for node in ray.nodes() if node.get("Alive")]
        nodes = len(alive)
        actors = actors or max(1, int(resources.get("CPU", 1) // 2))
        node_cpus = max(int(node.get("Resources", {}).get("CPU", 1)) for node in alive)
        threads = threads_per_actor or max(1, min(node_cpus, round(resources.get("CPU", 1) / actors)))
        pending = [i for i in range(len(chunks)) if i not in set(done)]
        initial = sum(len(chunks[i]) for i in done)
        with progress_bar(total=sum(map(len, chunks)), initial=initial, show=show_progress,
                          desc=f"extract (ray: {nodes} node{'s' * (nodes != 1)}, {actors} actors)") as bar:
            rows = _dataset(chunks, pending, state, image_dir, output, recipe, extractor, actors=actors,
                            cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor, threads=threads)
            for row in _failures_explained(rows, checkpoint):
                bar.update(int(row["count"]))
                timer.images += int(row["embedded"])
                timer.model_s += float(row["model_s"])
    return commit_job(job, extractor, timer, time.perf_counter() - started, resumed=len(done),
                      timings={"engine": "ray", "nodes": nodes, "actors": actors})


def _failures_explained(rows, checkpoint: Checkpoint):
    """``rows``; a failed Ray job becomes one SimilarImagesError saying what failed and what to do."""
    import ray.data.exceptions
    import ray.exceptions

    try:
        yield from rows
    except (ray.exceptions.RayError, ray.data.exceptions.UserCodeException) as exc:
        raise SimilarImagesError(f"the Ray job failed ({_root_cause(exc)}); finished shards are kept in "
                                 f"{checkpoint.dir}, rerun with --resume to continue") from exc


def _root_cause(exc: BaseException) -> str:
    """The user's ``Type: message`` inside Ray's wrappers (their texts quote the original traceback)."""
    chain, seen = [], set()
    while isinstance(exc, BaseException) and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    pattern = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")
    quoted = [line.strip() for e in chain for line in str(e).splitlines()
              if pattern.match(line.strip()) and not line.strip().startswith(RAY_WRAPPERS)]
    if quoted:
        return quoted[-1]
    return f"{type(chain[-1]).__name__}: {str(chain[-1]).strip().splitlines()[0] if str(chain[-1]).strip() else ''}"


def _dataset(chunks, pending, state, image_dir, output, recipe, extractor, *, actors, cpus_per_actor, gpus_per_actor,
             threads):
    """Stream the pending chunks through decode tasks and the actor pool; yield one row per chunk."""
    import ray.data

    if not pending:
        return
    quiet_data_context()
    items = [{"chunk": i, "names": list(chunks[i])} for i in pending]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(decode_chunk, fn_kwargs={"image_root": str(image_dir), "size": fit_of(extractor)},
                num_cpus=CPUS_PER_DECODE)
    ds = ds.map_batches(EmbedActor, fn_constructor_kwargs={"recipe": recipe, "output": str(output),
                                                           "batch_size": state["batch_size"]},
                        batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                        num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
                        runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}})
    yield from ds.iter_rows()

