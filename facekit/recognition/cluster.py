"""Who looks alike? Maps of embeddings (UMAP, PCA, t-SNE) and clustering without labels.

Taught in notebook 05. Embeddings of one person sit close together, so

- a 2-D/3-D *projection* (:func:`project`) shows identities as islands, and
- *clustering* (:func:`cluster_faces`) finds the people in a pile of unlabelled faces: average
  linkage agglomerative clustering (scipy's UPGMA tree) cut at a squared-L2 ``threshold``
  (default), DBSCAN (``eps`` = ``threshold``) or scikit-learn's HDBSCAN (density based).

Distances are squared L2 on unit embeddings (in [0, 4]) as everywhere in facekit. Faces left
alone (clusters smaller than ``min_cluster_size``, or DBSCAN/HDBSCAN noise) get label ``-1``:
the "singletons" of an album.
"""

from __future__ import annotations

import numpy as np

from facekit.models.registry import DEFAULT_MODEL, model_spec, thresholds
from facekit.recognition.verify import pairwise_sq_l2

__all__ = ["METHODS", "PROJECTIONS", "cluster_faces", "clustering_scores",
           "sweep_cluster_threshold", "project"]

METHODS = ("agglomerative", "dbscan", "hdbscan")
PROJECTIONS = ("umap", "pca", "tsne")
# The cuts belong to the model that made the embeddings: ``thresholds(model).cluster`` (average
# linkage; 1.15 for facenet128, where both LFW and the varied sample set cluster well) and
# ``thresholds(model).dbscan`` (DBSCAN's eps; 0.6). Their ``where`` texts in the registry say how
# each was measured (bench/identify.py).


def _relabel_by_size(raw: np.ndarray, min_cluster_size: int) -> np.ndarray:
    """Clusters renumbered 0, 1, ... by decreasing size (ties: first appearance); clusters with
    fewer than ``min_cluster_size`` members (and noise, -1) become -1."""
    raw = np.asarray(raw)
    out = np.full(len(raw), -1, dtype=int)
    ids, first, counts = np.unique(raw, return_index=True, return_counts=True)
    order = sorted((i for i in range(len(ids)) if ids[i] >= 0 and counts[i] >= min_cluster_size),
                   key=lambda i: (-counts[i], first[i]))
    for new, i in enumerate(order):
        out[raw == ids[i]] = new
    return out


def _tree(d: np.ndarray, linkage: str) -> np.ndarray:
    """scipy's merge tree of a square distance matrix (computed once, cut at any threshold)."""
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import squareform

    if linkage not in ("average", "complete", "single"):
        raise ValueError(f"linkage must be 'average', 'complete' or 'single', got {linkage!r}")
    return scipy_linkage(squareform(d, checks=False), method=linkage)


