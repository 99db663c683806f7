"""Every measured figure the notebooks, the README and facekit's docstrings quote agrees with its one
source, ``bench/facts.json`` (written by the bench scripts through ``bench/facts.py``).

Each row of ``QUOTES`` is a file, the quoted text with ``{}`` where each figure goes, and the figures
(bench, run, key, format). The test formats the figures from the facts file into the text and looks
for the result in the file (whitespace, line breaks and, in Python files, the joins between adjacent
string literals do not matter). So it fails when a quoted number disagrees with its source, and when
the quoted text is gone (a figure must not be edited away from its check). When a bench is re-run
and a figure changes, update the text (or point the row at the new run).
"""

from __future__ import annotations

import importlib.util
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("facekit_bench_facts", ROOT / "bench" / "facts.py")
facts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(facts)

Z4, Z1, XE = "amd-f25-m17", "amd-zen1", "intel-xeon"  # machine ids of bench/facts.json
XO = "intel-xeon onnx-detector"
MR = "intel-f6-m167 --robust-per-fold 30 --quiet"  # bench/models.py's run (issue #23)  # the default pipeline (MTCNN in ONNX Runtime), notebook 02 in the book's full build


# --- formats: round half up on the figure as written in the facts file ----------------------
def _round(v, nd: int) -> Decimal:
    return Decimal(repr(float(v))).quantize(Decimal(1).scaleb(-nd), rounding=ROUND_HALF_UP)


def f(nd: int):
    """``nd`` decimals: f(2)(0.145) == "0.15"."""
    return lambda v: f"{_round(v, nd):.{nd}f}"


def pct(nd: int):
    """a fraction as a percentage: pct(2)(0.99383) == "99.38%"."""
    return lambda v: f"{_round(100 * float(v), nd):.{nd}f}%"


def num(nd: int):
    """a fraction as a number of percent without the sign: num(1)(0.026) == "2.6"."""
    return lambda v: f"{_round(100 * float(v), nd):.{nd}f}"


def integer(v) -> str:
    return f"{int(round(float(v))):,}"


def text(v) -> str:
    return str(v)


def derived(fn, fmt):
    """A figure computed from the facts (``fn(data)``), then formatted."""
    return ("derived", fn, fmt)


def F(bench, run, key, fmt):
    return (bench, run, key, fmt)


