"""``similar-images import``: output, one-line refusals, and what an imported database answers."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from similar_images.cli import main

N, DIM = 200, 32


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def files(folder, n=N, dtype=np.float32):
    array = np.random.default_rng(1).standard_normal((n, DIM)).astype(dtype)
    np.save(folder / "emb.npy", array)
    (folder / "names.txt").write_text("".join(f"photos/{i}.jpg\n" for i in range(n)))
    return folder / "emb.npy", folder / "names.txt", array


def listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def test_import_then_build_then_search_by_id(tmp_path):
    vectors, names, _ = files(tmp_path, dtype=np.float16)
    out = tmp_path / "db.npy"
    result = run("import", vectors, "--names", names, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"imported {N} vectors of dimension {DIM} (none, float32 store) into {out}" in result.output
    built = run("build", "-i", out, "--index-type", "flat", "--no-progress")
    assert built.exit_code == 0, built.output
    found = run("search", "--vectors", out, "--id", 5, "-k", 2, "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)[0]["results"][0]["path"] == "photos/5.jpg"


def test_an_image_query_on_a_database_without_model_is_one_line(tmp_path):
    vectors, names, _ = files(tmp_path)
    out = tmp_path / "db.npy"
    assert run("import", vectors, "--names", names, "-o", out, "--no-progress").exit_code == 0
    image = tmp_path / "q.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    result = run("search", "--vectors", out, image)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: this database's vectors were imported without "
                                                             "a model")


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    vectors, names, array = files(tmp_path)
    out = tmp_path / "new" / "db.npy"
    good = "".join(f"photos/{i}.jpg\n" for i in range(N))
    nan_rows = array.copy()
    nan_rows[N - 1, 0] = np.nan
    cases = [  # (names file, vectors, what the line says)
        (good + "photos/extra.jpg\n", array, f"{N + 1} names for the {N} rows"),
        (good.replace(f"photos/{N - 1}.jpg", "photos/0.jpg"), array,
         f"line {N} ('photos/0.jpg') names the same item as line 1"),
        (good, nan_rows, f"row {N - 1} holds a non-finite value"),
        (good, array.astype(np.int16), "holds int16 values; import takes float16, float32 or float64"),
    ]
    for text, rows, expected in cases:
        names.write_text(text)
        np.save(vectors, rows)
        before = listing(tmp_path)
        result = run("import", vectors, "--names", names, "-o", out, "--no-progress")
        assert result.exit_code == 1
        assert result.output.count("\n") == 1 and result.output.startswith("error: ") and expected in result.output, \
            result.output
        assert listing(tmp_path) == before and not out.parent.exists()


def test_an_unknown_model_is_a_usage_error(tmp_path):
    vectors, names, _ = files(tmp_path)
    result = run("import", vectors, "--names", names, "-o", tmp_path / "db.npy", "--model", "resnet")
    assert result.exit_code == 2 and "unknown model 'resnet'" in result.output
    assert not (tmp_path / "db.npy").exists()
