"""``similar-images serve``: the search as an HTTP service with a web page."""

from __future__ import annotations

from pathlib import Path

import click

from similar_images.cli import setup_logging
from similar_images.cli.options import DEFAULT_VECTORS, database_options, open_from_options


def demo_database() -> tuple[Path, Path, Path]:
    """``(vectors, index, photos)`` of the demo's sample database (``similar-images demo``)."""
    from similar_images.demo.run import DEFAULT_MODEL, DEFAULT_WORKDIR, DemoPaths

    paths = DemoPaths(Path(DEFAULT_WORKDIR), DEFAULT_MODEL)
    return paths.vectors, paths.index, paths.photos


@click.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--token", envvar="SIMILAR_IMAGES_TOKEN", default=None,
              help="Require 'Authorization: Bearer TOKEN' on every API call (env SIMILAR_IMAGES_TOKEN).")
@click.option("--max-upload-mb", default=20.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Largest request body (413 above it).")
@click.option("--max-pixels", default=None, type=click.IntRange(min=1),
              help="Largest image decoded, width x height.  [default: Pillow's cap]")
@click.option("--allow-urls", is_flag=True, help="Accept URL queries (public addresses only).")
@click.option("--allow-private-urls", is_flag=True,
              help="With --allow-urls: also fetch from private/loopback addresses (intranets, tests).")
@click.option("--url-deadline", default=20.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds for a whole URL fetch: connect, headers, body, redirects (504 after).")
@click.option("--max-url-fetches", default=8, show_default=True, type=click.IntRange(min=1),
              help="URL fetches running at once (one thread each); more queries wait.")
@click.option("--allow-writes", is_flag=True, help="Enable POST/DELETE /api/images (needs --token).")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow this origin by CORS; repeatable.")
@click.option("--request-timeout", default=30.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a request may take (503 after).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1),
              help="Most queries per model call (micro-batching).")
@click.option("--batch-wait-ms", default=5.0, show_default=True, type=click.FloatRange(min=0),
              help="How long a batch waits for queries already being decoded.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: one process; ray: Ray Serve with replicas and shards (docs/scale.md).")
@click.option("--replicas", default=None, metavar="N|MIN-MAX", callback=lambda ctx, param, value: _replicas(value),
              help="ray: replicas of the app and of each shard; MIN-MAX: Ray Serve autoscales between them.  "
                   "[default: 1]")
@click.option("--shards", default=None, type=click.IntRange(min=1),
              help="ray: split the index into this many id ranges.  [default: 1]")
@click.option("--batcher", default=None, type=click.Choice(["micro", "serve"]),
              help="ray: micro: the one-process micro-batcher; serve: Ray Serve's @serve.batch.  [default: micro]")
@click.option("--address", default=None, help="ray: none: a local Ray (127.0.0.1); auto or HOST:PORT: that cluster.")
@click.option("--cpus-per-replica", default=None, type=click.FloatRange(min=0.01),
              help="ray: CPUs each replica reserves (fractions share a core).  [default: 1]")
@click.option("--max-staleness", "max_staleness", default=None, type=click.FloatRange(min=0),
              help="ray: seconds a replica may answer from an older state after a write.  [default: 1]")
@click.option("--watch", "watch", default=None, type=click.Path(file_okay=False), metavar="FOLDER",
              help="Make the database follow FOLDER while serving (synced first; created beside it unless "
                   "--vectors): a photo copied there is found seconds later.")
@click.option("--poll", "poll_s", default=None, type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="With --watch: scan the folder every SECONDS instead of listening to file-system events.")
@database_options("image", device=True)
def serve(host, port, token, max_upload_mb, max_pixels, allow_urls, allow_private_urls, url_deadline,
          max_url_fetches, allow_writes, cors_origins, request_timeout, batch_size, batch_wait_ms, engine, replicas,
          shards, batcher, address, cpus_per_replica, max_staleness, watch, poll_s, vectors, index, exact, image_dir, device,
          verbose):
    """Serve the search over HTTP, with a web page at http://HOST:PORT/.

    The API is described at /docs and /openapi.json. Without COCO files in the current
    folder it serves the demo's sample database (run `similar-images demo` first).
    With --engine ray the same app runs on Ray Serve, with --replicas and --shards.
    With --watch FOLDER it serves FOLDER's database and keeps it in step with the folder.
    """
    ray_only = {"--replicas": replicas, "--shards": shards, "--batcher": batcher, "--address": address,
                "--cpus-per-replica": cpus_per_replica, "--max-staleness": max_staleness}
    if engine == "local" and any(value is not None for value in ray_only.values()):
        given = ", ".join(name for name, value in ray_only.items() if value is not None)
        raise click.UsageError(f"{given}: only with --engine ray")
    if poll_s is not None and watch is None:
        raise click.UsageError("--poll needs --watch FOLDER")
    if watch is not None and engine != "local":
        raise click.UsageError("--watch: only with --engine local (one process follows the folder)")
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError
    from similar_images.service.config import DEFAULT_MAX_PIXELS, ServiceConfig
    from similar_images.service.server import serve as run_server

    if watch is not None:
        vectors, image_dir = _synced(watch, None if vectors == DEFAULT_VECTORS["image"] else vectors, device), None
    elif vectors == DEFAULT_VECTORS["image"] and not Path(vectors).exists():
        demo_vectors, demo_index, demo_photos = demo_database()
        if not demo_vectors.exists():
            from similar_images.cli.options import database_hint

            raise click.ClickException(f"{vectors}: no such database ({database_hint('image', vectors)})")
        click.echo(f"note: no COCO vectors here; serving the demo's sample database {demo_vectors}", err=True)
        vectors = str(demo_vectors)
        index = index or (str(demo_index) if demo_index.exists() else None)
        image_dir = image_dir or str(demo_photos)
    try:
        config = ServiceConfig(token=token, max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                               max_pixels=max_pixels or DEFAULT_MAX_PIXELS, allow_urls=allow_urls,
                               allow_private_urls=allow_private_urls, url_deadline=url_deadline,
                               max_url_fetches=max_url_fetches, allow_writes=allow_writes,
                               cors_origins=tuple(cors_origins), request_timeout=request_timeout,
                               batch_size=batch_size, batch_wait_ms=batch_wait_ms)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        db = open_from_options("image", vectors, index, exact, image_dir, device=device)
        click.echo(f"similar-images: {len(db)} images; loading the model...", err=True)
        if engine == "ray":
            serve_ray(db, config, host=host, port=port, replicas=replicas or (1, None), shards=shards or 1, address=address,
                      cpus_per_replica=cpus_per_replica or 1.0, max_staleness=max_staleness, device=device,
                      batcher=batcher or "micro")
            return
        click.echo(f"serving on http://{host}:{port}/  (Ctrl-C stops)", err=True)
        run_server(db, config, host=host, port=port, log_level="info" if verbose else "warning", watch=watch,
                   poll_s=poll_s)
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _replicas(value: str | None) -> tuple[int, int | None] | None:
    """``--replicas N`` or ``MIN-MAX``, refused in one line before anything opens."""
    if value is None:
        return None
    from similar_images.serving.spec import parse_replicas

    try:
        return parse_replicas(value)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _synced(folder: str, vectors: str | None, device: str) -> str:
    """Sync ``folder`` once before serving (creating its database); the vectors path."""
    from similar_images.errors import SimilarImagesError
    from similar_images.sync import sync_folder

    try:
        report = sync_folder(folder, vectors, device=device)
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary(), err=True)
    return str(report.vectors)