NB = "notebooks/"
QUOTES = [
    # --- README ------------------------------------------------------------------------------
    ("README.md", "HNSW (M=32) reached {} of exact search's rank-1 rate at {} ms a query and {} GB; the inverted "
     "file {} at {} ms and {} GB", [F("gallery", Z4, "hnsw_ef128_recall_1m", f(3)), F("gallery", Z4, "hnsw_ef128_p50_ms_1m", f(2)),
                                    F("gallery", Z4, "hnsw_memory_gb_1m", f(2)), F("gallery", Z4, "recall_at_1_1m", f(3)),
                                    F("gallery", Z4, "p50_ms_1m", f(3)), F("gallery", Z4, "memory_gb_1m", f(3))]),
    ("README.md", "Training it takes ~{} s at 1M faces", [F("gallery", Z4, "build_s_1m", integer)]),
    ("README.md", "later runs take {} s at 1M faces", [F("gallery_reload", Z4, "later_run_s", f(2))]),
    # --- notebook 01 ---------------------------------------------------------------------------
    (NB + "01_face_detection.ipynb", "facekit verifies {} of the pairs correctly ({} errors), without rotation {} ({} errors)",
     [F("lfw", Z1, "lfw_accuracy", pct(2)), F("lfw", Z1, "errors", integer),
      F("lfw", Z1, "lfw_accuracy_no_align", pct(2)), F("lfw", Z1, "errors_no_align", integer)]),
    (NB + "01_face_detection.ipynb", "the same code scores {} on the Zen 4 machine", [F("lfw", Z4, "lfw_accuracy", pct(2))]),
    # --- notebook 02 ---------------------------------------------------------------------------
    (NB + "02_embedding_geometry.ipynb", "(`bench/embed.py`: {} ms on the Zen 4 machine, {} ms on the Zen 1 machine",
     [F("embed", Z4, "single_face_ms", f(1)), F("embed", Z1, "single_face_ms", f(1))]),
    (NB + "02_embedding_geometry.ipynb", "drops accuracy from {} to {} (`bench/lfw.py --levers`",
     [F("lfw", Z1, "lfw_accuracy", pct(2)), F("lfw", Z1, "lfw_accuracy_select_confidence", pct(2))]),
    (NB + "02_embedding_geometry.ipynb", "(`bench/lfw.py`: {}; the ten per-fold choices lie in {}–{})",
     [F("lfw", Z1, "threshold", f(3)), F("lfw", Z1, "fold_threshold_min", f(3)), F("lfw", Z1, "fold_threshold_max", f(3))]),
    (NB + "02_embedding_geometry.ipynb", "the best threshold on View 1's 2,200 DevTrain pairs is {}, and at that threshold "
     "the 1,000 DevTest pairs score {}", [F("lfw", Z1 + " --view1", "view1_threshold", f(3)),
                                          F("lfw", Z1 + " --view1", "view1_dev_test_accuracy", pct(1))]),
    (NB + "02_embedding_geometry.ipynb", "is {} of the {} different-people pairs (at threshold {}, where {} of same-person "
     "pairs are still accepted)", [F("notebook02_full", Z4, "far_pairs_at_0.1pct", integer),
                                   F("notebook02_full", Z4, "impostor_pairs", integer),
                                   F("notebook02_full", Z4, "threshold_at_0.1pct", f(2)),
                                   F("notebook02_full", Z4, "tar_at_0.1pct", pct(1))]),
    (NB + "02_embedding_geometry.ipynb", "At the default 1.22, {} of the 3,000 are accepted: {} ({}–{})",
     [F("notebook02_full", Z4, "false_accepts_at_1.22", integer), F("notebook02_full", Z4, "far_at_1.22", pct(1)),
      F("notebook02_full", Z4, "far_at_1.22_ci_low", pct(2)), F("notebook02_full", Z4, "far_at_1.22_ci_high", pct(2))]),
    (NB + "02_embedding_geometry.ipynb", "get {} out of it on all 6,000 pairs (fold-to-fold std {}, **standard error {}**",
     [F("lfw", XO, "lfw_accuracy", pct(2)), F("lfw", XO, "lfw_std", num(2)), F("lfw", XO, "lfw_se", num(2))]),
    (NB + "02_embedding_geometry.ipynb", "the TensorFlow detector the same pipeline got {} (std {}, standard error {};",
     [F("lfw", Z1, "lfw_accuracy", pct(2)), F("lfw", Z1, "lfw_std", num(2)), F("lfw", Z1, "lfw_se", num(2))]),
    (NB + "02_embedding_geometry.ipynb", "the same {} on an Intel Xeon, and {} with the same code on the Zen 4 machine",
     [F("lfw", XE, "lfw_accuracy", pct(2)), F("lfw", Z4, "lfw_accuracy", pct(2))]),
    (NB + "02_embedding_geometry.ipynb", "({} on all pairs, **four pairs more** than plain squared L2: {} against {} of 6,000",
     [F("lfw", XO, "lfw_accuracy_subtract_mean", pct(2)), F("lfw", XO, "correct_pairs_subtract_mean", integer),
      F("lfw", XO, "correct_pairs", integer)]),
    (NB + "02_embedding_geometry.ipynb", "facekit's pipeline gets {} (standard error {}) on the 6,000 pairs",
     [F("lfw", XO, "lfw_accuracy", pct(2)), F("lfw", XO, "lfw_se", num(2))]),
    # --- notebook 03 ---------------------------------------------------------------------------
    (NB + "03_triplet_loss.ipynb", "On all {} photos of the {} LFW people with at least 20 photos ({} billion triplets",
     [F("notebook03_full", Z4, "photos", integer), F("notebook03_full", Z4, "people", integer),
      F("notebook03_full", Z4, "triplets_billion", f(2))]),
    (NB + "03_triplet_loss.ipynb", "**{}** of the triplets are in the right order and **{}** are already separated",
     [F("notebook03_full", Z4, "ordered", pct(3)), F("notebook03_full", Z4, "separated", pct(3))]),
    (NB + "03_triplet_loss.ipynb", "yet it already separates {} of LFW's triplets",
     [F("notebook03_full", Z4, "separated", pct(2))]),
    # --- notebook 04 ---------------------------------------------------------------------------
    (NB + "04_svm_identification.ipynb", "31 enrolled with {} gallery photos, {} photos of test strangers",
     [F("notebook04_full", Z4, "gallery_photos", integer), F("notebook04_full", Z4, "test_stranger_photos", integer)]),
    (NB + "04_svm_identification.ipynb", "lets in no test stranger with 1, 2 or 4 enrolled people, {} with 8, {} with 16 "
     "and **{} with all 31**", [F("notebook04_full", Z4, "stranger_accept_default/8", pct(2)),
                                F("notebook04_full", Z4, "stranger_accept_default/16", pct(2)),
                                F("notebook04_full", Z4, "stranger_accept_default/31", pct(1))]),
    (NB + "04_svm_identification.ipynb", "at 1.0 the same galleries let in {}, {}, {}, {}, {} and {}",
     [F("notebook04_full", Z4, "stranger_accept_at_1/1", pct(0)), F("notebook04_full", Z4, "stranger_accept_at_1/2", pct(2)),
      F("notebook04_full", Z4, "stranger_accept_at_1/4", pct(2)), F("notebook04_full", Z4, "stranger_accept_at_1/8", pct(1)),
      F("notebook04_full", Z4, "stranger_accept_at_1/16", pct(1)), F("notebook04_full", Z4, "stranger_accept_at_1/31", pct(0))]),
    (NB + "04_svm_identification.ipynb", "and finds {} at 0.8, the figure the registry quotes",
     [F("identify", Z1, "stranger_accept_default_g31xhalf", pct(1))]),
    (NB + "04_svm_identification.ipynb", "such as the class centre: {} with all 31 at 0.8",
     [F("notebook04_full", Z4, "stranger_accept_centre_default_31", pct(1))]),
    # --- notebook 05 ---------------------------------------------------------------------------
    (NB + "05_umap_clustering.ipynb", "about {} on LFW's 62 people (ARI {} on held-out people), about {} on the varied sample set",
     [F("identify", Z1, "best_cut", f(2)), F("identify", Z1, "ari_heldout", f(3)), F("identify", Z1, "sample_best_cut", f(1))]),
    # --- notebook 07 ---------------------------------------------------------------------------
    (NB + "07_at_scale.ipynb", "it reached only {} of exact search's rank-1 rate at {} ms a query, where the inverted file "
     "reaches {} at {} ms", [F("gallery", Z4, "hnsw_ef128_recall_1m", f(3)), F("gallery", Z4, "hnsw_ef128_p50_ms_1m", f(2)),
                             F("gallery", Z4, "full_search_recall_1m", f(3)), F("gallery", Z4, "full_search_p50_ms_1m", f(2))]),
    (NB + "07_at_scale.ipynb", "settles *who* it is ({} at {} ms)",
     [F("gallery", Z4, "recall_at_1_1m", f(3)), F("gallery", Z4, "p50_ms_1m", f(3))]),
    (NB + "07_at_scale.ipynb", "({}-{} ms on 2 cores in two runs) and the inverted file answers in {}-{} ms",
     [F("gallery", Z4 + " run 2", "exact_p50_ms_1m", f(1)), F("gallery", Z4, "exact_p50_ms_1m", f(1)),
      F("gallery", Z4, "p50_ms_1m", f(3)), F("gallery", Z4, "full_search_p50_ms_1m", f(2))]),
    (NB + "07_at_scale.ipynb", "Ray reached {}-{}x the local engine in two runs (`bench/album.py`, Zen 4; {}-{}x before",
     [F("album", Z4, "ray_over_local", f(2)), F("album", Z4 + " run 2", "ray_over_local", f(2)),
      F("album", Z4 + " before own shards", "ray_over_local_run2", f(2)),
      F("album", Z4 + " before own shards", "ray_over_local_run1", f(2))]),
    (NB + "07_at_scale.ipynb", "(~{} core-s a photo on a quiet 2-core machine) a million photos is about {} core-hours "
     "({} with the assumed cluster efficiency of 0.85), about \\${}-{} at \\$0.045 per vCPU-hour",
     [F("notebook07_full", Z4, "core_s_per_photo", f(2)),
      derived(lambda d: 1e6 * facts.fact("notebook07_full", Z4, "core_s_per_photo", d) / 3600, f(0)),
      derived(lambda d: 1e6 * facts.fact("notebook07_full", Z4, "core_s_per_photo", d) / 3600 / 0.85, f(0)),
      derived(lambda d: 1e6 * facts.fact("notebook07_full", Z4, "core_s_per_photo", d) / 3600 * 0.045, f(1)),
      derived(lambda d: 1e6 * facts.fact("notebook07_full", Z4, "core_s_per_photo", d) / 3600 / 0.85 * 0.045, f(1))]),
    (NB + "07_at_scale.ipynb", "For 50,000 photos at ~{} core-s each: ~{} core-hours",
     [F("notebook07_full", Z4, "core_s_per_photo", f(2)),
      derived(lambda d: 5e4 * facts.fact("notebook07_full", Z4, "core_s_per_photo", d) / 3600, f(1))]),
    # --- appendix A1 ---------------------------------------------------------------------------
    (NB + "A1_speed.ipynb", "(`bench/embed.py`, one face: {} ms on the Zen 4 machine, {} ms on the Zen 1 machine)",
     [F("embed", Z4, "single_face_ms", f(1)), F("embed", Z1, "single_face_ms", f(1))]),
    (NB + "A1_speed.ipynb", "the embedder ran at {} GFLOP/s against a float32 matrix-multiply ceiling of {} GFLOP/s "
     "measured in the same run; on the Zen 4 machine at {} GFLOP/s against {}",
     [F("embed", Z1, "gflops", f(1)), F("embed", Z1, "sgemm_gflops", f(1)), F("embed", Z4, "gflops", integer),
      F("embed", Z4, "sgemm_gflops", integer)]),
    (NB + "A1_speed.ipynb", "the whole network would gain about {}% (`bench/winograd_onnx.py`",
     [derived(lambda d: 100 * (facts.fact("winograd_onnx", Z1, "projected_gain", d) - 1), f(1))]),
    (NB + "A1_speed.ipynb", "| embedding, batch 32 | {} faces/s | {} faces/s (**{}×**) |",
     [F("quant", Z4, "fp32_faces_per_s", integer), F("quant", Z4, "int8_faces_per_s", integer), F("quant", Z4, "embed_speedup", f(2))]),
    (NB + "A1_speed.ipynb", "| one face | {} ms | {} ms |", [F("quant", Z4, "one_face_ms_fp32", f(1)), F("quant", Z4, "one_face_ms_int8", f(1))]),
    (NB + "A1_speed.ipynb", "| LFW View 2, 10-fold accuracy | {} | {} |",
     [F("quant", Z4, "lfw_accuracy_fp32", pct(2)), F("quant", Z4, "lfw_accuracy_int8", pct(2))]),
    (NB + "A1_speed.ipynb", "| LFW best single threshold (its accuracy) | {} ({}) | {} ({}) |",
     [F("quant", Z4, "threshold_fp32", f(3)), F("quant", Z4, "best_single_accuracy_fp32", pct(2)),
      F("quant", Z4, "threshold_int8", f(3)), F("quant", Z4, "best_single_accuracy_int8", pct(2))]),
    (NB + "A1_speed.ipynb", "| 5-celebrity validation pairs at own threshold | {} | {} |",
     [F("quant", Z4, "celeb_val_accuracy_fp32", pct(2)), F("quant", Z4, "celeb_val_accuracy_int8", pct(2))]),
    (NB + "A1_speed.ipynb", "at least {} (mean {}), in an earlier run",
     [F("quant", Z4 + " under load", "cosine_min", f(3)), F("quant", Z4 + " under load", "cosine_mean", f(4))]),
    (NB + "A1_speed.ipynb", "its speed ratios ({}× for the embedding)", [F("quant", Z4 + " under load", "embed_speedup", f(1))]),
    (NB + "A1_speed.ipynb", "activations quantised on the fly) ran at {}× float32",
     [F("quant", Z4 + " under load", "dynamic_speedup", f(2))]),
    (NB + "A1_speed.ipynb", "10-fold LFW accuracy ({}, 11 of 6,000 pairs)", [F("quant", Z4, "lfw_accuracy_int8_all_layers", pct(2))]),
    (NB + "A1_speed.ipynb", "fold thresholds ({} instead of {})",
     [F("quant", Z4 + " under load", "fold_thresholds_all_layers", text), F("quant", Z4 + " under load", "fold_thresholds_fp32", text)]),
    (NB + "A1_speed.ipynb", "10-fold accuracy came back to {}, 0.06 points below float32", [F("quant", Z4, "lfw_accuracy_int8", pct(2))]),
    (NB + "A1_speed.ipynb", "its int8 networks ran at {}× the float32 ONNX networks in the quiet run ({}× TensorFlow's MTCNN",
     [F("quant", Z4, "detect_int8_over_fp32_onnx", f(2)), F("quant", Z4, "detect_speedup", f(2))]),
    (NB + "A1_speed.ipynb", "frame recall on 640x480 frames fell from {} to {}",
     [F("quant", Z4, "recall_fp32", f(4)), F("quant", Z4, "recall_int8", f(4))]),
    # --- appendix A2 ---------------------------------------------------------------------------
    (NB + "A2_hard_light.ipynb", "| **mean of the 7** | **{}** ({}) | **{}** ({}) | **{}** ({})",
     [F("robust", Z4, "robust_mean_accuracy", pct(2)), F("robust", Z4, "robust_mean_accuracy_at_default", pct(2)),
      F("robust", Z4, "robust_mean_accuracy_clahe", pct(2)), F("robust", Z4, "robust_mean_accuracy_clahe_at_default", pct(2)),
      F("robust", Z4, "robust_mean_accuracy_fuse_clahe", pct(2)), F("robust", Z4, "robust_mean_accuracy_fuse_clahe_at_default", pct(2))]),
    (NB + "A2_hard_light.ipynb", "| untransformed (same pairs) | {} |", [F("robust", Z4, "lfw_accuracy", pct(2))]),
    (NB + "A2_hard_light.ipynb", "(McNemar p = {}, robust mean", [F("robust", Z4, "view1_fuse_clahe_p", f(3))]),
    # A2's second model (issue #23): bench/models.py on the Intel Xeon
    (NB + "A2_hard_light.ipynb", "(`shade` {} vs {}, `gray_lowres` {} vs {},",
     [F("models", MR, "robust/shade/fused", pct(0)), F("models", MR, "robust/shade/facenet128", pct(2)),
      F("models", MR, "robust/gray_lowres/fused", pct(0)), F("models", MR, "robust/gray_lowres/facenet128", pct(2))]),
    (NB + "A2_hard_light.ipynb", "the mean over all nine was {} vs {}, while dlib alone was worse than FaceNet under most of "
     "them (mean {})", [F("models", MR, "robust_mean_accuracy_fused", pct(2)),
                        F("models", MR, "robust_mean_accuracy_facenet128", pct(2)),
                        F("models", MR, "robust_mean_accuracy_dlib128", pct(2))]),
    (NB + "A2_hard_light.ipynb", "{} against FaceNet's {} (10-fold)",
     [F("models", MR, "lfw_accuracy_fused", pct(2)), F("models", MR, "lfw_accuracy_facenet128", pct(2))]),
    (NB + "A2_hard_light.ipynb", "the fused model alone is right on {} pairs and FaceNet alone on {} (McNemar p = {}:",
     [F("models", MR, "mcnemar_fused_vs_facenet128/only_a", integer),
      F("models", MR, "mcnemar_fused_vs_facenet128/only_b", integer), F("models", MR, "mcnemar_fused_vs_facenet128/p", f(2))]),
    (NB + "A2_hard_light.ipynb", "It costs both networks: {} faces/s against FaceNet's {} (dlib's own network alone, which "
     "embeds each face and its mirror image: {})",
     [F("models", MR, "faces_per_s_fused", integer), F("models", MR, "faces_per_s_facenet128", integer),
      F("models", MR, "faces_per_s_dlib128", integer)]),
    # --- docstrings and the registry's texts ---------------------------------------------------
    ("facekit/models/registry.py", "the threshold with the best balanced accuracy is {}-{} for personal galleries",
     [F("identify", Z1, "threshold_personal_min", f(2)), F("identify", Z1, "threshold_personal_max", f(2))]),
    ("facekit/models/registry.py", "and {} for 31 people x half their photos", [F("identify", Z1, "threshold_g31xhalf", f(2))]),
    ("facekit/models/registry.py", "at 0.8 strangers are accepted {}-{}% (3-10 people) and {} (31 people; notebook 04's "
     "one split: {})", [F("identify", Z1, "stranger_accept_default_personal_min", num(1)),
                        F("identify", Z1, "stranger_accept_default_personal_max", num(1)),
                        F("identify", Z1, "stranger_accept_default_g31xhalf", pct(1)),
                        F("notebook04_full", Z4, "stranger_accept_default/31", pct(1))]),
    ("facekit/models/registry.py", "({}, {} at it; float32 {}, {}); 10-fold accuracy {} vs float32's {}",
     [F("quant", Z4, "threshold_int8", f(3)), F("quant", Z4, "best_single_accuracy_int8", pct(2)),
      F("quant", Z4, "threshold_fp32", f(3)), F("quant", Z4, "best_single_accuracy_fp32", pct(2)),
      F("quant", Z4, "lfw_accuracy_int8", pct(2)), F("quant", Z4, "lfw_accuracy_fp32", pct(2))]),
    ("facekit/models/registry.py", "int8 {} vs float32 {} in the same run",
     [F("quant", Z4, "unknown_threshold_int8", f(3)), F("quant", Z4, "unknown_threshold_fp32", f(3))]),
    ("facekit/store/index.py", "The graph (M=32) took {} s to build, {} GB, and reached only {} of exact search's rank-1 "
     "identification rate at {} ms a query", [F("gallery", Z4, "hnsw_build_s_1m", integer), F("gallery", Z4, "hnsw_memory_gb_1m", f(2)),
                                             F("gallery", Z4, "hnsw_ef128_recall_1m", f(3)), F("gallery", Z4, "hnsw_ef128_p50_ms_1m", f(1))]),
    ("facekit/store/index.py", "trained in {} s, {} GB, {} of exact at {} ms for identification ({}x exact search's {} ms)",
     [F("gallery", Z4, "build_s_1m", integer), F("gallery", Z4, "memory_gb_1m", f(2)), F("gallery", Z4, "recall_at_1_1m", f(3)),
      F("gallery", Z4, "p50_ms_1m", f(2)), F("gallery", Z4, "speedup_vs_exact_1m", integer), F("gallery", Z4, "exact_p50_ms_1m", f(1))]),
    ("facekit/album/ray.py", "with the actors writing, {}-{}x in two runs ({}-{}x on 12 MP JPEGs)",
     [F("album", Z4, "ray_over_local", f(2)), F("album", Z4 + " run 2", "ray_over_local", f(2)),
      F("album", Z4, "ray_over_local_large", f(2)), F("album", Z4 + " run 2", "ray_over_local_large", f(2))]),
    ("facekit/faces.py", "today's pipeline: {} mean, {} untransformed on all 6,000): ``normalize=\"clahe\"`` {},",
     [F("robust", Z4, "robust_mean_accuracy", pct(2)), F("robust", Z4, "lfw_accuracy_all_pairs", pct(2)),
      F("robust", Z4, "robust_mean_accuracy_clahe", pct(2))]),
    ("facekit/faces.py", "``fuse=True`` with CLAHE {} ({} vs {} at the untransformed threshold)",
     [F("robust", Z4, "robust_mean_accuracy_fuse_clahe", pct(2)), F("robust", Z4, "robust_mean_accuracy_fuse_clahe_at_default", pct(2)),
      F("robust", Z4, "robust_mean_accuracy_at_default", pct(2))]),
]


