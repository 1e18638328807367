"""``similar-images sync FOLDER`` and ``similar-images watch FOLDER``: a database that follows a folder."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import click

from similar_images.cli import setup_logging
from similar_images.features import MODELS


def folder_options(command):
    """The options ``sync`` and ``watch`` share."""
    options = [
        click.argument("folder", type=click.Path(file_okay=False)),
        click.option("--vectors", default=None, type=click.Path(dir_okay=False),
                     help="The database's vectors file.  [default: beside the folder: FOLDER.saved_predictions.npy]"),
        click.option("--model", default="efficientnet-lite0", show_default=True, type=click.Choice(sorted(MODELS)),
                     help="Feature model of a database created now (an existing one keeps its own)."),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]),
                     help="Where the model runs; auto: cuda when torch sees a GPU."),
        click.option("-b", "--batch-size", default=32, show_default=True, type=click.IntRange(min=1),
                     help="Images per model call."),
        click.option("--commit-every", default=256, show_default=True, type=click.IntRange(min=1),
                     help="Images embedded per committed batch (an interruption loses at most one)."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bars."),
        click.option("-v", "--verbose", is_flag=True, help="Log details."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command(name="sync")
@folder_options
@click.option("--dry-run", is_flag=True, help="List what would change (changed files are hashed); write nothing.")
def sync(folder, vectors, model, device, batch_size, commit_every, no_progress, verbose, dry_run):
    """Make the database follow FOLDER: new images are added, deleted ones removed, changed ones
    re-embedded, moved or renamed ones renamed (no model run).

    The first sync creates the database (EfficientNet-Lite0 unless --model); later ones
    compare each file's size and modification time with the database and read only the
    files that differ, so a sync of an unchanged folder loads no model. Images are files
    ending in .jpg, .jpeg, .png, .bmp, .gif, .webp, .tif or .tiff (any case), hidden ones
    and symbolic links left out. It can be stopped at any moment (Ctrl-C, kill -9): the
    next sync continues. Exit code 1 if some files were skipped (listed, retried next time).
    """
    setup_logging(verbose)
    from similar_images.errors import SimilarImagesError
    from similar_images.sync import sync_folder

    try:
        report = sync_folder(folder, vectors, model=model, device=device, batch_size=batch_size,
                             commit_every=commit_every, dry_run=dry_run, show_progress=not no_progress)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; the batches committed are kept: run the same sync to continue") \
            from None
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if dry_run:
        for line in report.plan.lines():
            click.echo(line)
    _echo_report(report)
    if not dry_run:
        click.echo(f"next: {search_command(report.vectors)}")
    if report.skipped:
        raise click.exceptions.Exit(1)


def _echo_report(report) -> None:
    from similar_images.cli.add import skip_reason

    click.echo(report.summary())
    for item in report.skipped:
        click.echo(f"skipped {skip_reason(item)}", err=True)


def search_command(vectors: Path) -> str:
    """The search command for a synced database (``--vectors`` only where ``search`` needs it)."""
    from similar_images.cli.options import only_database_here

    words = ["similar-images", "search"]
    here = only_database_here()
    if here is None or here.resolve() != Path(vectors).resolve():
        words += ["--vectors", shlex.quote(str(vectors))]
    return " ".join(words + ["photo.jpg"])


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command(name="watch")
@folder_options
@click.option("--poll", "poll_s", default=None, type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Scan the folder every SECONDS instead of listening to file-system events (network "
                   "filesystems).  [default: events; a scan every 10 s where events are not available]")
def watch(folder, vectors, model, device, batch_size, commit_every, no_progress, verbose, poll_s):
    """Sync FOLDER now, then again whenever it changes, until Ctrl-C.

    Changes are noticed through file-system events (inotify on Linux, by watchdog) and
    synced in one batch once the folder is quiet for a second (at most 5 s after the
    first change); files written under a temporary name and renamed are seen under
    their final name. See `sync` for what a sync does.
    """
    setup_logging(verbose)
    import threading

    from similar_images.errors import SimilarImagesError
    from similar_images.sync import FolderWatcher, sync_folder

    holder: dict = {}

    def run(progress: bool):
        report = sync_folder(folder, vectors, model=model, device=device, batch_size=batch_size,
                             commit_every=commit_every, extractor=holder.get("model"), show_progress=progress)
        if report.extractor is not None:  # built once, kept for the next syncs
            holder["model"] = report.extractor
        return report

    def synced(report) -> None:
        if not report.plan.empty or report.skipped:
            _echo_report(report)

    try:
        first = run(not no_progress)
    except (SimilarImagesError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    _echo_report(first)
    click.echo(f"search it: {search_command(first.vectors)}")
    watcher = FolderWatcher(folder, lambda: run(False), poll_s=poll_s, on_synced=synced).start()
    click.echo(f"watching {folder} ({'events' if watcher.mode == 'events' else f'a scan every {watcher.poll_s:g} s'}); "
               "Ctrl-C stops", err=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends it as Ctrl-C does
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        watcher.stop()
    click.echo("stopped", err=True)

