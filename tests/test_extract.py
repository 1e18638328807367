"""extract.py / pipeline.py / checkpoint.py: in-memory extraction and the checkpointed job."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from _extract_data import AWKWARD, BAD, SMALL_CAP, PixelExtractor, make_collection
from PIL import Image

from similar_images.db.checkpoint import partial_dir
from similar_images.db.vectors import load_vectors_manifest, open_vectors
from similar_images.errors import SimilarImagesError
from similar_images.extract import extract_vectors, run_extraction
from similar_images.fileio.files import sha256_lines
from similar_images.images import load_for_model
from similar_images.jobs import extraction_summary, validate_job


@pytest.fixture
def small_cap(monkeypatch):
    """Call after writing the images: lowers Pillow's pixel cap so huge.png is "too large"."""
    return lambda: monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", SMALL_CAP)


def kept(names):
    return [n for n in names if n not in BAD]


# --- in memory --------------------------------------------------------------------------


def test_rows_align_with_names_and_bad_files_are_skipped_with_reasons(tmp_path, small_cap):
    file_list, folder, names = make_collection(tmp_path)
    small_cap()
    vectors, got, skipped = extract_vectors(names, folder, PixelExtractor(), batch_size=3, workers=3,
                                            show_progress=False)
    assert got == kept(names)
    assert vectors.shape == (len(got), 48) and vectors.dtype == np.float32
    assert {s["path"]: s["reason"] for s in skipped} == BAD
    assert all(s["path"] in s["message"] and "\n" not in s["message"] for s in skipped)
    for row, name in zip(vectors, got):  # each row is exactly its own image
        assert np.array_equal(row, load_for_model(folder / name, (4, 4)).reshape(-1))


def test_awkward_files_are_loaded_correctly_not_skipped(tmp_path, small_cap):
    _, folder, names = make_collection(tmp_path)
    small_cap()
    vectors, got, _ = extract_vectors(names, folder, PixelExtractor(), batch_size=4, show_progress=False)
    assert set(AWKWARD) <= set(got)
    pixels = {name: vectors[got.index(name)].reshape(4, 4, 3).astype(int) for name in AWKWARD}
    assert np.abs(pixels["cmyk.jpg"] - (200, 100, 50)).max() <= 5
    grey = pixels["grey16.png"][..., 0]
    assert grey[0, 0] < 40 and grey[-1, -1] > 215 and (np.diff(grey.reshape(-1)) >= 0).all()  # not clipped
    assert (pixels["palette.png"][:, 0] == 255).all()  # transparent -> white
    assert (pixels["palette.png"][:, -1] == (0, 255, 0)).all()
    rotated = pixels["rotated.jpg"]
    assert (np.abs(rotated[0] - (255, 0, 0)).max(axis=-1) < 60).all()  # red on top
    assert (np.abs(rotated[-1] - (0, 0, 255)).max(axis=-1) < 60).all()  # blue at the bottom


def test_order_does_not_depend_on_threads(tmp_path):
    _, folder, names = make_collection(tmp_path, noise_images=30, bad=False)
    one = extract_vectors(names, folder, PixelExtractor(), batch_size=4, workers=1, show_progress=False)
    many = extract_vectors(names, folder, PixelExtractor(), batch_size=4, workers=4, show_progress=False)
    assert one[1] == many[1] == names
    assert np.array_equal(one[0], many[0])


def test_empty_and_all_bad_lists(tmp_path):
    vectors, got, skipped = extract_vectors([], tmp_path, PixelExtractor(), show_progress=False)
    assert vectors.shape == (0, 48) and got == [] and skipped == []
    vectors, got, skipped = extract_vectors(["a.jpg"], tmp_path, PixelExtractor(), show_progress=False)
    assert vectors.shape == (0, 48) and got == [] and skipped[0]["reason"] == "not found"


# --- the checkpointed job -----------------------------------------------------------------


def test_run_writes_vectors_and_manifest(tmp_path, small_cap):
    file_list, folder, names = make_collection(tmp_path, noise_images=5)
    small_cap()
    output = tmp_path / "out" / "vectors.npy"
    output.parent.mkdir()
    manifest = run_extraction(file_list, folder, output, PixelExtractor(), batch_size=2, chunk_batches=2,
                              show_progress=False)
    vectors = open_vectors(output)
    assert load_vectors_manifest(output, with_names=True) == manifest
    assert manifest["names"] == kept(names) and manifest["count"] == len(vectors) == len(kept(names))
    assert manifest["dimension"] == 48 and manifest["model"] == PixelExtractor().describe()
    assert manifest["file_list_sha256"] == sha256_lines(names)
    assert {s["path"]: s["reason"] for s in manifest["skipped"]} == BAD
    assert manifest["image_dir"] == str(folder) and manifest["file_list"] == str(file_list)
    assert manifest["timings"]["images_this_run"] == len(kept(names))
    for row, name in zip(vectors, manifest["names"]):
        assert np.array_equal(row, load_for_model(folder / name, (4, 4)).reshape(-1))
    # no partial, no temp (the lock is the database's writers' lock, kept like the files it guards;
    # the verification stamp says the vectors just written match their checksum)
    assert sorted(os.listdir(output.parent)) == ["vectors.npy", "vectors.npy.catalog.sqlite",
                                                 "vectors.npy.catalog.sqlite.verified.json", "vectors.npy.lock",
                                                 "vectors.npy.manifest.json", "vectors.npy.verified.json"]
    assert extraction_summary(manifest).startswith(f"done {len(kept(names))}, skipped {len(BAD)}, elapsed ")


