"""`similar-images extract` and `extract_image_vectors.py`: arguments, errors, interruption."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _extract_data import BAD, PixelExtractor, make_collection
from _waiting import patience
from click.testing import CliRunner

from similar_images import features
from similar_images.cli import main
from similar_images.db.checkpoint import partial_dir
from similar_images.db.vectors import load_vectors_manifest, open_vectors

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "extract_image_vectors.py"


@pytest.fixture
def no_model(monkeypatch):
    """Bad arguments must be refused before any model is loaded."""

    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(features, "get_extractor", fail)


def run_cli(*args):
    return CliRunner().invoke(main, ["extract", *map(str, args)])


def one_line_error(result, code=1) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_missing_file_list(tmp_path, no_model):
    line = one_line_error(run_cli("-l", tmp_path / "nope.txt", "-d", tmp_path))
    assert line.startswith("error: file list") and "nope.txt not found" in line


def test_missing_image_folder(tmp_path, no_model):
    file_list, _, _ = make_collection(tmp_path, bad=False)
    line = one_line_error(run_cli("-l", file_list, "-d", tmp_path / "nowhere"))
    assert "image folder" in line and "nowhere not found" in line and "-d/--img_dir" in line


def test_a_folder_given_as_the_list_points_to_what_takes_folders(tmp_path, no_model):
    line = one_line_error(run_cli("-l", tmp_path, "-d", tmp_path))
    assert line.startswith(f"error: -l {tmp_path} is a folder") and f"similar-images add {tmp_path}" in line


def test_unwritable_output(tmp_path, no_model):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    line = one_line_error(run_cli("-l", file_list, "-d", folder, "-o", tmp_path / "no" / "such" / "v.npy"))
    assert "cannot write" in line and "does not exist" in line


def test_existing_output_needs_force(tmp_path, no_model):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    output = tmp_path / "files.txt.saved_predictions.npy"  # the default name
    output.write_bytes(b"keep me")
    line = one_line_error(run_cli("-l", file_list, "-d", folder))
    assert "already exists; use --force" in line and output.read_bytes() == b"keep me"


def test_partial_run_needs_resume_or_force(tmp_path, no_model):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    partial_dir(tmp_path / "v.npy").mkdir()
    line = one_line_error(run_cli("-l", file_list, "-d", folder, "-o", tmp_path / "v.npy"))
    assert "--resume" in line and "--force" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [(["-b", "0"], "batch_size"), (["--model", "resnet"], "resnet"), (["--workers", "0"], "workers")],
)
def test_bad_usage_exits_2(tmp_path, no_model, args, message):
    result = run_cli("-l", tmp_path / "x.txt", *args)
    assert result.exit_code == 2 and message in result.output


def test_runs_with_the_model_and_options_asked_for(tmp_path, monkeypatch):
    file_list, folder, names = make_collection(tmp_path, bad=False)
    asked = {}

    def fake_get_extractor(model, **options):
        asked.update(model=model, **options)
        return PixelExtractor()

    monkeypatch.setattr(features, "get_extractor", fake_get_extractor)
    result = run_cli("-l", file_list, "-d", folder, "--weights", "none", "-m", tmp_path / "m.h5", "-b", "3",
                     "--no-progress")
    assert result.exit_code == 0, result.output
    assert asked == {"model": "vgg16", "weights": "none", "model_file": str(tmp_path / "m.h5"), "device": "cpu"}
    output = Path(f"{file_list}.saved_predictions.npy")
    assert load_vectors_manifest(output, with_names=True)["names"] == names and len(open_vectors(output)) == len(names)
    assert f"done {len(names)}, skipped 0" in result.output and str(output) in result.output
    assert "no interrupted run" not in result.output
    assert f"next: similar-images build -i {output}" in result.output  # the next step, said
    assert "time: model" not in result.output  # the timings are for -v
    verbose = run_cli("-l", file_list, "-d", folder, "--weights", "none", "-m", tmp_path / "m.h5", "--force",
                      "--no-progress", "-v")
    assert verbose.exit_code == 0 and "time: model" in verbose.output


def test_resume_with_nothing_to_resume_says_so(tmp_path, monkeypatch):
    file_list, folder, names = make_collection(tmp_path, bad=False)
    monkeypatch.setattr(features, "get_extractor", lambda model, **options: PixelExtractor())
    result = run_cli("-l", file_list, "-d", folder, "-o", tmp_path / "v.npy", "--resume", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "no interrupted run to resume" in result.output and "starting from the beginning" in result.output
    assert load_vectors_manifest(tmp_path / "v.npy", with_names=True)["names"] == names


def test_resume_on_a_finished_output_says_it_is_complete_and_cleans_partial(tmp_path, monkeypatch):
    """A kill after the commit point leaves a complete output and its .partial/ folder."""
    file_list, folder, names = make_collection(tmp_path, bad=False)
    monkeypatch.setattr(features, "get_extractor", lambda model, **options: PixelExtractor())
    output = tmp_path / "v.npy"
    assert run_cli("-l", file_list, "-d", folder, "-o", output, "--no-progress").exit_code == 0
    partial_dir(output).mkdir()
    (partial_dir(output) / "chunk-0.npz").write_bytes(b"left by a kill past the commit point")
    before = output.read_bytes()
    monkeypatch.setattr(features, "get_extractor", lambda *a, **k: (_ for _ in ()).throw(AssertionError("model")))
    result = run_cli("-l", file_list, "-d", folder, "-o", output, "--resume", "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{output} is complete ({len(names)} vectors); nothing to resume"
    assert not partial_dir(output).exists() and output.read_bytes() == before
    (tmp_path / "other.txt").write_text(names[0] + "\n")  # another file list: still refused
    refused = run_cli("-l", tmp_path / "other.txt", "-d", folder, "-o", output, "--resume", "--no-progress")
    assert one_line_error(refused) == f"error: {output} already exists; use --force to overwrite it"


def test_root_script_keeps_the_original_flags():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0
    for flag in ("-l, --filename_list", "-d, --img_dir", "-o, --output_filename", "-m, --model_filename",
                 "-b, --batch_size", "-v, --verbose", "--weights", "--resume", "--force", "--workers"):
        assert flag in result.stdout
    assert "ms_coco/val2014" in result.stdout and "vgg_4096.h5" in result.stdout


def test_root_script_error_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "-l", str(tmp_path / "nope.txt")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"error: file list {tmp_path / 'nope.txt'} not found"]


# --- real processes, real VGG16 (seeded random weights), real signals ------------------------


def start(args, cwd):
    command = [sys.executable, str(SCRIPT), "--weights", "none", "-b", "1", "--chunk-batches", "2",
               "--no-progress", *map(str, args)]
    # SIGINT as at a terminal: a job started in the background of a script inherits it ignored
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def chunks_in(output):
    return sorted(p.name for p in partial_dir(output).glob("chunk-*.npz"))


def stop_after(process, output, chunks, sig):
    """Send ``sig`` once ``chunks`` chunk files exist; return the process's stderr."""
    deadline = time.monotonic() + patience(600)  # TensorFlow's import and VGG16 on a loaded machine: minutes
    while len(chunks_in(output)) < chunks:
        assert process.poll() is None, f"finished before it could be stopped: {process.communicate()}"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=patience(300))
    return stderr