def _normalise(path: Path) -> str:
    raw = path.read_text()
    if path.suffix == ".ipynb":
        raw = "\n".join("".join(c["source"]) for c in json.loads(raw)["cells"])
    elif path.suffix == ".py":
        raw = re.sub(r"\"\s*\n\s*\"", "", raw)  # adjacent string literals across lines: one text
        raw = re.sub(r"\n\s*#:?\s*", " ", raw)  # comment blocks: one text
    return re.sub(r"\s+", " ", raw)


_TEXTS: dict[str, str] = {}


def _text(rel: str) -> str:
    if rel not in _TEXTS:
        _TEXTS[rel] = _normalise(ROOT / rel)
    return _TEXTS[rel]


def _value(ref, data):
    if ref[0] == "derived":
        return ref[2](ref[1](data))
    bench, run, key, fmt = ref
    return fmt(facts.fact(bench, run, key, data))


@pytest.fixture(scope="module")
def data():
    return facts.load()


@pytest.mark.parametrize("rel, template, refs", QUOTES, ids=[f"{q[0].split('/')[-1]}:{i}" for i, q in enumerate(QUOTES)])
def test_quoted_figure_matches_its_source(data, rel, template, refs):
    assert template.count("{}") == len(refs), "one {} per figure"
    expected = re.sub(r"\s+", " ", template.format(*[_value(r, data) for r in refs]))
    found = _text(rel)
    if expected not in found:
        skeleton = re.escape(re.sub(r"\s+", " ", template)).replace(r"\{\}", r"(.{1,40}?)")
        m = re.search(skeleton, found)
        where = (f"the file says: {m.group(0)!r}" if m else
                 "the quoted text is not in the file any more (reworded? keep the figure checked: update this table)")
        pytest.fail(f"{rel}: expected {expected!r} from bench/facts.json; {where}")