def test_existing_output_is_refused_unless_forced(tmp_path):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    output = tmp_path / "v.npy"
    run_extraction(file_list, folder, output, PixelExtractor(), show_progress=False)
    before = output.read_bytes()
    extractor = PixelExtractor()
    with pytest.raises(SimilarImagesError, match="already exists; use --force"):
        run_extraction(file_list, folder, output, extractor, show_progress=False)
    assert extractor.calls == 0 and output.read_bytes() == before
    file_list.write_text("coffee.jpg\n")
    manifest = run_extraction(file_list, folder, output, PixelExtractor(), force=True, show_progress=False)
    assert manifest["names"] == ["coffee.jpg"] and len(open_vectors(output)) == 1


class Interrupting(PixelExtractor):
    """Behaves like Ctrl-C arriving during the ``stop_at``-th model call."""

    def __init__(self, stop_at):
        super().__init__()
        self.stop_at = stop_at

    def embed(self, batch):
        if self.calls + 1 == self.stop_at:
            raise KeyboardInterrupt
        return super().embed(batch)


def interrupted_run(tmp_path, *, lower_cap=None, **collection):
    file_list, folder, names = make_collection(tmp_path, noise_images=20, **collection)
    if lower_cap is not None:
        lower_cap()
    output = tmp_path / "v.npy"
    with pytest.raises(KeyboardInterrupt):
        run_extraction(file_list, folder, output, Interrupting(stop_at=7), batch_size=2, chunk_batches=2,
                       show_progress=False)
    assert not output.exists()
    chunks = sorted(c.name for c in partial_dir(output).glob("chunk-*.npz"))
    assert 2 <= len(chunks) < len(names) / 4  # stopped part way, finished chunks kept
    assert chunks == [f"chunk-{i:06d}.npz" for i in range(len(chunks))]
    return file_list, folder, names, output, len(chunks)


def test_interrupted_run_resumes_to_the_same_vectors(tmp_path, small_cap):
    file_list, folder, names, output, done = interrupted_run(tmp_path, lower_cap=small_cap)
    with pytest.raises(SimilarImagesError, match="use --resume"):
        run_extraction(file_list, folder, output, PixelExtractor(), batch_size=2, chunk_batches=2)
    resumed_extractor = PixelExtractor()
    manifest = run_extraction(file_list, folder, output, resumed_extractor, batch_size=2, chunk_batches=2,
                              resume=True, show_progress=False)
    reference_out = tmp_path / "reference.npy"
    reference = run_extraction(file_list, folder, reference_out, PixelExtractor(), batch_size=2,
                               chunk_batches=2, show_progress=False)
    assert manifest["names"] == reference["names"] == kept(names)
    assert manifest["skipped"] == reference["skipped"]
    assert np.abs(open_vectors(output) - open_vectors(reference_out)).max() <= 1e-5
    done_in_first_run = sum(1 for n in names[: 4 * done] if n not in BAD)  # chunks of 4 names
    assert manifest["timings"]["resumed_chunks"] == done
    assert manifest["timings"]["images_this_run"] == len(kept(names)) - done_in_first_run
    assert not partial_dir(output).exists()


def test_resume_refuses_another_model_or_file_list(tmp_path):
    file_list, folder, names, output, done = interrupted_run(tmp_path, bad=False)

    class OtherWeights(PixelExtractor):
        def describe(self):
            return {**super().describe(), "weights": "other"}

    with pytest.raises(SimilarImagesError, match="made with model .*weights=none.*not .*weights=other"):
        run_extraction(file_list, folder, output, OtherWeights(), batch_size=2, resume=True)

    class OnCuda(PixelExtractor):  # describes itself as the models do on a GPU
        def describe(self):
            return {**super().describe(), "device": "cuda"}

    with pytest.raises(SimilarImagesError, match="made on device cpu, this run uses cuda; resume with --device cpu"):
        run_extraction(file_list, folder, output, OnCuda(), batch_size=2, resume=True)
    file_list.write_text("\n".join(names[:-1]) + "\n")
    with pytest.raises(SimilarImagesError, match="different file list"):
        run_extraction(file_list, folder, output, PixelExtractor(), batch_size=2, resume=True)
    assert len(list(partial_dir(output).glob("chunk-*.npz"))) == done  # refusing lost nothing


