"""INT8 break-even advice from recorded start-ups and rates (fake recorded speeds, no timing)."""

from __future__ import annotations

import json

from similar_images.models import int8_costs, speeds


def _record(cache, *, int8_start=35.0, int8_rate=40.0, fp32_rate=10.0, fp32_start=5.0):
    speeds.record_speed("vgg16", "openvino", "int8", int8_rate, source="benchmark", cache_dir=cache)
    speeds.record_speed("vgg16", "openvino", "fp32", fp32_rate, source="benchmark", cache_dir=cache)
    speeds.record_speed("vgg16", "native", "fp32", 8.0, source="benchmark", cache_dir=cache)
    int8_costs.record_startup("vgg16", "int8", {"decode_s": 2.0, "convert_s": 8.0, "quantize_s": 20.0,
                                                "holdout_fp32_s": 4.0, "holdout_int8_s": 1.0,
                                                "tuning_s": 30.0, "compile_s": int8_start - 35.0},
                              cache_dir=cache)
    int8_costs.record_startup("vgg16", "fp32", {"convert_s": fp32_start}, cache_dir=cache)


def test_startup_recorded_per_machine_without_the_tuning(tmp_path):
    _record(tmp_path)
    (entry,) = json.loads((tmp_path / "startup.json").read_text()).values()
    assert entry["machine"] == speeds.machine()
    record = int8_costs.startups(tmp_path)["vgg16/openvino/int8"]
    assert record["seconds"] == 35.0 and record["stages"]["tuning_s"] == 30.0  # tuning is paid once a machine


def test_advice_below_break_even_names_the_faster_fp32_choice(tmp_path):
    _record(tmp_path)
    # INT8: 35 + n/40 s; OpenVINO fp32: 5 + n/10 s (native fp32, n/8, is slower): even at n = 400.
    text = int8_costs.int8_advice("vgg16", 300, cache_dir=tmp_path)
    assert text.startswith("300 images: INT8 start-up ~35 s (a new calibration) is not paid back below "
                           "~400 images here; --runtime openvino --precision fp32 would take ~35 s in all "
                           "(INT8 ~42 s;")
    assert int8_costs.int8_advice("vgg16", 401, cache_dir=tmp_path) is None  # paid back
    assert int8_costs.int8_advice("efficientnet-lite0", 300, cache_dir=tmp_path) is None  # nothing recorded


def test_no_advice_without_recorded_int8_figures(tmp_path):
    speeds.record_speed("vgg16", "openvino", "fp32", 10.0, source="benchmark", cache_dir=tmp_path)
    assert int8_costs.int8_advice("vgg16", 10, cache_dir=tmp_path) is None
    speeds.record_speed("vgg16", "openvino", "int8", 40.0, source="benchmark", cache_dir=tmp_path)
    assert int8_costs.int8_advice("vgg16", 10, cache_dir=tmp_path) is None  # no start-up recorded
    (tmp_path / "startup.json").write_text("{not json")
    assert int8_costs.startups(tmp_path) == {}  # a damaged file costs only the advice
