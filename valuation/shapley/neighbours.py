"""Approximate nearest neighbours for KNN-Shapley on millions of rows (optional extra).

Where it sits: a neighbour-search strategy for `knn.knn_shapley(..., search=...)`, which by
default finds each validation point's K* nearest training points exactly (a distance matrix
per chunk and a top-K* selection, `O(N d)` per validation point). An HNSW graph
(Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search using
Hierarchical Navigable Small World graphs", TPAMI 2020) answers a query in roughly
`O(log N)` distance evaluations after an `O(N log N)` build, so it pays off when many
validation points are valued against the same training set. The graph comes from faiss
(`pip install "valuate[ann]"`, i.e. faiss-cpu).

Approximate means: a returned neighbour list may miss some of the true K* nearest (recall
below 1), so values carry that error on top of the truncation bound; measure it against the
exact search on a size where both run (`experiments/bench_scale.py` reports it). A graph
built with several threads depends on their timing; `threads=1` builds the same graph
every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ValuationError

__all__ = ["Search", "hnsw_search"]

Search = Callable[[np.ndarray, int], np.ndarray]
"""`search(x_valid (c, d), kstar) -> (c, kstar)` int training indices, nearest first."""


def hnsw_search(x_train: Any, *, links: int = 32, ef_construction: int = 100,
                ef_search: float = 1.2, threads: int | None = None) -> Search:
    """An HNSW index over `x_train` `(N, d)` (Euclidean), as a `Search` function.

    Args:
      x_train: training features or embeddings.
      links: graph neighbours per node (HNSW's M); more = better recall, more memory
        (about `N * (d + 2 * links)` floats).
      ef_construction: candidate list size while building.
      ef_search: candidate list size per query, as a multiple of K* (at least K*).
      threads: OpenMP threads for the build (default all; 1 for a reproducible graph).

    Returns:
      `search(x_valid, kstar)`.
    """
    try:
        import faiss
    except ImportError:
        raise ValuationError("the HNSW index needs faiss: pip install 'valuate[ann]' (or "
                             "faiss-cpu), or use the exact search (index='exact')") from None
    xt = np.ascontiguousarray(x_train, np.float32)
    if xt.ndim != 2:
        raise ValuationError(f"x_train must be 2-D (N, d), got shape {xt.shape}")
    if not (links >= 2 and ef_construction >= 1 and ef_search >= 1.0):
        raise ValuationError("links must be >= 2, ef_construction >= 1 and ef_search >= 1")
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads or previous)
    try:
        index = faiss.IndexHNSWFlat(xt.shape[1], int(links))
        index.hnsw.efConstruction = int(ef_construction)
        index.add(xt)
    finally:
        faiss.omp_set_num_threads(previous)

    def search(x_valid, kstar):
        index.hnsw.efSearch = int(np.ceil(ef_search * kstar))
        _, found = index.search(np.ascontiguousarray(x_valid, np.float32), int(kstar))
        # fewer than kstar reachable nodes is marked -1: impossible for kstar <= N in a
        # connected graph, but never let it index the last training point
        if (found < 0).any():
            raise ValuationError("the HNSW index returned fewer than K* neighbours; raise "
                                 "ef_search or links")
        return found.astype(np.int32)

    return search
