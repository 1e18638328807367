"""Importing vectors computed elsewhere (``db/importing.py``): a database that opens and
searches like an extracted one, and bad input refused in one line with nothing written."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.db.build import build_index_files
from similar_images.db.database import Database
from similar_images.db.importing import import_vectors
from similar_images.db.searching import search_database
from similar_images.errors import DatabaseError

N, DIM = 300, 16


def source(folder, n=N, dim=DIM, dtype=np.float32, seed=0):
    """``vectors.npy`` (n, dim) and ``names.txt`` (n lines) in ``folder``; returns their paths and the array."""
    array = np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)
    np.save(folder / "vectors.npy", array)
    (folder / "names.txt").write_text("".join(f"img/{i:05d}.jpg\n" for i in range(n)))
    return folder / "vectors.npy", folder / "names.txt", array


def snapshot(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*")} if folder.exists() else None


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_an_import_opens_and_searches_like_an_extracted_database(tmp_path, dtype):
    vectors, names, array = source(tmp_path, dtype=dtype)
    out = tmp_path / "db" / "imported.npy"
    manifest = import_vectors(vectors, names, out)
    assert manifest["count"] == N and manifest["model"] == {"name": "none", "dim": DIM, "source": "import"}
    db = Database.open(out)
    assert list(db.names) == [f"img/{i:05d}.jpg" for i in range(N)]
    assert np.array_equal(np.asarray(db.vectors), array.astype(np.float32))
    assert manifest["imported_from"]["dtype"] == np.dtype(dtype).name
    build_index_files(out, index_type="flat", show_progress=False, eval_queries=5)
    db = Database.open(out, out.with_suffix(".faiss.index"))
    _, ids = search_database(db, np.asarray(db.vectors[[7]]), 3, pool_factor=1)
    assert ids[0, 0] == 7


def test_names_with_crlf_ends_and_no_final_newline(tmp_path):
    vectors, names, _ = source(tmp_path, n=3)
    names.write_bytes(b"a.jpg\r\nb.jpg\r\nc.jpg")
    import_vectors(vectors, names, tmp_path / "out.npy", name_rule="text")
    assert list(Database.open(tmp_path / "out.npy").names) == ["a.jpg", "b.jpg", "c.jpg"]


def refused(tmp_path, vectors, names, match, **options):
    """The import is refused with one line matching ``match``, and nothing under tmp_path changed."""
    before = snapshot(tmp_path)
    with pytest.raises((DatabaseError, ValueError)) as caught:
        import_vectors(vectors, names, tmp_path / "out" / "db.npy", **options)
    message = str(caught.value)
    assert "\n" not in message and match in message, message
    assert snapshot(tmp_path) == before


def test_a_row_count_that_does_not_match_the_names_is_refused(tmp_path):
    vectors, names, _ = source(tmp_path)
    names.write_text("".join(f"{i}.jpg\n" for i in range(N - 1)))
    refused(tmp_path, vectors, names, f"{N - 1} names for the {N} rows")


def test_a_nan_row_is_refused_naming_it(tmp_path):
    vectors, names, array = source(tmp_path)
    array[123, 4] = np.nan
    np.save(vectors, array)
    refused(tmp_path, vectors, names, "row 123 holds a non-finite value")
    array[123, 4] = np.inf
    np.save(vectors, array)
    refused(tmp_path, vectors, names, "row 123 holds a non-finite value")


def test_duplicate_names_are_refused_under_the_name_rule(tmp_path):
    vectors, names, _ = source(tmp_path, n=4)
    names.write_text("a.jpg\nsub/b.jpg\nc.jpg\nsub//b.jpg\n")  # one path written two ways
    refused(tmp_path, vectors, names, "line 4 ('sub//b.jpg') names the same item as line 2")
    names.write_text("a\nb\nc\na\n")
    refused(tmp_path, vectors, names, "line 4 ('a') names the same item as line 1", name_rule="text")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.complex64, bool])
def test_the_wrong_dtype_is_refused(tmp_path, dtype):
    vectors, names, _ = source(tmp_path)
    np.save(vectors, np.ones((N, DIM), dtype=dtype))
    refused(tmp_path, vectors, names, f"holds {np.dtype(dtype)} values; import takes float16, float32 or float64")


def test_other_bad_input_is_refused_in_one_line(tmp_path):
    vectors, names, array = source(tmp_path)
    np.save(vectors, np.array([{"a": 1}] * 3, dtype=object))
    refused(tmp_path, vectors, names, "not a plain .npy array")
    np.save(vectors, array[0])
    refused(tmp_path, vectors, names, "an array of shape (16,)")
    np.save(vectors, array)
    names.write_bytes(b"a.jpg\n\xff\xfe.jpg\n")
    refused(tmp_path, vectors, names, "line 2 is not UTF-8")
    names.write_text("a.jpg\n\nb.jpg\n")
    refused(tmp_path, vectors, names, "line 2 is empty")
    (tmp_path / "text.npy").write_text("not numpy")
    refused(tmp_path, tmp_path / "text.npy", names, "not a plain .npy array")
    refused(tmp_path, tmp_path / "missing.npy", names, "no such vectors file")
    source(tmp_path)
    refused(tmp_path, vectors, names, "makes 4096", model={"name": "vgg16", "dim": 4096})
    huge = array.astype(np.float64)
    huge[5, 0] = 1e300  # finite in float64, infinite once stored as float32
    np.save(vectors, huge)
    refused(tmp_path, vectors, names, "row 5 holds a value beyond float32's range (3.40282e+38)")


def test_an_existing_database_is_not_overwritten(tmp_path):
    vectors, names, _ = source(tmp_path)
    out = tmp_path / "db.npy"
    import_vectors(vectors, names, out)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match="already exists"):
        import_vectors(vectors, names, out)
    assert snapshot(tmp_path) == before


def test_a_float16_source_is_read_by_chunks(tmp_path, monkeypatch):
    """The source is memory-mapped and checked and converted a block at a time: the import
    never holds the whole array in memory (numpy reports its allocations to tracemalloc)."""
    import tracemalloc

    import similar_images.db.importing as importing
    import similar_images.db.vectors as vectors_mod

    monkeypatch.setattr(importing, "CHECK_ROWS", 512)
    monkeypatch.setattr(vectors_mod, "WRITE_ROWS", 512)
    n, dim = 20_000, 512  # 20 MB of float16, 40 MB as float32; the names take about 3 MB
    vectors, names, array = source(tmp_path, n=n, dim=dim, dtype=np.float16)
    tracemalloc.start()
    try:
        import_vectors(vectors, names, tmp_path / "out.npy", name_rule="text")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * dim * 2 / 2, f"peak {peak} bytes: the float16 source is {n * dim * 2}"
    assert np.array_equal(np.asarray(Database.open(tmp_path / "out.npy").vectors), array.astype(np.float32))
