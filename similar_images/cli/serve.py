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
@database_options("image", device=True)
def serve(host, port, token, max_upload_mb, max_pixels, allow_urls, allow_private_urls, url_deadline,
          max_url_fetches, allow_writes, cors_origins, request_timeout, batch_size, batch_wait_ms, vectors, index,
          exact, image_dir, device, verbose):
    """Serve the search over HTTP, with a web page at http://HOST:PORT/.

    The API is described at /docs and /openapi.json. Without COCO files in the current
    folder it serves the demo's sample database (run `similar-images demo` first).
    """
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError
    from similar_images.service.config import DEFAULT_MAX_PIXELS, ServiceConfig
    from similar_images.service.server import serve as run_server

    if vectors == DEFAULT_VECTORS["image"] and not Path(vectors).exists():
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
        click.echo(f"serving on http://{host}:{port}/  (Ctrl-C stops)", err=True)
        run_server(db, config, host=host, port=port, log_level="info" if verbose else "warning")
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
