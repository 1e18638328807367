"""duplicates/find.py, pairs.py, groups.py: pairs against brute force, the grouping and
keeper rules, byte-identical files, and the calibrated default on real photos."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from _duplicates_db import GROUPS, make_collection, open_collection

from similar_images.duplicates import duplicates_of, find_duplicates
from similar_images.duplicates.groups import FileFacts, group_ids, keeper_order
from similar_images.duplicates.pairs import Pairs, identical_files, near_pairs, unique_pairs
from similar_images.duplicates.threshold import ThresholdError, pair_counts


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_collection(tmp_path_factory.mktemp("dups") / "images")


@pytest.fixture(scope="module")
def db(files):
    return open_collection(files)


def brute_force_pairs(vectors, threshold):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit.T
    a, b = np.triu_indices(len(unit), 1)
    keep = scores[a, b] >= threshold
    return {(int(i), int(j)) for i, j in zip(a[keep], b[keep])}


@pytest.mark.parametrize("index_type", ["flat", "hnsw", None])
def test_near_pairs_are_the_brute_force_pairs_in_small_batches(tmp_path, index_type):
    files = make_collection(tmp_path / "images", index_type=index_type)
    db = open_collection(files)
    vectors = np.asarray(db.database.vectors)
    found = near_pairs(db, threshold=0.5, k=len(db), batch_size=4, show_progress=False)
    assert {(int(a), int(b)) for a, b in zip(found.a, found.b)} == brute_force_pairs(vectors, 0.5)
    assert np.all(found.a < found.b) and len(set(zip(found.a, found.b))) == len(found)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(found.score, np.einsum("ij,ij->i", unit[found.a], unit[found.b]), atol=1e-5)


def test_near_pairs_through_an_ivfpq_index_find_the_planted_copies(tmp_path):
    from similar_images.db.build import build_index_files
    from similar_images.db.vectors import save_vectors
    from similar_images.evaluation.synthetic import clustered_vectors
    from similar_images.search import SimilarImages

    base = clustered_vectors(1500, 64, seed=3)
    rng = np.random.default_rng(3)
    sources = rng.choice(1500, 150, replace=False)
    copies = base[sources] * (1 + 0.1 * rng.standard_normal((150, 64)).astype(np.float32))
    vectors = np.concatenate([base, copies])
    path = tmp_path / "v.txt.saved_predictions.npy"
    save_vectors(path, vectors, {"model": {"name": "synthetic", "dim": 64}, "names": [f"{i}.jpg" for i in range(1650)]})
    build_index_files(path, index_type="ivfpq", show_progress=False)
    db = SimilarImages.open(path)
    assert "IVF" in db.database.index_manifest["spec"]
    found = near_pairs(db, threshold=0.95, k=10, show_progress=False)
    got, want = set(zip(found.a.tolist(), found.b.tolist())), brute_force_pairs(vectors, 0.95)
    assert got <= want  # scores are exact: nothing below the threshold
    assert len(got) >= 0.99 * len(want) and len(want) >= 150


def test_unique_pairs_orders_drops_self_pairs_and_keeps_the_best_score():
    pairs = unique_pairs([3, 1, 2, 2], [1, 3, 2, 0], [0.8, 0.9, 1.0, 0.7])
    assert list(zip(pairs.a.tolist(), pairs.b.tolist())) == [(0, 2), (1, 3)]
    assert pairs.score.tolist() == pytest.approx([0.7, 0.9])


def test_groups_match_the_known_groups_and_keepers_are_the_largest(db, files):
    found = find_duplicates(db, threshold=0.9, k=5, show_progress=False)
    got = sorted(sorted(m.name for m in g.members) for g in found.groups)
    want = sorted([sorted(n for n in files["names"] if n.startswith(label)) for label in GROUPS]
                  + [["copy_of_single.jpg", "single_00.jpg"]])
    assert got == want
    for group in found.groups:
        keeper = group.keeper
        assert keeper.keep and keeper.score == 1.0 and not any(m.keep for m in group.removable)
        assert keeper.width * keeper.height == max(m.width * m.height for m in group.members)
        assert [m.score for m in group.removable] == sorted((m.score for m in group.removable), reverse=True)
    assert sorted(found.remove_paths()) == sorted(m.path for g in found.groups for m in g.members if not m.keep)


def test_byte_identical_files_are_grouped_whatever_the_threshold(db):
    for threshold in (0.5, 0.99, 1.0):
        found = find_duplicates(db, threshold=threshold, show_progress=False)
        copy = [g for g in found.groups if "copy_of_single.jpg" in {m.name for m in g.members}]
        assert len(copy) == 1 and {m.name for m in copy[0].members} == {"copy_of_single.jpg", "single_00.jpg"}
        twin = next(m for m in copy[0].members if not m.keep)
        assert twin.identical and twin.score < 0.5  # its made-up vector is unlike its twin's
    # without hashing, only the vectors count: the copy is alone
    found = find_duplicates(db, threshold=0.9, hash_files=False, show_progress=False)
    assert not any("copy_of_single.jpg" in {m.name for m in g.members} for g in found.groups)


def test_identical_files_compares_content_not_size(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "b").write_bytes(b"x" * 100)
    (tmp_path / "c").write_bytes(b"y" * 100)  # same size, other bytes
    (tmp_path / "d").write_bytes(b"x" * 99)
    paths = [tmp_path / n for n in ("a", "b", "c", "d", "missing")]
    assert identical_files(paths, show_progress=False) == [[0, 1]]


def _chain(n=5, step=0.5):
    """Unit vectors on a circle arc: neighbours score cos(step), the ends are unlike."""
    angles = step * np.arange(n)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def test_components_chain_through_near_misses_and_the_centre_rule_does_not():
    vectors = _chain()  # consecutive cosines 0.878, ends -0.416
    threshold = 0.85
    a, b = np.arange(4), np.arange(1, 5)
    pairs = Pairs(a, b, np.full(4, np.cos(0.5), np.float32))
    chained = group_ids(5, pairs, [], vectors=vectors, threshold=threshold, rule="components")
    assert [g.tolist() for g in chained] == [[0, 1, 2, 3, 4]]
    centred = group_ids(5, pairs, [], vectors=vectors, threshold=threshold, rule="centre")
    for group in centred:  # every member is near its group's centre: no drift
        unit = vectors[group]
        assert (unit @ unit.T).max(axis=1).min() >= threshold
        assert np.any((unit @ unit.T >= threshold).all(axis=1))
    assert sorted(len(g) for g in centred) == [2, 3]
    # identical sets join whatever the rule
    joined = group_ids(5, pairs, [[0, 4]], vectors=vectors, threshold=threshold, rule="centre")
    assert [g.tolist() for g in joined] == [[0, 1, 2, 3, 4]]


def test_keeper_rule_resolution_then_bytes_then_shortest_name():
    facts = [FileFacts(100, 100, 5000, "b_long_name.jpg"), FileFacts(200, 100, 10, "z.jpg"),
             FileFacts(100, 100, 9000, "c.jpg"), FileFacts(100, 100, 5000, "a.jpg")]
    assert keeper_order(facts) == [1, 2, 3, 0]


def test_bad_rule_k_and_auto_threshold_for_an_uncalibrated_model(db):
    with pytest.raises(ValueError, match="centre, components"):
        find_duplicates(db, threshold=0.9, rule="single", show_progress=False)
    with pytest.raises(ValueError, match="k must be"):
        find_duplicates(db, threshold=0.9, k=0, show_progress=False)
    with pytest.raises(ThresholdError, match="no calibrated duplicate threshold for model 'synthetic'"):
        find_duplicates(db, threshold="auto", show_progress=False)


def test_duplicates_of_one_image(db, files):
    beach = files["names"].index("beach_0.jpg")
    hits = duplicates_of(db, beach, threshold=0.9)
    assert sorted(h.path for h in hits) == ["beach_1.jpg", "beach_2.jpg"]
    assert all(h.score >= 0.9 for h in hits) and beach not in [h.id for h in hits]
    assert duplicates_of(db, files["names"].index("single_05.jpg"), threshold=0.9) == []


# --- the calibrated default on real photos ------------------------------------------------------


@pytest.mark.slow
def test_default_threshold_on_a_generated_collection_with_efficientnet(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    from similar_images.db.build import build_index_files
    from similar_images.duplicates import calibration
    from similar_images.extract import run_extraction
    from similar_images.features import get_extractor
    from similar_images.search import SimilarImages

    folder = tmp_path / "images"
    # the demo collection's edits: not the edit set the threshold was chosen on
    names = calibration.write_generated_set(folder, edit_set="sample", show_progress=False)
    shutil.copyfile(folder / "chelsea.jpg", folder / "chelsea__copy.jpg")
    names.append("chelsea__copy.jpg")
    (tmp_path / "files.txt").write_text("\n".join(names) + "\n")
    vectors = tmp_path / "files.txt.saved_predictions.npy"
    run_extraction(tmp_path / "files.txt", folder, vectors, get_extractor("efficientnet-lite0"), batch_size=16,
                   workers=1, show_progress=False)
    build_index_files(vectors, index_type="flat", show_progress=False)
    db = SimilarImages.open(vectors)
    found = find_duplicates(db, threshold="auto", show_progress=False)

    truth = calibration.truth(list(db.names))
    predicted = np.arange(len(db))
    for group in found.groups:
        predicted[[m.id for m in group.members]] = len(db) + group.number
    tp, predicted_pairs, true_pairs = pair_counts(predicted, truth)
    assert tp / predicted_pairs >= 0.95 and tp / true_pairs >= 0.9, (tp, predicted_pairs, true_pairs)
    assert adjusted_rand_score(truth, predicted) >= 0.9
    # the raw pairs above the threshold, too
    pairs = near_pairs(db, threshold=found.threshold, k=10, show_progress=False)
    correct = int((truth[pairs.a] == truth[pairs.b]).sum())
    assert correct / len(pairs) >= 0.95 and correct / true_pairs >= 0.9
    copy = next(g for g in found.groups if "chelsea__copy.jpg" in {m.name for m in g.members})
    assert "chelsea.jpg" in {m.name for m in copy.members}


def test_cosines_to_reads_in_chunks_and_matches_numpy():
    from similar_images.duplicates.groups import cosines_to

    vectors = np.random.default_rng(2).standard_normal((30, 8)).astype(np.float32)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    members = np.array([1, 4, 5, 9, 20, 29])
    np.testing.assert_allclose(cosines_to(vectors, 4, members, chunk=4), unit[members] @ unit[4], atol=1e-6)


def _naive_centre_groups(unit, threshold):
    """The centre rule on the full similarity matrix of a small set (the reference)."""
    s = unit @ unit.T
    edges = (s >= threshold) & ~np.eye(len(unit), dtype=bool)
    from similar_images.duplicates.groups import components

    a, b = np.nonzero(np.triu(edges))
    labels = components(len(unit), a, b)
    out = []
    for label in np.unique(labels):
        rest = sorted(np.flatnonzero(labels == label).tolist())
        while len(rest) > 1:
            sub = edges[np.ix_(rest, rest)]
            if not sub.any():
                break
            degree, summed = sub.sum(1), (s[np.ix_(rest, rest)] * sub).sum(1)
            centre = rest[min(range(len(rest)), key=lambda i: (-degree[i], -summed[i], rest[i]))]
            joined = sorted({r for r in rest if s[centre, r] >= threshold} | {centre})
            if len(joined) > 1:
                out.append(joined)
            rest = [r for r in rest if r not in joined]
    return sorted(out)


def test_centre_rule_matches_the_reference_on_overlapping_clusters():
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((15, 16))
    vectors = centres[rng.integers(0, 15, 200)] + 0.6 * rng.standard_normal((200, 16))
    unit = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    threshold = 0.75
    s = unit @ unit.T
    a, b = np.triu_indices(200, 1)
    keep = s[a, b] >= threshold
    got = group_ids(200, Pairs(a[keep], b[keep], s[a, b][keep]), [], vectors=unit, threshold=threshold)
    want = _naive_centre_groups(unit, threshold)
    assert sorted(g.tolist() for g in got) == want and any(len(g) > 2 for g in want)
    chained = group_ids(200, Pairs(a[keep], b[keep], s[a, b][keep]), [], vectors=unit, threshold=threshold,
                        rule="components")
    assert len(chained) < len(got)  # the components were split: the test exercises the rule