def test_the_facts_file_is_well_formed(data):
    machines = data["machines"]
    assert data["format"] == facts.FORMAT and machines
    for bench, runs in data["benches"].items():
        assert runs, bench
        for run, r in runs.items():
            assert r["machine"] in machines, f"{bench}/{run}: machine {r['machine']!r} is not described"
            assert r["command"].startswith("./run.sh "), f"{bench}/{run}: say which command produced it"
            assert r.get("date") and r.get("source"), f"{bench}/{run}: a date and a source are required"
            assert isinstance(r["figures"], dict) and r["figures"], f"{bench}/{run}: no figures"


def test_every_quoted_run_and_figure_exists(data):
    for rel, _, refs in QUOTES:
        assert (ROOT / rel).is_file(), rel
        for r in refs:
            if r[0] != "derived":
                facts.fact(r[0], r[1], r[2], data)  # raises KeyError naming what is missing


def test_record_stores_a_run_under_this_machine_and_keeps_the_others(tmp_path, monkeypatch):
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"format": facts.FORMAT, "machines": {"m": {"name": "old"}},
                                "benches": {"embed": {"m": {"machine": "m", "date": "2026-01-01", "command": "./run.sh bench embed",
                                                            "source": "seed", "figures": {"speedup": 1.0}}}}}))
    monkeypatch.setattr("sys.argv", ["bench/embed.py", "--rounds", "3"])
    run = facts.record("embed", {"speedup": 6.17, "nested": {"a": (1, 2)}}, path=path)
    mid = facts.machine_id()
    assert run == f"{mid} --rounds 3"
    d = facts.load(path)
    r = d["benches"]["embed"][run]
    assert r["machine"] == mid and r["command"] == "./run.sh bench embed --rounds 3"
    assert r["figures"] == {"speedup": 6.17, "nested": {"a": [1, 2]}}
    assert d["machines"][mid]["cpu"] and d["benches"]["embed"]["m"]["figures"] == {"speedup": 1.0}
    monkeypatch.setenv("FACEKIT_FACTS", "0")
    assert facts.record("embed", {"speedup": 0.0}, path=path) is None
    assert facts.load(path)["benches"]["embed"][run]["figures"]["speedup"] == 6.17


def test_the_benchmarks_page_lists_every_run(data):
    page = facts.markdown(data)
    for bench, runs in data["benches"].items():
        assert f"## `{bench}`" in page
        for run in runs:
            assert f"### {run}" in page
