"""Text encoding throughput (texts/s) of ``similar-images text build`` on a 20,000-line corpus.

Usage::

    python benchmarks/text_encoding.py                 # generated 20,000-line corpus
    python benchmarks/text_encoding.py --csv tweets.csv --column text   # the Sentiment140 sample

Without ``--csv`` it writes a reproducible tweet-like corpus (5 to 30 words a line,
average about 14, mixing the built-in sentences with random vocabulary) to the output
folder, then runs the same code as ``similar-images text build`` (encoding, vectors,
index) and one search, and prints texts/s with the machine it ran on.
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

from _machine import machine_line

WORDS = (
    "today tomorrow love hate work school home friends family game music movie phone laptop coffee tea rain sun "
    "beach city train bus car late early happy sad tired excited bored hungry sleep dream night morning weekend "
    "monday party birthday dinner lunch pizza cake dog cat bird garden walk run gym team win lose match exam "
    "class teacher boss job money shopping new old best worst really very so just still never always maybe lol "
    "omg thanks please sorry wait going watching reading listening playing cooking working waiting missing"
).split()


def make_corpus(path: Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` tweet-like lines to a CSV with a ``text`` column."""
    from similar_images.text.corpus import BUILTIN_TEXTS

    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(n):
            words = rng.choice(BUILTIN_TEXTS).split() + rng.choices(WORDS, k=rng.randint(0, 22))
            rng.shuffle(words)
            writer.writerow([i, " ".join(words[: rng.randint(5, 30)]) + f" #{i}"])
    return path


def machine() -> str:
    return machine_line()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", help="corpus CSV (default: generate one)")
    parser.add_argument("--column", default="text")
    parser.add_argument("-n", type=int, default=20_000, help="lines of the generated corpus")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--out", help="folder for the corpus and database (default: a temporary one)")
    args = parser.parse_args()

    from similar_images.text.build import build_text_database
    from similar_images.text.database import TextDatabase

    out = Path(args.out or tempfile.mkdtemp(prefix="text-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    source = Path(args.csv) if args.csv else make_corpus(out / "corpus.csv", args.n)
    print(f"machine: {machine()}")
    print(f"corpus: {source} ({'given' if args.csv else 'generated'})")
    started = time.perf_counter()
    summary = build_text_database(
        source, column=args.column, vectors=out / "corpus.npy", index=out / "corpus.faiss.index",
        model=args.model, batch_size=args.batch_size, force=True, show_progress=False,
    )
    total = time.perf_counter() - started
    db = TextDatabase.open(out / "corpus.npy", out / "corpus.faiss.index")
    queries = ["going to the beach this weekend", "my laptop crashed again", "happy birthday sister",
               "stuck in traffic on the way to work", "the match last night was amazing"]
    latencies = []
    for query in queries * 2:
        t0 = time.perf_counter()
        results = db.search(query, k=8)
        latencies.append((time.perf_counter() - t0) * 1000)
    search_ms = sorted(latencies[1:])[len(latencies[1:]) // 2]  # median, the first (warm-up) left out
    print(f"texts: {summary['count']}, model: {args.model}, batch size: {args.batch_size}")
    print(f"encoding: {summary['encode_seconds']:.1f} s, {summary['texts_per_s']:.1f} texts/s")
    print(f"whole build (read, encode, save, index): {total:.1f} s; index: {summary['index_type']}")
    print(f"one search (encode query + index + re-rank), median of {len(latencies) - 1}: {search_ms:.1f} ms "
          f"(first: {latencies[0]:.0f} ms)")
    print(f"top result for {queries[-1]!r}: {results[0].text!r} ({results[0].score:.3f})")


if __name__ == "__main__":
    main()
