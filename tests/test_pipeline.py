"""pipeline.py: requests in flight across batches, order and values, errors, time breakdown."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _extract_data import BAD, PixelExtractor, make_collection

from similar_images.errors import ImageError
from similar_images.extract import run_extraction
from similar_images.jobs import time_summary
from similar_images.pipeline import Timer, embed_decoded, embed_stream


class StreamingPixels(PixelExtractor):
    """PixelExtractor with the asynchronous interface; records submits and collects."""

    def __init__(self, fail_at: int | None = None, fail_prepare: bool = False):
        super().__init__()
        self.events: list[tuple[str, int]] = []
        self.batch_sizes: list[int] = []
        self.fail_at, self.fail_prepare = fail_at, fail_prepare
        self.drained = False
        self.prepare_threads: set[str] = set()

    def prepare(self, batch):
        self.prepare_threads.add(threading.current_thread().name)
        if self.fail_prepare:
            raise RuntimeError("prepare broke")
        return batch.astype(np.float32) * 2  # (n, 4, 4, 3) float32

    def stream(self):
        owner = self

        class Stream:
            def __init__(self):
                self.queue, self.submitted, self.collected = [], 0, 0

            @property
            def pending(self):
                return len(self.queue)

            def submit(self, prepared):
                owner.events.append(("submit", self.submitted))
                owner.batch_sizes.append(len(prepared))
                self.queue.append(prepared)
                self.submitted += 1

            def collect(self):
                if self.collected == owner.fail_at:
                    raise RuntimeError("the model broke")
                owner.events.append(("collect", self.collected))
                self.collected += 1
                return self.queue.pop(0).reshape(-1, 48) / 2

            def drain(self):
                owner.drained = True

        return Stream()


def _images(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(count)]


def _chunks(images, sizes, bad=()):
    """Chunks of (name, image or ImageError) pairs; the names in ``bad`` are unreadable."""
    pairs = [(f"img{i}", ImageError(f"img{i}: corrupt", "corrupt") if i in bad else im)
             for i, im in enumerate(images)]
    out, start = [], 0
    for size in sizes:
        out.append(pairs[start : start + size])
        start += size
    return out


def test_next_batch_is_submitted_before_the_previous_is_collected():
    extractor = StreamingPixels()
    results = list(embed_stream([iter(c) for c in _chunks(_images(40), [24, 16])], extractor, batch_size=4))
    events = extractor.events
    submits = [i for kind, i in events if kind == "submit"]
    assert submits == list(range(10))  # 6 batches + 4 batches, in order
    for k in range(9):  # across the chunk boundary too
        assert events.index(("submit", k + 1)) < events.index(("collect", k))
    assert [len(r.names) for r in results] == [24, 16]
    assert extractor.prepare_threads == {"prepare"}  # preprocessing off the model's thread


@pytest.mark.parametrize("make", [StreamingPixels, PixelExtractor])
def test_order_values_and_skips_equal_the_synchronous_path(make):
    images = _images(30, seed=1)
    bad = {0, 7, 8, 21, 29}
    extractor = make()
    timer = Timer()
    results = list(embed_stream([iter(c) for c in _chunks(images, [13, 10, 7], bad)], extractor,
                                batch_size=4, timer=timer))
    for result, chunk in zip(results, _chunks(images, [13, 10, 7], bad), strict=True):
        good = [(n, im) for n, im in chunk if not isinstance(im, ImageError)]
        assert result.names == [n for n, _ in good]
        expected = np.stack([im for _, im in good]).reshape(len(good), -1).astype(np.float32)
        np.testing.assert_array_equal(result.vectors, expected)
        assert [s["path"] for s in result.skipped] == [n for n, im in chunk if isinstance(im, ImageError)]
    assert timer.images == 25
    if make is StreamingPixels:  # batches of 4 good images, never across a chunk's end
        assert extractor.batch_sizes == [4, 4, 2, 4, 4, 1, 4, 2]  # 10, 9 and 6 good images
    single = embed_decoded(iter(_chunks(images, [13], bad)[0]), make(), batch_size=4)  # the Ray actors' call
    np.testing.assert_array_equal(single.vectors, results[0].vectors)


def test_a_chunk_of_only_bad_images_and_an_empty_chunk():
    results = list(embed_stream([iter(c) for c in _chunks(_images(6), [3, 0, 3], bad={0, 1, 2})],
                                StreamingPixels(), batch_size=2))
    assert [(len(r.names), len(r.skipped)) for r in results] == [(0, 3), (0, 0), (3, 0)]
    assert results[0].vectors.shape == (0, 48)


@pytest.mark.parametrize("where", ["model", "prepare"])
def test_a_failure_stops_the_run_and_keeps_finished_chunks(tmp_path, where):
    file_list, folder, names = make_collection(tmp_path, noise_images=30, bad=False)
    extractor = StreamingPixels(fail_at=5) if where == "model" else StreamingPixels(fail_prepare=True)
    with pytest.raises(RuntimeError, match="broke"):
        run_extraction(file_list, folder, tmp_path / "v.npy", extractor, batch_size=2, chunk_batches=2,
                       show_progress=False)
    left = [t.name for t in threading.enumerate() if t.name.startswith(("prepare", "decode"))]
    assert left == []  # no preparation or decode thread left running
    assert extractor.drained  # no request left running
    assert not (tmp_path / "v.npy").exists()
    if where == "model":  # chunks 0 and 1 (batches 0-3) were saved: a resume continues from them
        manifest = run_extraction(file_list, folder, tmp_path / "v.npy", StreamingPixels(), batch_size=2,
                                  chunk_batches=2, resume=True, show_progress=False)
        assert manifest["timings"]["resumed_chunks"] == 2


def test_run_summary_says_where_the_time_went(tmp_path):
    file_list, folder, names = make_collection(tmp_path, noise_images=10)
    manifest = run_extraction(file_list, folder, tmp_path / "v.npy", StreamingPixels(), batch_size=4,
                              show_progress=False)
    timings = manifest["timings"]
    assert timings["images_this_run"] == manifest["count"] == len(names) - len(BAD) + 1  # huge.png loads
    assert timings["decode_s"] > 0 and timings["preprocess_s"] >= 0 and timings["input_wait_s"] >= 0
    assert 0 < timings["decode_cpu_s"] <= 1.05 * timings["decode_s"] + 0.01  # a thread's CPU time <= its wall time
    line = time_summary(manifest)
    assert line.startswith("time: model ") and "input wait" in line and "write" in line
    assert "decode" in line and "ms/image" in line and "preprocess" in line
    assert time_summary({"timings": {"images_this_run": 3}}) is None  # Ray and old manifests
    starved = {**timings, "input_wait_s": 0.2 * timings["elapsed_s"]}
    assert "is the limit; more --workers may help" in time_summary({"timings": starved})
    fed = {**timings, "input_wait_s": 0.01 * timings["elapsed_s"]}
    assert "--workers" not in time_summary({"timings": fed})


def test_requests_are_full_whatever_b_and_one_batch_per_request_is_in_flight():
    extractor = StreamingPixels()
    extractor.batch_size = 4  # the tuned request size
    real_stream = extractor.stream

    def stream():
        s = real_stream()
        s.depth = 3  # three requests
        return s

    extractor.stream = stream
    images = _images(22)
    results = list(embed_stream([iter(c) for c in _chunks(images, [14, 8])], extractor, batch_size=3))
    assert extractor.batch_sizes == [4, 4, 4, 2, 4, 4]  # -b 3 -> whole requests of 4, not across chunks
    assert [e[0] for e in extractor.events[:4]] == ["submit"] * 3 + ["collect"]
    np.testing.assert_array_equal(np.concatenate([r.vectors for r in results]),
                                  np.stack(images).reshape(22, -1).astype(np.float32))
