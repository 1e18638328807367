"""Text corpora: the Sentiment140 tweets, and a small built-in corpus.

:func:`download` fetches the Sentiment140 archive (``trainingandtestdata.zip``, about
81 MB, from its authors' site) into a ``.part`` file that a rerun continues with an HTTP
range request, and renames it into place once complete. :func:`sample_tweets` takes a
reproducible random sample of N tweets (seeded) from the archive's training CSV
(Latin-1, no header: ``polarity,id,date,query,user,text``) and writes a UTF-8 CSV with a
header, ready for ``similar-images text build CSV --column text``.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

from similar_images.errors import SimilarImagesError
from similar_images.fileio.files import atomic_path, fsync_dir

log = logging.getLogger(__name__)

SENTIMENT140_URL = "http://cs.stanford.edu/people/alecmgo/trainingandtestdata.zip"
DEFAULT_ZIP = "trainingandtestdata.zip"
DEFAULT_CSV = "tweets.csv"
DEFAULT_SAMPLE_SIZE = 20_000
COLUMNS = ("polarity", "id", "date", "query", "user", "text")


class DownloadError(SimilarImagesError):
    """The corpus could not be downloaded."""


def download(
    url: str = SENTIMENT140_URL,
    dest: str | os.PathLike = DEFAULT_ZIP,
    *,
    timeout: float = 30,
    show_progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, continuing an interrupted download.

    Bytes go to ``<dest>.part``; if it exists, the request asks for the rest only
    (``Range``), and starts over if the server ignores that. ``dest`` appears only when
    the whole file has arrived.

    Raises:
        DownloadError: bad URL scheme, HTTP error, timeout or connection failure.
    """
    from tqdm.auto import tqdm

    if not url.lower().startswith(("http://", "https://")):
        raise DownloadError(f"{url}: only http:// and https:// URLs can be downloaded")
    dest = Path(dest)
    part = Path(str(dest) + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:
                log.warning("%s does not continue downloads: starting over", url)
                have = 0
            total = _content_length(response)
            with open(part, "ab" if have else "wb") as out, tqdm(
                total=total + have if total is not None else None, initial=have, unit="B",
                unit_scale=True, desc=dest.name, disable=not show_progress,
            ) as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part file is complete
            log.info("%s: already complete", part)
        else:
            raise DownloadError(f"{url}: HTTP error {exc.code} {exc.reason}") from None
    except TimeoutError:
        raise DownloadError(f"{url}: timed out after {timeout:g} s (rerun to continue)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: download failed ({reason}); rerun to continue") from None
    os.replace(part, dest)
    fsync_dir(dest.parent)
    return dest


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _training_member(archive: zipfile.ZipFile) -> str:
    names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
    if not names:
        raise DownloadError(f"{archive.filename}: no CSV file in the archive")
    training = [n for n in names if Path(n).name.lower().startswith("training")]
    return (training or sorted(names, key=lambda n: archive.getinfo(n).file_size))[-1]


def _tweet_rows(zip_path: str | os.PathLike) -> Iterator[list[str]]:
    """The well-formed rows (6 fields) of the archive's training CSV."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            member = _training_member(archive)
            with archive.open(member) as raw:
                text = io.TextIOWrapper(raw, encoding="latin-1", newline="")
                for row in csv.reader(text):
                    if len(row) == len(COLUMNS):
                        yield row
    except FileNotFoundError:
        raise DownloadError(f"{zip_path}: archive not found") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{zip_path}: not a readable zip archive ({exc}); delete it and download again") from None


def sample_tweets(
    zip_path: str | os.PathLike,
    output: str | os.PathLike = DEFAULT_CSV,
    *,
    n: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    show_progress: bool = False,
) -> dict:
    """Write a reproducible random sample of ``n`` tweets to a UTF-8 CSV (atomically).

    The same archive, ``n`` and ``seed`` always give the same rows, in archive order.
    HTML entities in the tweets (``&amp;``, ``&quot;``) are decoded.

    Returns:
        ``{"output", "count", "total", "seed"}``.

    Raises:
        ValueError: ``n`` is not positive or larger than the number of tweets.
        DownloadError: the archive is missing or unreadable.
    """
    import numpy as np
    from tqdm.auto import tqdm

    if n < 1:
        raise ValueError(f"sample size must be at least 1, got {n}")
    rows = tqdm(_tweet_rows(zip_path), unit="tweet", desc="counting", disable=not show_progress)
    total = sum(1 for _ in rows)
    if n > total:
        raise ValueError(f"asked for {n} tweets but {zip_path} holds only {total}")
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    wanted = iter(chosen.tolist())
    target = next(wanted, None)
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        source = _tweet_rows(zip_path)
        rows = tqdm(source, total=int(chosen[-1]) + 1, unit="tweet", desc="sampling", disable=not show_progress)
        for position, row in enumerate(rows):
            if position == target:
                writer.writerow(row[:-1] + [html.unescape(row[-1])])
                target = next(wanted, None)
                if target is None:
                    break
        rows.close()
        source.close()  # closes the archive
    log.info("wrote %d of %d tweets to %s (seed %d)", n, total, output, seed)
    return {"output": str(output), "count": n, "total": total, "seed": seed}


def prepare_tweets(
    output: str | os.PathLike = DEFAULT_CSV,
    *,
    url: str = SENTIMENT140_URL,
    zip_path: str | os.PathLike = DEFAULT_ZIP,
    n: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    force: bool = False,
    show_progress: bool = True,
) -> dict:
    """Download the archive unless ``zip_path`` exists, then sample it to ``output``.

    Raises:
        FileExistsError: ``output`` exists and ``force`` is false.
    """
    if Path(output).exists() and not force:
        raise FileExistsError(f"{output} exists; use --force to replace it")
    if not Path(zip_path).exists():
        download(url, zip_path, show_progress=show_progress)
    return sample_tweets(zip_path, output, n=n, seed=seed, show_progress=show_progress)


# A small corpus for the notebook and the demo when the tweets have not been downloaded:
# four topics, with paraphrases, so a search shows what "similar" means.
BUILTIN_TEXTS = [
    "I love sunny days at the beach",
    "Spending the afternoon on the sand by the sea, so happy",
    "The weather is gorgeous today, perfect for a swim",
    "It has been raining all day and I am soaked",
    "Stuck at home because of the storm again",
    "Grey skies and drizzle, what a gloomy morning",
    "My laptop crashed and I lost all my work",
    "The computer froze right before I saved the file",
    "New phone arrived today, the camera is amazing",
    "Can't get the wifi to work, so annoying",
    "Just finished a 10k run, legs are tired but I feel great",
    "Went jogging in the park this morning",
    "Our team won the football match last night!",
    "Watching the game with friends, what a goal",
    "Baked chocolate chip cookies for the first time",
    "This pizza is the best I have ever eaten",
    "Cooking pasta for dinner tonight",
    "Starving, can't wait for lunch",
    "Exams tomorrow and I haven't studied at all",
    "Finally graduated from university, so proud",
    "Homework is due at midnight and I'm not done",
    "Missing my best friend who moved away",
    "Had a wonderful evening with my family",
    "Happy birthday to my little sister!",
    "My flight got delayed by three hours",
    "Off to Paris for the weekend, can't wait",
    "Packing my bags for the summer holiday",
    "I have a terrible headache today",
    "Feeling sick, staying in bed with a cold",
    "Listening to my favourite band on repeat",
    "That concert last night was incredible",
    "Monday morning again, I need more coffee",
    "Traffic on the way to work was horrible",
    "My cat keeps sleeping on my keyboard",
    "Took the dog for a long walk in the woods",
]


def builtin_database(*, index_type: str = "flat"):
    """A text database (:class:`~similar_images.text.database.TextDatabase`) of
    :data:`BUILTIN_TEXTS`, in a temporary folder.

    For the notebook and tests when the tweets have not been downloaded; the folder is
    deleted when the database object is.
    """
    import tempfile

    from similar_images.text.build import build_text_database
    from similar_images.text.database import TextDatabase

    folder = tempfile.TemporaryDirectory(prefix="similar-images-text-")
    csv_path = Path(folder.name) / "builtin.csv"
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in BUILTIN_TEXTS)
    summary = build_text_database(csv_path, index_type=index_type, show_progress=False)
    db = TextDatabase.open(summary["vectors"], summary["index"])
    db._folder = folder  # keeps the files alive as long as the database
    return db
