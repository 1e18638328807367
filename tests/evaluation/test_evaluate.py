"""Evaluation reports: tables and files, COCO labels, edits; reports on real small databases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from similar_images import edits
from similar_images.db.vectors import open_vectors, save_vectors
from similar_images.errors import DatabaseError
from similar_images.evaluation import coco as evaluate_coco
from similar_images.evaluation import fidelity as evaluate_fidelity
from similar_images.evaluation import report as evaluate
from similar_images.evaluation import robustness
from similar_images.evaluation import systems as evaluate_systems

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "car"}]


def coco_instances(images: dict[str, list[tuple[int, float]]]) -> dict:
    """A COCO instances document: file name -> [(category id, area), ...]."""
    doc = {"images": [], "annotations": [], "categories": CATEGORIES}
    for image_id, (name, anns) in enumerate(images.items(), start=1):
        doc["images"].append({"id": image_id, "file_name": name, "width": 64, "height": 64})
        for category, area in anns:
            doc["annotations"].append({"id": len(doc["annotations"]) + 1, "image_id": image_id,
                                       "category_id": category, "area": area})
    return doc


# --- tables and files --------------------------------------------------------------------

def test_format_table_aligns_and_formats_numbers():
    text = evaluate.format_table(["system", "P@1", "n"], [["vgg16/ivfpq", 0.61234, 40504], ["random", 0.1, 7]])
    lines = text.splitlines()
    assert lines[0].split() == ["system", "P@1", "n"]
    assert "0.612" in lines[2] and "40,504" in lines[2]
    assert len({len(line) for line in lines[:3]}) == 1  # header, rule and widest row line up


def test_save_report_writes_json_and_png(tmp_path):
    report = evaluate.Report("fidelity", "title", ["system", "R@1"], [["a", np.float64(0.5)]],
                             {"curve": np.arange(3), "nan": float("nan")},
                             plot=lambda fig: evaluate.bar_chart(fig, ["R@1"], {"a": [0.5]}, title="t", ylabel="y"))
    written = evaluate.save_report(report, tmp_path / "out")
    saved = json.loads(written["json"].read_text())
    assert saved["rows"] == [["a", 0.5]] and saved["curve"] == [0, 1, 2] and saved["nan"] is None
    with Image.open(written["png"]) as png:
        assert png.format == "PNG" and png.size[0] > 300
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fidelity.json", "fidelity.png"]


# --- COCO labels ----------------------------------------------------------------------------

def test_dominant_category_is_largest_total_area():
    labels = evaluate_coco.parse_coco_instances(coco_instances({
        # two small dogs (30 + 30) outweigh one cat (50)
        "a.jpg": [(1, 50.0), (2, 30.0), (2, 30.0)],
        "b.jpg": [(3, 10.0)],
        "c.jpg": [(1, 5.0), (2, 5.0)],  # tie -> smaller id
        "unannotated.jpg": [],
    }))
    assert labels.dominant == {"a.jpg": 2, "b.jpg": 3, "c.jpg": 1}
    assert labels.categories_of["a.jpg"] == {1, 2}
    assert labels.categories[3] == "car"


def test_not_an_instances_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "captions.json"
    bad.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatabaseError, match="not a COCO instances file"):
        evaluate_coco.load_coco_labels(bad)
    with pytest.raises(DatabaseError, match="not found"):
        evaluate_coco.load_coco_labels(tmp_path / "missing.json")


def test_align_labels_matches_by_file_name():
    labels = evaluate_coco.parse_coco_instances(coco_instances({"a.jpg": [(1, 9.0), (3, 1.0)], "b.jpg": [(2, 1.0)]}))
    dominant, multi = evaluate_coco.align_labels(labels, ["val2014/b.jpg", "x.jpg", "a.jpg"])
    assert dominant.tolist() == [2, -1, 1]
    assert multi.tolist() == [[False, True, False], [False, False, False], [True, False, True]]


def test_relevance_dominant_and_any():
    # rows: 0 cat(+car), 1 cat, 2 dog(+cat), 3 car, 4 unannotated
    dominant = np.array([1, 1, 2, 3, -1])
    multi = np.array([[1, 0, 1], [1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=bool)
    results = np.array([[2, 1, 4, -1]])  # results for query row 0, query excluded
    rel = evaluate_coco.relevance(dominant, multi, np.array([0]), results)
    rel_dom, n_dom = rel["dominant"]
    rel_any, n_any = rel["any"]
    assert rel_dom.tolist() == [[False, True, False, False]] and n_dom.tolist() == [1]
    assert rel_any.tolist() == [[True, True, False, False]] and n_any.tolist() == [3]


def test_sample_query_names_is_seeded_and_refuses_foreign_databases():
    labels = evaluate_coco.parse_coco_instances(coco_instances({f"{i}.jpg": [(1, 1.0)] for i in range(20)}))
    names = [f"{i}.jpg" for i in range(20)] + ["other.jpg"]
    first = evaluate_coco.sample_query_names([names], labels, 5, seed=3)
    assert first == evaluate_coco.sample_query_names([names], labels, 5, seed=3)
    assert len(set(first)) == 5 and "other.jpg" not in first
    with pytest.raises(DatabaseError, match="no database image appears in the COCO annotations"):
        evaluate_coco.sample_query_names([["holiday.jpg"]], labels, 5, seed=0)


# --- edits ----------------------------------------------------------------------------------

def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))


def test_every_edit_changes_the_image_and_is_deterministic():
    original = photo()
    for name, edit in edits.EDITS.items():
        out = edit(original)
        assert out.mode == "RGB", name
        same_size = out.size == original.size
        assert not (same_size and np.array_equal(np.asarray(out), np.asarray(original))), name
        assert np.array_equal(np.asarray(out), np.asarray(edit(original))), name


def test_edit_geometry():
    original = photo()  # 80 x 60
    assert edits.crop_center(original).size == (56, 42)
    assert edits.resize_half(original).size == (40, 30)
    flipped = np.asarray(edits.hflip(original))
    assert np.array_equal(flipped[:, 0], np.asarray(original)[:, -1])
    gray = np.asarray(edits.grayscale(original))
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_select_edits_lists_valid_names():
    assert list(edits.select_edits(["hflip", "crop70"])) == ["crop70", "hflip"]
    with pytest.raises(ValueError, match="choose from: crop70"):
        edits.select_edits(["blur"])


# --- reports on real small databases ------------------------------------------------------



def save_db(folder, vectors: np.ndarray, names: list[str], model: dict | None = None, image_dir=None):
    """A vectors file + manifest, as the extraction writes them."""
    path = folder / "db.saved_predictions.npy"
    model = model or {"name": "toy", "weights": "none", "dim": vectors.shape[1], "input_size": [8, 8],
                      "runtime": "native", "precision": "fp32"}
    save_vectors(path, vectors.astype(np.float32),
                       {"model": model, "names": names, "image_dir": str(image_dir or folder), "skipped": []})
    return path


def test_robustness_groups():
    assert robustness.group_ids(["a.jpg", "b.jpg"], None).tolist() == [0, 1]
    assert robustness.group_ids(["a.jpg", "a__flip.jpg", "b.jpg", "x/b__crop.jpg"], "__").tolist() == [0, 0, 1, 1]


def test_brute_force_reference():
    rng = np.random.default_rng(0)
    vectors = rng.random((300, 16), dtype=np.float32)
    got = evaluate_fidelity.brute_force_scores(vectors, vectors[:4], 7)
    full = evaluate_fidelity.normalize(vectors[:4]) @ evaluate_fidelity.normalize(vectors).T
    np.testing.assert_allclose(got, -np.sort(-full, axis=1)[:, :7], atol=1e-6)


def open_db(vectors_path, index=None, **kw):
    from similar_images.search import SimilarImages

    return SimilarImages.open(vectors=vectors_path, index=index, **kw)


def coco_toy(tmp_path, per_category: int = 10):
    """30 images in 3 categories; each vector points at its category (plus noise), so exact
    search ranks the 9 other images of the category first. Every third image also shows
    category 3 ("car") as a small second object."""
    rng = np.random.default_rng(0)
    images, vectors, names = {}, [], []
    for category in (1, 2, 3):
        for i in range(per_category):
            name = f"COCO_val2014_{category}{i:05d}.jpg"
            anns = [(category, 100.0)] + ([(3, 5.0)] if category != 3 and i % 3 == 0 else [])
            images[name] = anns
            names.append(name)
            vectors.append(np.eye(8)[category] * 5 + rng.normal(0, 0.1, 8))
    images["COCO_val2014_unannotated.jpg"] = []
    ann_path = tmp_path / "instances_val2014.json"
    ann_path.write_text(json.dumps(coco_instances(images)))
    return save_db(tmp_path, np.array(vectors), names), ann_path


def test_coco_report_known_answers(tmp_path):
    vectors_path, ann_path = coco_toy(tmp_path)
    labels = evaluate_coco.load_coco_labels(ann_path)
    report = evaluate_coco.coco_report({"toy/exact": open_db(vectors_path)}, labels, queries=1000,
                                       show_progress=False)
    rows = {(r[0], r[1]): dict(zip(report.headers[2:], r[2:])) for r in report.rows}
    perfect = rows[("toy/exact", "dominant")]
    # 9 same-category images ranked first: P@1 = P@8 = 1, P@20 = 9/20, mAP = 1
    assert perfect["P@1"] == perfect["P@8"] == 1.0
    assert perfect["P@20"] == pytest.approx(9 / 20)
    assert perfect["mAP@8"] == perfect["mAP@20"] == pytest.approx(1.0)
    # random: 9 relevant among the 29 other images
    assert rows[("random", "dominant")]["P@8"] == pytest.approx(9 / 29)
    # "any" is looser: never below "dominant"
    assert rows[("toy/exact", "any")]["P@20"] >= perfect["P@20"]
    assert rows[("random", "any")]["P@1"] > rows[("random", "dominant")]["P@1"]
    assert report.data["systems"]["toy/exact"]["queries"] == 30  # every annotated image
    written = evaluate.save_report(report, tmp_path / "out")
    assert json.loads(written["json"].read_text())["settings"]["ks"] == [1, 8, 20]
    assert written["png"].stat().st_size > 1000


def test_coco_report_sees_a_bad_ranking(tmp_path):
    # Vectors that ignore the category: precision falls to about the random baseline.
    vectors_path, ann_path = coco_toy(tmp_path)
    rng = np.random.default_rng(1)
    noise = save_db(tmp_path / "noise", rng.normal(size=(30, 8)), open_db(vectors_path).names)
    report = evaluate_coco.coco_report({"good": open_db(vectors_path), "noise": open_db(noise)},
                                       evaluate_coco.load_coco_labels(ann_path), show_progress=False)
    p8 = {(r[0], r[1]): r[report.headers.index("P@8")] for r in report.rows}
    assert p8[("good", "dominant")] == 1.0
    assert p8[("noise", "dominant")] < 0.6


class Broken:
    """A real database whose search loses its best result: fidelity must notice."""

    def __init__(self, db):
        self.db = db

    def __len__(self):
        return len(self.db)

    def search(self, queries, k):
        return [results[1:] for results in self.db.search(queries, k=k)]


def test_fidelity_report(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.random((400, 16), dtype=np.float32)
    path = save_db(tmp_path, vectors, [f"{i}.jpg" for i in range(400)])
    exact = open_db(path)
    mapped = open_vectors(path)
    report = evaluate_fidelity.fidelity_report({"exact": exact, "broken": Broken(exact)},
                                               {"exact": mapped, "broken": mapped}, queries=50,
                                               show_progress=False)
    rows = {r[0]: dict(zip(report.headers[1:], r[1:])) for r in report.rows}
    assert rows["exact"]["recall@1"] == rows["exact"]["recall@10"] == rows["exact"]["recall@100"] == 1.0
    assert rows["broken"]["recall@1"] == 0.0  # lost the self-match
    # its top 10 holds exact ranks 2..11: 9 of the exact top 10 (rank 11 counts only if tied)
    assert rows["broken"]["recall@10"] == pytest.approx(0.9, abs=0.01)
    assert rows["exact"]["ms/query"] > 0
    assert list(report.data["systems"]["exact"]["curve"]) == [1, 2, 5, 10, 20, 50, 100]


class Thumbnail:
    """A tiny real feature model: the image shrunk to 8 x 8 colours, mean removed.

    Enough to recognise resized or recompressed copies, fast, and no weights to load."""

    name = "thumbnail"
    input_size = (32, 32)
    dim = 8 * 8 * 3

    def embed(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        x = batch.astype(np.float32).reshape(n, 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(n, -1)  # (n, 192)
        return x - x.mean(axis=1, keepdims=True)

    def describe(self) -> dict:
        return {"name": self.name, "weights": "none", "dim": self.dim, "input_size": list(self.input_size),
                "runtime": "native", "precision": "fp32"}


def blob_image(seed: int) -> Image.Image:
    grid = np.random.default_rng(seed).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    return Image.fromarray(grid).resize((96, 72), Image.Resampling.BICUBIC)


def thumbnail_db(tmp_path, n: int = 10, with_flip_copy: bool = False):
    from similar_images.extract import extract_vectors

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(n):
        blob_image(i).save(folder / f"img{i}.png")
    if with_flip_copy:
        edits.hflip(blob_image(0)).save(folder / "img0__flip.png")
    names = sorted(p.name for p in folder.iterdir())
    extractor = Thumbnail()
    vectors, names, skipped = extract_vectors(names, folder, extractor, show_progress=False)
    assert not skipped
    path = save_db(tmp_path, vectors, names, model=extractor.describe(), image_dir=folder)
    return open_db(path, extractor=extractor)


def test_robustness_report_with_a_small_real_model(tmp_path):
    db = thumbnail_db(tmp_path)
    report = robustness.robustness_report({"thumbnail/exact": db}, queries=None, show_progress=False)
    rows = {r[0]: dict(zip(report.headers[1:], r[1:])) for r in report.rows}
    assert list(rows) == list(edits.EDITS) + ["all"]
    for edit in ("resize50", "jpeg30"):
        assert rows[edit]["R@1"] == 1.0 and rows[edit]["mean rank"] == 1.0
    assert 0.0 <= rows["all"]["R@1"] <= 1.0 and rows["all"]["R@10"] >= rows["all"]["R@1"]
    assert report.data["systems"]["thumbnail/exact"]["queries"] == 10
    assert len(report.data["systems"]["thumbnail/exact"]["ranks"]["hflip"]) == 10


def test_robustness_report_puts_systems_side_by_side(tmp_path):
    db = thumbnail_db(tmp_path, n=4)
    report = robustness.robustness_report({"a": db, "b": db}, edits=["resize50", "hflip"], show_progress=False)
    assert report.headers == ["edit", "system", "R@1", "R@10", "mean rank"]
    assert [r[:2] for r in report.rows] == [["resize50", "a"], ["", "b"], ["hflip", "a"], ["", "b"],
                                             ["all", "a"], ["", "b"]]
    assert report.rows[0][2:] == report.rows[1][2:]


def test_robustness_leaves_out_missing_originals(tmp_path):
    from similar_images.errors import ImageError

    db = thumbnail_db(tmp_path, n=4)
    (tmp_path / "photos" / "img2.png").unlink()
    report = robustness.robustness_report({"t": db}, edits=["resize50"], show_progress=False)
    system = report.data["systems"]["t"]
    assert system["queries"] == 3 and len(system["ranks"]["resize50"]) == 3
    assert system["skipped"] == [{"path": str(tmp_path / "photos" / "img2.png"), "reason": "not found"}]
    for name in ("img0.png", "img1.png", "img3.png"):
        (tmp_path / "photos" / name).unlink()
    with pytest.raises(ImageError, match="no original image could be loaded"):
        robustness.robustness_report({"t": db}, edits=["resize50"], show_progress=False)


def test_robustness_copy_groups_count_a_copy_as_the_original(tmp_path):
    db = thumbnail_db(tmp_path, n=4, with_flip_copy=True)
    row = db.names.index("img0.png")
    strict = robustness.edit_ranks(db, [row], ["hflip"], k=5, show_progress=False)["hflip"]
    grouped = robustness.edit_ranks(db, [row], ["hflip"], k=5, group_separator="__", show_progress=False)["hflip"]
    assert strict[0] > 1  # the flipped copy in the collection comes first, not the original
    assert grouped[0] == 1


# --- the command ---------------------------------------------------------------------------------

from click.testing import CliRunner  # noqa: E402

from similar_images.cli import main  # noqa: E402


def run_cli(*args):
    return CliRunner().invoke(main, ["evaluate", *map(str, args)], catch_exceptions=False)


def toy_vectors(tmp_path, n: int = 300):
    rng = np.random.default_rng(0)
    return save_db(tmp_path, rng.random((n, 16), dtype=np.float32), [f"{i}.jpg" for i in range(n)])


def test_cli_fidelity_compares_index_types_and_reuses_them(tmp_path):
    vectors = toy_vectors(tmp_path)
    out = tmp_path / "report"
    result = run_cli("fidelity", "--vectors", vectors, "--models", "exact,flat", "--queries", 30,
                     "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # the report (log records go to stderr)
    assert lines[1].split()[:4] == ["system", "recall@1", "recall@10", "recall@100"]
    assert lines[3].split()[:2] == ["toy/exact", "1.000"] and lines[4].split()[:2] == ["toy/flat", "1.000"]
    assert (out / "fidelity.json").exists() and (out / "fidelity.png").exists()
    built = out / "indexes" / f"{vectors.name}.flat.faiss.index"
    stamp = built.stat().st_mtime_ns
    assert run_cli("fidelity", "--vectors", vectors, "--models", "flat", "--queries", 5, "-o", out,
                   "--no-progress").exit_code == 0
    assert built.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_cli_uses_the_saved_index_by_default(tmp_path):
    from similar_images.db.build import build_index_files
    from similar_images.db.database import default_index_path

    vectors = toy_vectors(tmp_path)
    build_index_files(vectors, index_type="flat", show_progress=False)
    assert default_index_path(vectors).exists()
    result = run_cli("fidelity", "--vectors", vectors, "--queries", 10, "-o", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "toy/flat (saved)" in result.output


def test_cli_coco(tmp_path):
    vectors, annotations = coco_toy(tmp_path)
    result = run_cli("coco", "--vectors", vectors, "--annotations", annotations, "-o", tmp_path / "r",
                     "--no-progress")
    assert result.exit_code == 0, result.output
    assert "COCO semantic quality: 30 query images" in result.output
    assert json.loads((tmp_path / "r" / "coco.json").read_text())["systems"]["toy/exact"]["queries"] == 30


@pytest.mark.parametrize("args,message", [
    (["fidelity", "--models", "nosuch"], "no --vectors file holds model 'nosuch'"),
    (["fidelity", "--models", "toy:nosuch"], "unknown index type 'nosuch'"),
    (["coco", "--annotations", "missing.json"], "get_ms_coco_dataset.sh --annotations"),
    (["robustness", "--edits", "blur"], "unknown edit 'blur'"),
    (["robustness", "--images", "no_such_folder", "--models", "efficientnet-lite0"], "image folder not found"),
])
def test_cli_errors_are_one_line(tmp_path, args, message):
    vectors = toy_vectors(tmp_path)
    result = run_cli(*args, "--vectors", vectors, "-o", tmp_path / "r", "--no-progress")
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_cli_missing_database(tmp_path):
    result = run_cli("fidelity", "--vectors", tmp_path / "none.npy")
    assert result.exit_code == 1 and "vectors file not found" in result.output


def test_cli_usage_error():
    assert run_cli("speed").exit_code == 2


@pytest.mark.slow
def test_robustness_with_the_offline_model_on_shipped_photos(tmp_path):
    from similar_images.demo import sample_photos

    photos = ["astronaut", "coffee", "chelsea", "rocket", "motorcycle", "china", "flower", "grace_hopper"]
    sample_photos.write_collection(tmp_path / "photos", photos=photos, edits=[], show_progress=False)
    result = run_cli("robustness", "--images", tmp_path / "photos", "--models", "efficientnet-lite0",
                     "-o", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "r" / "robustness.json").read_text())
    system = saved["systems"]["efficientnet-lite0/exact"]
    assert system["queries"] == len(photos)
    assert system["metrics"]["all"]["recall@1"] >= 0.9
    assert (tmp_path / "r" / "robustness.png").exists()


def test_cli_index_option(tmp_path):
    from similar_images.db.build import build_index_files

    vectors = toy_vectors(tmp_path)
    build_index_files(vectors, tmp_path / "elsewhere.index", index_type="flat", show_progress=False)
    result = run_cli("fidelity", "--vectors", vectors, "--index", tmp_path / "elsewhere.index", "--queries", 5,
                     "-o", tmp_path / "r", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "toy/flat (saved)" in result.output
    result = run_cli("fidelity", "--vectors", vectors, "--index", tmp_path / "missing.index", "-o", tmp_path / "r")
    assert result.exit_code == 1 and "missing.index: index file not found" in result.output


def test_resolve_systems(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "b").mkdir()
    a = save_db(tmp_path, rng.random((5, 4), dtype=np.float32), list("abcde"))
    b = save_db(tmp_path / "b", rng.random((5, 4), dtype=np.float32), list("abcde"),
                model={"name": "other", "weights": "none", "dim": 4})

    def resolve(models, saved=()):
        return [(s.label, s.vectors, s.index)
                for s in evaluate_systems.resolve_systems([a, b], models, has_saved_index=lambda v: v in saved)]

    assert resolve(None) == [("toy/exact", a, "exact"), ("other/exact", b, "exact")]
    assert resolve(None, saved=(a,)) == [("toy/saved", a, "saved"), ("other/exact", b, "exact")]
    assert resolve(["flat", "hnsw"]) == [("toy/flat", a, "flat"), ("toy/hnsw", a, "hnsw")]
    assert resolve(["other:ivfpq", "toy"]) == [("other/ivfpq", b, "ivfpq"), ("toy/exact", a, "exact")]
    with pytest.raises(ValueError, match="they hold: toy, other"):
        resolve(["vgg16"])