def serve_ray(db, config, *, host, port, replicas, shards, address, cpus_per_replica, max_staleness, device,
              batcher="micro") -> None:
    """The same app on Ray Serve (``similar_images.serving``), until Ctrl-C."""
    from similar_images.service.server import is_loopback
    from similar_images.serving.launch import serve_on_ray
    from similar_images.serving.spec import DEFAULT_MAX_AGE_S, ServingSpec, shard_ranges

    if not is_loopback(host) and not config.token:
        click.echo(f"warning: serving on {host} without --token: anyone who can reach this port can search", err=True)
    try:
        least, most = replicas
        spec = ServingSpec(str(db.database.vectors_path), None if db.database.index_path is None else
                           str(db.database.index_path), str(db.image_dir), config, replicas=least,
                           max_replicas=most, shards=shards,
                           ranges=shard_ranges(db.database.id_count, shards), cpus_per_replica=cpus_per_replica,
                           max_age_s=DEFAULT_MAX_AGE_S if max_staleness is None else max_staleness, device=device,
                           batcher=batcher)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"starting Ray Serve: {spec.describe_replicas()} replica(s), {shards} shard(s)...", err=True)
    serve_on_ray(spec, host=host, port=port, address=address,
                 on_ready=lambda url: click.echo(f"serving on {url}/  (Ctrl-C stops)", err=True))