@pytest.mark.slow
def test_ctrl_c_and_kill_9_then_resume_give_the_uninterrupted_vectors(tmp_path):
    file_list, folder, names = make_collection(tmp_path, noise_images=8)
    output = tmp_path / "v.npy"
    args = ["-l", file_list, "-d", folder, "-o", output]

    first = start(args, tmp_path)
    stderr = stop_after(first, output, 2, signal.SIGINT)  # Ctrl-C
    assert first.returncode == 1 and "rerun with --resume" in stderr
    assert not output.exists()

    second = start([*args, "--resume"], tmp_path)
    before = len(chunks_in(output))
    stop_after(second, output, before + 2, signal.SIGKILL)  # kill -9, no chance to clean up
    assert second.returncode == -signal.SIGKILL and not output.exists()
    done = chunks_in(output)
    stamps = {name: (partial_dir(output) / name).stat().st_mtime_ns for name in done}
    assert len(done) < (len(names) + 1) // 2  # really stopped part way (chunks of 2 names)

    third = start([*args, "--resume"], tmp_path)
    while third.poll() is None:  # finished chunks are never rewritten (only removed at the end)
        for name, stamp in stamps.items():
            try:
                now = (partial_dir(output) / name).stat().st_mtime_ns
            except FileNotFoundError:  # removed at the end (a loaded machine can pause us between two calls)
                continue
            assert now == stamp, f"{name} was redone"
        time.sleep(0.05)
    stdout, stderr = third.communicate()
    assert third.returncode == 0, stderr
    assert f"resumed: {len(done)} of" in stdout

    reference = tmp_path / "reference.npy"
    fourth = start(["-l", file_list, "-d", folder, "-o", reference], tmp_path)
    assert fourth.wait(timeout=patience(900)) == 0, fourth.communicate()

    resumed, expected = load_vectors_manifest(output, with_names=True), load_vectors_manifest(reference, with_names=True)
    assert resumed["names"] == expected["names"] == [n for n in names if n not in BAD or n == "huge.png"]
    assert resumed["skipped"] == expected["skipped"]
    assert resumed["timings"]["resumed_chunks"] == len(done)
    assert np.abs(open_vectors(output) - open_vectors(reference)).max() <= 1e-5
    assert not partial_dir(output).exists()
    assert json.loads(Path(f"{output}.manifest.json").read_text())["model"]["weights"] == "none(seed=0)"


def test_int8_on_a_small_collection_says_fp32_is_faster_in_all(tmp_path, monkeypatch):
    from similar_images.models import int8_costs, speeds

    cache = tmp_path / "cache"
    monkeypatch.setenv("SIMILAR_IMAGES_CACHE", str(cache))
    speeds.record_speed("vgg16", "openvino", "int8", 40.0, source="benchmark")
    speeds.record_speed("vgg16", "openvino", "fp32", 10.0, source="benchmark")
    int8_costs.record_startup("vgg16", "int8", {"quantize_s": 35.0})
    file_list, folder, names = make_collection(tmp_path, bad=False)
    asked = {}

    def fake_get_extractor(model, **options):
        asked.update(options)
        return PixelExtractor()

    monkeypatch.setattr(features, "get_extractor", fake_get_extractor)
    result = run_cli("-l", file_list, "-d", folder, "--runtime", "openvino", "--precision", "int8",
                     "--no-progress")
    assert result.exit_code == 0, result.output
    n = len(names)
    assert (f"{n} images: INT8 start-up ~35 s (a new calibration) is not paid back below ~467 images here; "
            f"--runtime openvino --precision fp32 would take ~{n / 10:.0f} s in all") in result.output
    assert asked["precision"] == "int8" and len(asked["calibration_paths"]) == n