def _cut(tree: np.ndarray, threshold: float, min_cluster_size: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    return _relabel_by_size(fcluster(tree, t=threshold, criterion="distance"), min_cluster_size)


def cluster_faces(embeddings: np.ndarray, method: str = "agglomerative", threshold: float | None = None,
                  min_cluster_size: int = 2, linkage: str = "average", *, model: str = DEFAULT_MODEL) -> np.ndarray:
    """Group faces by identity without labels. Taught in notebook 05.

    embeddings: (N, d) unit rows made by ``model`` (registry name or embeddings fingerprint;
    default ``"facenet128"``), whose calibrated cuts are the defaults. Returns int labels (N,): 0
    is the largest group, -1 a face left alone (singleton / noise).

    - ``"agglomerative"``: merge groups while their ``linkage`` distance (average squared L2
      by default; or ``"complete"``, ``"single"``) is at most ``threshold`` (default
      ``thresholds(model).cluster``, 1.15 for facenet128).
    - ``"dbscan"``: ``eps = threshold`` (squared L2, default ``thresholds(model).dbscan``, 0.6
      for facenet128), ``min_samples = min_cluster_size``.
    - ``"hdbscan"``: scikit-learn's HDBSCAN on L2 distances, ``min_cluster_size``; no threshold.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, d), got shape {x.shape}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    dim = model_spec(model).dim
    if threshold is None and method != "hdbscan" and len(x) and x.shape[1] != dim:  # the model's cut would be wrong
        raise ValueError(f"cluster_faces: the embeddings have {x.shape[1]} dims, but model {model!r} makes {dim}. "
                         "Fix: pass model= naming the model that made them (or threshold=...)")
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.array([0 if min_cluster_size <= 1 else -1])
    d = pairwise_sq_l2(x)
    if method == "agglomerative":
        t = thresholds(model).cluster if threshold is None else float(threshold)
        return _cut(_tree(d, linkage), t, min_cluster_size)
    elif method == "dbscan":
        from sklearn.cluster import DBSCAN

        eps = thresholds(model).dbscan
        if threshold is None and eps is None:
            raise ValueError(f"model {model!r} has no calibrated DBSCAN eps. Fix: pass threshold=...")
        t = eps if threshold is None else float(threshold)
        raw = DBSCAN(eps=t, min_samples=max(1, min_cluster_size), metric="precomputed").fit_predict(d)
    else:
        from sklearn.cluster import HDBSCAN

        raw = HDBSCAN(min_cluster_size=max(2, min_cluster_size), metric="precomputed",
                      copy=True).fit_predict(np.sqrt(d))
    return _relabel_by_size(raw, min_cluster_size)


def clustering_scores(true_labels, cluster_labels) -> dict[str, float]:
    """How well clusters match identities: ARI and NMI (1 = perfect, ~0 = chance).

    Faces labelled -1 count as clusters of their own (a face left alone is a group of one), so
    leaving everything unclustered is not rewarded. Also returns ``n_clusters`` (groups of 2+),
    ``n_true`` (identities) and ``singleton_fraction``.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    t = np.asarray(true_labels)
    c = np.asarray(cluster_labels).astype(int).copy()
    alone = c < 0
    c[alone] = c.max(initial=-1) + 1 + np.arange(alone.sum())
    return {"ari": float(adjusted_rand_score(t, c)), "nmi": float(normalized_mutual_info_score(t, c)),
            "n_clusters": int(len(set(np.asarray(cluster_labels)[~alone].tolist()))),
            "n_true": int(len(set(t.tolist()))), "singleton_fraction": float(alone.mean()) if len(c) else 0.0}


def sweep_cluster_threshold(embeddings: np.ndarray, true_labels, thresholds, method: str = "agglomerative",
                            **kwargs) -> list[dict]:
    """:func:`clustering_scores` for each threshold (one dict each, with ``threshold``).
    Used to choose the cut on labelled data. Taught in notebook 05."""
    if method == "agglomerative" and len(embeddings) > 1:  # one merge tree, many cuts
        tree = _tree(pairwise_sq_l2(np.asarray(embeddings, np.float64)), kwargs.get("linkage", "average"))
        m = kwargs.get("min_cluster_size", 2)
        return [{"threshold": float(t), **clustering_scores(true_labels, _cut(tree, t, m))} for t in thresholds]
    return [{"threshold": float(t), **clustering_scores(true_labels, cluster_faces(embeddings, method, t, **kwargs))}
            for t in thresholds]


def project(embeddings: np.ndarray, method: str = "umap", n_components: int = 2, random_state: int = 0,
            **kwargs) -> np.ndarray:
    """A 2-D/3-D map of embeddings: float32 (N, n_components). Taught in notebook 05.

    ``"umap"`` (umap-learn; ``n_neighbors=15``, ``min_dist=0.1``, cosine metric by default),
    ``"pca"`` (linear: distances along the top variance directions) or ``"tsne"`` (scikit-learn;
    ``perplexity=30`` capped at N-1; exact gradients up to 500 points, Barnes-Hut above).
    ``kwargs`` go to the underlying estimator.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {PROJECTIONS}, got {method!r}")
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"need (N >= 3, d) embeddings to project, got shape {x.shape}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=n_components, random_state=random_state, **kwargs).fit_transform(x).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        # exact gradients are faster than Barnes-Hut below a few hundred points (and exact)
        kw = {"perplexity": min(30.0, len(x) - 1.0), "init": "pca",
              "method": "exact" if len(x) <= 500 else "barnes_hut", **kwargs}
        return TSNE(n_components=n_components, random_state=random_state, **kw).fit_transform(x).astype(np.float32)
    import warnings

    import umap

    kw = {"n_neighbors": min(15, len(x) - 1), "min_dist": 0.1, "metric": "cosine", **kwargs}
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state"
        warnings.simplefilter("ignore", UserWarning)
        return umap.UMAP(n_components=n_components, random_state=random_state, **kw).fit_transform(x).astype(np.float32)
