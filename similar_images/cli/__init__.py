"""The ``similar-images`` command.

Each subcommand lives in its own module of this package and is imported only when it
is run (Click's lazy-group pattern), so ``similar-images --help`` starts fast and a
heavy import (TensorFlow, torch) is paid only by the commands that need it.
Commands parse and check their arguments, then call the package; they hold no logic.
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys

import click

ERROR_PREFIX = "error: "
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def run_main(command: click.Command, super_main, args, kwargs):
    """Run a command the way every entry point does: one error line, the right exit code.

    Our errors and Click's usage errors alike print ``error: ...`` (usage errors after
    the usage line), Ctrl-C prints ``error: interrupted``; log records go through tqdm
    so they never break a progress bar.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    kwargs["standalone_mode"] = False
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    ours = logging.getLogger("similar_images")
    level, _VERBOSE[0] = ours.level, False  # -v of one in-process call must not leak into the next
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger()]):
            code = super_main(*args, **kwargs)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        if exc.ctx is not None:
            click.echo(exc.ctx.get_usage(), err=True)
            click.echo(f"Try '{exc.ctx.command_path} --help' for help.", err=True)
        click.echo(ERROR_PREFIX + exc.format_message(), err=True)
        code = exc.exit_code
    except click.ClickException as exc:
        click.echo(ERROR_PREFIX + exc.format_message(), err=True)
        code = exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        click.echo(ERROR_PREFIX + "interrupted", err=True)
        code = 130
    except Exception as exc:  # noqa: BLE001  a fault outside the group's handler (root scripts)
        try:
            fail(describe_fault(exc), exc)
        except click.exceptions.Exit as done:
            code = done.exit_code
    finally:
        ours.setLevel(level)
    sys.exit(code if isinstance(code, int) else 0)


class Command(click.Command):
    """A command that is also an entry point of its own (the root scripts)."""

    def main(self, *args, **kwargs):
        return run_main(self, super().main, args, kwargs)


# command name -> "module:attribute" (a click.Command)
COMMANDS: dict[str, str] = {
    "extract": "similar_images.cli.extract:extract",
    "build": "similar_images.cli.build:build",
    "search": "similar_images.cli.search:search",
    "add": "similar_images.cli.add:add",
    "remove": "similar_images.cli.remove:remove",
    "demo": "similar_images.cli.demo:demo",
    "text": "similar_images.cli.text:text",
    "evaluate": "similar_images.cli.evaluate:evaluate",
    "serve": "similar_images.cli.serve:serve",
    "duplicates": "similar_images.cli.duplicates:duplicates",
    "verify": "similar_images.cli.verify:verify",
    "compact": "similar_images.cli.compact:compact",
    "migrate": "similar_images.cli.compact:migrate",
    "sync": "similar_images.cli.sync:sync",
    "watch": "similar_images.cli.sync:watch",
    "import": "similar_images.cli.importing:import_vectors",
}

# What `similar-images --help` says of each command, whole (Click would cut the docstrings'
# first sentences with "..." to fit), without importing the command modules.
SUMMARIES: dict[str, str] = {
    "extract": "Extract a feature vector for every image of a file list.",
    "build": "Build the Faiss index that `search` uses.",
    "search": "The images most similar to each IMAGE (file or URL), with what each score means.",
    "add": "Add image files, or every image in given folders, to a database.",
    "remove": "Remove images, by path or by name as in the manifest.",
    "demo": "Build a sample database from offline photos, search it, show the results.",
    "text": "Search short texts (tweets) by meaning.",
    "evaluate": "How good are a database's results? Reports as text, JSON and PNG.",
    "serve": "Serve the search over HTTP: a web page, a JSON API and its docs.",
    "duplicates": "Group the near-duplicate and byte-identical images of a database.",
    "verify": "Check every file of a database: checksums, values, and that they belong together.",
    "sync": "Make a database follow a folder of images: one command from a folder to a search.",
    "watch": "Sync a folder now and whenever it changes (file-system events or periodic scans).",
    "import": "Create a database from vectors computed elsewhere (.npy) and a names file.",
}

# Set by -v (``setup_logging``): the top-level handler then shows the traceback.
_VERBOSE = [False]


class LazyGroup(click.Group):
    def main(self, *args, **kwargs):
        return run_main(self, super().main, args, kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUMMARIES.get(name) or self.get_command(ctx, name).get_short_help_str(limit=200))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        """Run the command; any fault becomes one line ``error: ...`` and exit code 1.

        Usage errors keep Click's usage message; ``-v`` adds the traceback.
        """
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.UsageError):
            raise
        except click.ClickException as exc:
            fail(exc.format_message(), exc, whole=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001  the one place a fault becomes a line for a person
            fail(describe_fault(exc), exc)


def run_script(command: click.Command, prog_name: str) -> None:
    """Run one command as a root script with the same one-line faults as ``similar-images``."""
    try:
        command.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _exit_after(lambda message, e: fail(message, e, whole=True), exc.format_message(), exc)
    except Exception as exc:  # noqa: BLE001  as in LazyGroup.invoke
        _exit_after(fail, describe_fault(exc), exc)


def _exit_after(report, message: str, exc: BaseException) -> None:
    try:
        report(message, exc)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)


def describe_fault(exc: BaseException) -> str:
    """One line for a fault: our errors as written, OS errors with their file, others by type."""
    from similar_images.errors import SimilarImagesError

    if isinstance(exc, SimilarImagesError | ValueError | FileExistsError):
        return str(exc)
    if isinstance(exc, OSError):
        what = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{what}"
    if isinstance(exc, EOFError):
        return f"unexpected end of a file ({exc})"
    return f"unexpected {type(exc).__name__}: {exc} (run with -v for the details)"


def fail(message: str, exc: BaseException, *, whole: bool = False) -> None:
    """Print ``error: message`` (a foreign error's first line only; ours as written) and exit 1."""
    if _VERBOSE[0]:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    text = message.strip() or type(exc).__name__
    click.echo(f"error: {text if whole else text.splitlines()[0]}", err=True)
    raise click.exceptions.Exit(1)


@click.group(cls=LazyGroup)
@click.version_option(package_name="similar-images")
def main() -> None:
    """Find the most similar images (and short texts) in a collection."""


def setup_logging(verbose: bool) -> None:
    """Log to stderr: warnings by default, this package's details with -v.

    Other libraries stay at WARNING even with -v: their debug output (matplotlib, PIL,
    urllib3...) would bury ours.
    """
    _VERBOSE[0] = bool(verbose)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    if verbose:
        logging.getLogger("similar_images").setLevel(logging.DEBUG)
    else:
        import os

        # TensorFlow's C++ start-up lines (CUDA probing on a CPU-only machine, oneDNN
        # notes) are not ours to show unless asked; its Python errors still surface.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
