"""build --engine ray: shards read only their slice; the sharded index equals the one-process build."""

from __future__ import annotations

import numpy as np
import pytest
from _ray_cluster import local_ray, ray_auth_off  # noqa: F401 (fixtures)

from similar_images.cluster.ray_build import build_index_files_ray, encode_slice, shard_ranges
from similar_images.db import index as ix
from similar_images.db.build import build_index_files
from similar_images.db.vectors import save_vectors
from similar_images.evaluation.synthetic import clustered_vectors


class RowsRead:
    """A vectors array that records every row range read from it."""

    def __init__(self, array):
        self.array, self.reads = array, []
        self.shape, self.dtype = array.shape, array.dtype

    def __len__(self):
        return len(self.array)

    def __getitem__(self, key):
        if not isinstance(key, slice):
            raise AssertionError(f"read by {key!r}, not by a row range")
        start, stop, _ = key.indices(len(self.array))
        self.reads.append((start, stop))
        return self.array[key]


def test_shard_ranges_cover_the_rows_once():
    ranges = shard_ranges(10, 3)
    assert ranges == [(0, 3), (3, 7), (7, 10)]
    assert shard_ranges(2, 5) == [(0, 1), (1, 2)]


def test_a_shard_reads_only_its_slice():
    vectors = clustered_vectors(3000, 64, seed=1)
    index = ix.new_index(ix.plan_index("ivfpq", 3000, 64, nlist=8), 64)
    ix.train_index(index, vectors)
    recorded = RowsRead(vectors)
    encode_slice(index, recorded, 1000, 2100, chunk=256)
    assert all(1000 <= start < stop <= 2100 for start, stop in recorded.reads)
    assert sum(stop - start for start, stop in recorded.reads) == 1100  # each row once
    assert max(stop - start for start, stop in recorded.reads) <= 256
    assert index.ntotal == 1100
    import faiss

    ivf = faiss.extract_index_ivf(index)
    ids = np.concatenate([faiss.rev_swig_ptr(ivf.invlists.get_ids(i), ivf.invlists.list_size(i)).copy()
                          for i in range(ivf.nlist) if ivf.invlists.list_size(i)])
    assert np.array_equal(np.sort(ids), np.arange(1000, 2100))  # ids are row numbers


@pytest.mark.slow
@pytest.mark.parametrize("index_type", ["ivfpq", "pca-ivfpq", "opq-ivfpq"])
def test_sharded_build_equals_one_process_build(tmp_path, local_ray, index_type):  # noqa: F811
    vectors = clustered_vectors(5000, 512, seed=2)
    save_vectors(tmp_path / "v.npy", vectors, {"model": {"name": "synthetic"},
                                                "names": [f"{i}.jpg" for i in range(len(vectors))]})
    one = build_index_files(tmp_path / "v.npy", tmp_path / "one.index", index_type=index_type, show_progress=False)
    sharded = build_index_files_ray(tmp_path / "v.npy", tmp_path / "sharded.index", index_type=index_type, shards=3,
                                    show_progress=False)
    assert sharded["shards"] == 3 and sharded["pool_factor"] == one["pool_factor"]
    assert abs(sharded["recall"]["recall_at_10"] - one["recall"]["recall_at_10"]) <= 0.005
    # trained once on the same sample, lists merged in shard order: the very same index
    assert (tmp_path / "sharded.index").read_bytes() == (tmp_path / "one.index").read_bytes()
