"""openvino_requests.py and speeds.tuned_setting: requests in flight, compile cache, tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from similar_images.models import speeds
from similar_images.models.openvino_requests import RequestStream, compile_model, requests_for


class FakeRequest:
    """An OpenVINO infer request that records when it is started and waited for."""

    def __init__(self, number: int, log: list):
        self.number, self.log, self.output = number, log, None

    def start_async(self, inputs):
        self.log.append(("start", self.number, float(inputs[0][0, 0])))
        self.output = inputs[0] * 10

    def wait(self):
        self.log.append(("wait", self.number))

    def get_output_tensor(self, index):
        return type("Tensor", (), {"data": self.output})()


class FakeCompiled:
    def __init__(self, optimal: int):
        self.optimal, self.log = optimal, []

    def get_property(self, name):
        assert name == "OPTIMAL_NUMBER_OF_INFER_REQUESTS"
        return self.optimal

    def create_infer_request(self):
        return FakeRequest(len(self.log), self.log) if not self.log.append(None) else None


def test_latency_still_gets_two_requests():
    assert len(requests_for(FakeCompiled(1))) == 2  # one queued while the other runs
    assert len(requests_for(FakeCompiled(4))) == 4


def test_next_batch_starts_before_the_previous_is_collected():
    log: list = []
    stream = RequestStream([FakeRequest(0, log), FakeRequest(1, log)], batch_size=8)
    batches = [np.full((8, 2), k, np.float32) for k in range(4)]
    out = []
    stream.submit(batches[0])
    for k in range(1, 4):
        waits = sum(1 for e in log if e[0] == "wait")
        stream.submit(batches[k])  # batch k is started before batch k-1 is collected
        assert [e[2] for e in log if e[0] == "start"][-1] == float(k)
        assert waits == k - 1  # ... and while it still runs (nobody waited for it)
        out.append(stream.collect())
    out.append(stream.collect())
    assert [e[0] for e in log[:3]] == ["start", "start", "wait"]  # two requests in flight at once
    assert stream.depth == 3  # a third batch waits in submit() for the first request to finish
    for k, vectors in enumerate(out):
        np.testing.assert_array_equal(vectors, batches[k] * 10)  # oldest first, its own outputs
    assert stream.pending == 0


def test_a_batch_larger_than_the_requests_is_cut_into_pieces_in_order():
    log: list = []
    stream = RequestStream([FakeRequest(0, log), FakeRequest(1, log)], batch_size=3)
    images = np.arange(20, dtype=np.float32).reshape(10, 2)  # pieces of 3, 3, 3, 1
    stream.submit(images)
    np.testing.assert_array_equal(stream.collect(), images * 10)
    assert sum(1 for e in log if e[0] == "start") == 4


def _tiny_model():
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([-1, 8], np.float32)
    weights = ops.constant(np.linspace(-1, 1, 32, dtype=np.float32).reshape(8, 4))
    return ov.Model([ops.relu(ops.matmul(x, weights, False, False))], [x])


def test_compiles_are_served_from_the_cache(tmp_path):
    import openvino as ov

    ov.save_model(_tiny_model(), tmp_path / "model.xml")  # as a cached INT8 model is read
    first = compile_model(ov.Core().read_model(tmp_path / "model.xml"), cache_dir=tmp_path / "cache")
    blobs = list((tmp_path / "cache" / "openvino-compiled").iterdir())
    assert blobs and not first.get_property("LOADED_FROM_CACHE")
    second = compile_model(ov.Core().read_model(tmp_path / "model.xml"), cache_dir=tmp_path / "cache")
    assert second.get_property("LOADED_FROM_CACHE")
    x = np.random.default_rng(0).random((3, 8), dtype=np.float32)
    np.testing.assert_allclose(second(x)[0], first(x)[0])


# --- tuning -------------------------------------------------------------------------------

DESC = {"name": "m", "runtime": "openvino", "precision": "int8"}


def _fake_timer(rates: dict, calls: list):
    """``rates[setting]``: the images/s it gives on its 1st, 2nd, ... timing (the last repeats)."""
    def timer(hint, batch, first):
        seen = sum(1 for c in calls if c[:2] == (hint, batch))
        calls.append((hint, batch, first))
        values = rates[hint, batch]
        return values[min(seen, len(values) - 1)]
    return timer


def counts_of(calls):
    return {s: sum(1 for c in calls if c[:2] == s) for s in dict.fromkeys(c[:2] for c in calls)}


def _saved(cache):
    (entry,) = json.loads((cache / "speeds.json").read_text()).values()
    return entry["tuning"]["m/openvino/int8"]


def test_tuning_interleaves_takes_medians_and_retimes_the_winner(tmp_path):
    calls: list = []
    rates = {("LATENCY", 1): [20.0, 21.0, 20.5], ("LATENCY", 8): [60.0, 30.0, 31.0],  # one lucky timing
             ("THROUGHPUT", 1): [10.0], ("THROUGHPUT", 8): [40.0, 41.0, 40.0, 40.5]}
    assert speeds.tuned_setting(DESC, _fake_timer(rates, calls), ("LATENCY", "THROUGHPUT"), (1, 8),
                                cache_dir=tmp_path) == ("THROUGHPUT", 8)  # the median, not the best timing
    order = [c[:2] for c in calls]
    settings = [("LATENCY", 1), ("LATENCY", 8), ("THROUGHPUT", 1), ("THROUGHPUT", 8)]
    assert order[:8] == settings + settings[::-1]  # every setting twice, interleaved, before choosing
    assert [c[2] for c in calls[:4]] == [True] * 4 and not any(c[2] for c in calls[4:])  # warm-up once
    assert order[-1] == ("THROUGHPUT", 8)  # the winner re-timed
    saved = _saved(tmp_path)
    assert (saved["hint"], saved["batch_size"]) == ("THROUGHPUT", 8)
    # LATENCY/8 led after two rounds (median 45 of 60 and 30), but its spread was larger than
    # its lead: a third round of the settings within that spread, then the re-time
    assert counts_of(calls) == {("LATENCY", 1): 3, ("LATENCY", 8): 3, ("THROUGHPUT", 1): 2, ("THROUGHPUT", 8): 4}
    assert saved["retimed_images_per_s"] == 40.5
    assert saved["timings"]["THROUGHPUT/8"] == [40.0, 41.0, 40.0, 40.5]
    assert saved["images_per_s"] == 40.25 and saved["spread"] == pytest.approx(1 / 40.25, abs=1e-3)
    assert saved["by_setting"]["LATENCY/8"] == 31.0  # median of 60, 30 and 31
    calls.clear()
    assert speeds.tuned_setting(DESC, _fake_timer(rates, calls), ("LATENCY", "THROUGHPUT"), (1, 8),
                                cache_dir=tmp_path) == ("THROUGHPUT", 8)
    assert calls == []  # remembered


def test_tuning_times_again_while_the_spread_exceeds_the_lead(tmp_path):
    calls: list = []
    # After two rounds A leads B by 2% with a 20% spread: both are timed again until A's
    # timings settle (spread <= lead) or five timings; B turns out faster.
    rates = {("LATENCY", 1): [50.0, 40.0, 30.0, 30.0, 30.0, 30.0], ("LATENCY", 2): [44.0, 44.2, 44.1],
             ("LATENCY", 4): [10.0]}
    assert speeds.tuned_setting(DESC, _fake_timer(rates, calls), ("LATENCY",), (1, 2, 4),
                                cache_dir=tmp_path) == ("LATENCY", 2)
    counts = {s: sum(1 for c in calls if c[:2] == s) for s in rates}
    assert counts[("LATENCY", 4)] == 2  # clearly slower: not timed again
    assert counts[("LATENCY", 1)] >= 3 and counts[("LATENCY", 2)] >= 4  # more rounds, then the re-time
    saved = _saved(tmp_path)
    assert saved["lead"] >= saved["spread"] or len(saved["timings"]["LATENCY/2"]) >= 5


def test_tuning_takes_the_smallest_batch_among_tied_settings(tmp_path):
    calls: list = []
    # 16 is fastest, 4 and 8 within 3% of it (tied: smaller requests share the cores better
    # with decoding), 2 is 10% behind (not tied).
    rates = {("LATENCY", 2): [90.0] * 3, ("LATENCY", 4): [98.0, 98.2, 98.1, 98.1],
             ("LATENCY", 8): [99.0] * 3, ("LATENCY", 16): [100.0] * 3}
    assert speeds.tuned_setting(DESC, _fake_timer(rates, calls), ("LATENCY",), (2, 4, 8, 16),
                                cache_dir=tmp_path) == ("LATENCY", 4)
    assert calls[-1][:2] == ("LATENCY", 4)  # the chosen setting is the one re-timed and recorded
    assert _saved(tmp_path)["batch_size"] == 4
    calls.clear()
    far = {**rates, ("LATENCY", 4): [95.0] * 4}  # 5% behind: not tied
    assert speeds.tuned_setting(DESC, _fake_timer(far, calls), ("LATENCY",), (2, 4, 8, 16),
                                cache_dir=tmp_path / "other") == ("LATENCY", 8)


def test_forget_tuning_makes_the_next_extractor_time_again(tmp_path):
    calls: list = []
    rates = {("LATENCY", 1): [10.0], ("LATENCY", 2): [20.0]}
    speeds.tuned_setting(DESC, _fake_timer(rates, calls), ("LATENCY",), (1, 2), cache_dir=tmp_path)
    timed = len(calls)
    assert speeds.forget_tuning("m", "openvino", "int8", cache_dir=tmp_path)
    assert not speeds.forget_tuning("m", "openvino", "int8", cache_dir=tmp_path)
    speeds.tuned_setting(DESC, _fake_timer(rates, calls), ("LATENCY",), (1, 2), cache_dir=tmp_path)
    assert len(calls) == 2 * timed


def test_a_query_extractor_compiles_its_batch_model_only_when_a_stream_needs_it():
    """lazy_compile (queries, features.extractor_for): a few images run on the LATENCY compile;
    the THROUGHPUT one is made on the first batch stream, never for a CLI query."""
    from similar_images.models.openvino_runtime import OpenVINOExtractor

    compiled = []

    class Latency:
        def __call__(self, batch):
            return [np.ones((len(batch), 4), np.float32)]

    def compile_for(hint):
        compiled.append(hint)
        return Latency() if hint == "LATENCY" else FakeCompiled(2)

    extractor = OpenVINOExtractor(name="fake", input_size=(2, 2), dim=4, model=None, served_model=None, compiled=None,
                                  compile_for=compile_for, preprocess=None, batch_size=4, hint="THROUGHPUT",
                                  description={})
    assert extractor.embed(np.zeros((1, 2, 2, 3), np.uint8)).shape == (1, 4)
    assert compiled == ["LATENCY"]
    assert extractor.images_in_flight == 2 * 4 and compiled == ["LATENCY", "THROUGHPUT"]  # made when asked for