def test_resume_keeps_the_saved_batch_size(tmp_path, caplog):
    file_list, folder, names, output, done = interrupted_run(tmp_path, bad=False)
    with caplog.at_level(logging.WARNING):
        manifest = run_extraction(file_list, folder, output, PixelExtractor(), batch_size=32, resume=True,
                                  show_progress=False)
    assert manifest["timings"]["batch_size"] == 2 and "batch size" in caplog.text
    assert manifest["names"] == names


def test_force_discards_a_partial_run(tmp_path):
    file_list, folder, names, output, done = interrupted_run(tmp_path, bad=False)
    manifest = run_extraction(file_list, folder, output, PixelExtractor(), batch_size=2, force=True,
                              show_progress=False)
    assert manifest["timings"]["resumed_chunks"] == 0 and manifest["names"] == names


def test_resume_without_a_partial_run_starts_fresh_and_says_so(tmp_path, caplog):
    file_list, folder, names = make_collection(tmp_path, bad=False)
    with caplog.at_level(logging.INFO):
        manifest = run_extraction(file_list, folder, tmp_path / "v.npy", PixelExtractor(), resume=True,
                                  show_progress=False)
    assert "nothing to resume" in caplog.text and manifest["names"] == names


def test_damaged_chunk_is_reported_and_redone(tmp_path, caplog):
    file_list, folder, names, output, done = interrupted_run(tmp_path, bad=False)
    chunk = partial_dir(output) / "chunk-000001.npz"
    chunk.write_bytes(chunk.read_bytes()[:-100])  # as if the disk had lost its end
    with caplog.at_level(logging.WARNING):
        manifest = run_extraction(file_list, folder, output, PixelExtractor(), batch_size=2, resume=True,
                                  show_progress=False)
    assert "chunk-000001.npz is damaged" in caplog.text
    assert manifest["names"] == names and manifest["timings"]["resumed_chunks"] == done - 1
    reference = extract_vectors(names, folder, PixelExtractor(), batch_size=2, show_progress=False)[0]
    assert np.array_equal(open_vectors(output), reference)


def test_empty_chunk_file_is_redone(tmp_path, caplog):
    file_list, folder, names, output, done = interrupted_run(tmp_path, bad=False)
    (partial_dir(output) / "chunk-000000.npz").write_bytes(b"")  # created, never written
    with caplog.at_level(logging.WARNING):
        manifest = run_extraction(file_list, folder, output, PixelExtractor(), batch_size=2, resume=True,
                                  show_progress=False)
    assert "chunk-000000.npz is damaged" in caplog.text and manifest["names"] == names
    reference = extract_vectors(names, folder, PixelExtractor(), batch_size=2, show_progress=False)[0]
    assert np.array_equal(open_vectors(output), reference)


# --- argument checks ----------------------------------------------------------------------


def test_validate_job(tmp_path):
    file_list, folder, names = make_collection(tmp_path, bad=False)
    output = tmp_path / "v.npy"
    assert validate_job(file_list, folder, output) == names
    cases = [
        ((tmp_path / "nope.txt", folder, output), "file list .*nope.txt not found"),
        ((file_list, tmp_path / "nowhere", output), "image folder .*nowhere not found"),
        ((file_list, folder, tmp_path / "no" / "v.npy"), "folder .* does not exist"),
        ((file_list, folder, tmp_path), "is a folder"),
    ]
    for args, message in cases:
        with pytest.raises(SimilarImagesError, match=message):
            validate_job(*args)
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(SimilarImagesError, match="empty"):
        validate_job(tmp_path / "empty.txt", folder, output)


def test_bad_numbers_are_refused(tmp_path):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    for options in ({"batch_size": 0}, {"chunk_batches": 0}, {"workers": 0}):
        with pytest.raises(ValueError, match="at least 1"):
            run_extraction(file_list, folder, tmp_path / "v.npy", PixelExtractor(), **options)
    assert not partial_dir(tmp_path / "v.npy").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_folder(tmp_path):
    file_list, folder, _ = make_collection(tmp_path, bad=False)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SimilarImagesError, match="not writable"):
        validate_job(file_list, folder, locked / "v.npy")


# --- with the real VGG16 (seeded random weights) -------------------------------------------


@pytest.mark.slow
def test_vgg16_rows_are_each_images_own_vector(tmp_path, small_cap):
    from similar_images.models import vgg16

    extractor = vgg16.create(weights="none")
    file_list, folder, names = make_collection(tmp_path)
    small_cap()
    manifest = run_extraction(file_list, folder, tmp_path / "v.npy", extractor, batch_size=4,
                              show_progress=False)
    vectors = open_vectors(tmp_path / "v.npy")
    assert manifest["names"] == kept(names) and vectors.shape == (len(kept(names)), 4096)
    assert manifest["model"]["weights"] == "none(seed=0)"
    alone = np.concatenate([extractor.embed(load_for_model(folder / n, (224, 224))[None]) for n in manifest["names"]])
    assert np.allclose(vectors, alone, atol=1e-3, rtol=1e-3)
    distances = ((vectors[:, None, :] - alone[None, :, :]) ** 2).sum(-1)  # (n, n)
    assert (distances.argmin(axis=1) == np.arange(len(vectors))).all()
