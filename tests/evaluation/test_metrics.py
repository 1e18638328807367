"""Ranking metrics on hand-made rankings whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from similar_images.evaluation import metrics

# Two queries, five ranks each.
#   q0: hit miss hit miss miss   -> P@1 = 1, P@3 = 2/3, P@5 = 2/5
#   q1: miss miss miss miss hit  -> P@1 = 0, P@3 = 0,   P@5 = 1/5
RELEVANCE = np.array([
    [1, 0, 1, 0, 0],
    [0, 0, 0, 0, 1],
], dtype=bool)


def test_precision_at_k_known_values():
    assert metrics.precision_at_k(RELEVANCE, 1).tolist() == [1.0, 0.0]
    np.testing.assert_allclose(metrics.precision_at_k(RELEVANCE, 3), [2 / 3, 0.0])
    np.testing.assert_allclose(metrics.precision_at_k(RELEVANCE, 5), [2 / 5, 1 / 5])


def test_precision_counts_missing_results_as_not_relevant():
    # Only 2 results came back but k = 4: the two missing ranks are misses.
    np.testing.assert_allclose(metrics.precision_at_k([[True, True]], 4), [0.5])


def test_average_precision_known_values():
    # q0: hits at ranks 1 and 3 -> (1/1 + 2/3) / min(5, 2 relevant in collection) = 5/6
    # q1: hit at rank 5, 3 relevant in the collection -> (1/5) / 3 = 1/15
    ap = metrics.average_precision_at_k(RELEVANCE, 5, n_relevant=[2, 3])
    np.testing.assert_allclose(ap, [5 / 6, 1 / 15])
    assert metrics.mean_average_precision_at_k(RELEVANCE, 5, [2, 3]) == pytest.approx((5 / 6 + 1 / 15) / 2)


def test_average_precision_without_collection_counts_uses_hits_found():
    ap = metrics.average_precision_at_k(RELEVANCE, 5)
    np.testing.assert_allclose(ap, [5 / 6, 1 / 5])


def test_average_precision_perfect_and_empty():
    perfect = np.array([[1, 1, 1, 0]], dtype=bool)
    assert metrics.average_precision_at_k(perfect, 4, n_relevant=[3])[0] == pytest.approx(1.0)
    # More relevant items than k: a perfect top-k still scores 1.
    assert metrics.average_precision_at_k([[1, 1]], 2, n_relevant=[10])[0] == pytest.approx(1.0)
    # No relevant item anywhere: 0, not NaN.
    assert metrics.average_precision_at_k([[0, 0]], 2, n_relevant=[0])[0] == 0.0


def test_average_precision_rewards_earlier_hits():
    early = metrics.average_precision_at_k([[1, 0, 0]], 3, [1])[0]
    late = metrics.average_precision_at_k([[0, 0, 1]], 3, [1])[0]
    assert early == 1.0 and late == pytest.approx(1 / 3)


def test_ranks_recall_and_mean_rank():
    ranked = np.array([[5, 1, 2], [1, 5, 2], [1, 2, 3]])
    ranks = metrics.ranks_of([5, 5, 5], ranked)
    assert ranks.tolist() == [1, 2, 0]
    assert metrics.recall_at_k_from_ranks(ranks, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k_from_ranks(ranks, 2) == pytest.approx(2 / 3)
    # The target missing from 3 results counts as rank 4.
    assert metrics.mean_rank(ranks, missing_rank=4) == pytest.approx((1 + 2 + 4) / 3)


def test_random_precision():
    np.testing.assert_allclose(metrics.random_precision([1, 5, 0], 10), [0.1, 0.5, 0.0])


@pytest.mark.parametrize("n_relevant,n_candidates,k", [(1, 5, 3), (3, 10, 4), (7, 9, 8), (4, 6, 10)])
def test_random_average_precision_matches_enumeration(n_relevant, n_candidates, k):
    # Brute force over many seeded shuffles agrees with the closed form.
    rng = np.random.default_rng(0)
    rel = np.zeros(n_candidates, dtype=bool)
    rel[:n_relevant] = True
    shuffles = np.stack([rng.permutation(rel) for _ in range(20000)])  # (20000, N)
    simulated = metrics.average_precision_at_k(shuffles, k, np.full(len(shuffles), n_relevant)).mean()
    exact = metrics.random_average_precision([n_relevant], n_candidates, k)[0]
    assert exact == pytest.approx(simulated, abs=0.01)


def test_random_average_precision_extremes():
    # Every candidate relevant: any ranking is perfect.
    assert metrics.random_average_precision([10], 10, 5)[0] == pytest.approx(1.0)
    assert metrics.random_average_precision([0], 10, 5)[0] == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError):
        metrics.precision_at_k([1, 0, 1], 1)  # not 2-d
    with pytest.raises(ValueError):
        metrics.precision_at_k([[1]], 0)
    with pytest.raises(ValueError):
        metrics.ranks_of([1, 2], [[1, 2]])
