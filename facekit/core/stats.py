"""Small statistics for honest evaluation: standard errors, McNemar's test, binomial intervals.

Taught in notebook 02 (LFW numbers next to published ones) and used by notebooks 01 and 04.

- :func:`standard_error`: the "±" of LFW-style reports. The LFW protocol (Huang et al. 2007)
  and the FaceNet paper (Schroff et al. 2015, "99.63% ± 0.09") quote the standard error of the
  mean over the 10 folds, ``s / sqrt(10)`` with ``s`` the sample std (ddof=1) -- not the
  fold-to-fold std, which is about 3.2 times larger.
- :func:`mcnemar`: do two methods scored on the SAME pairs differ by more than chance? Only the
  pairs they disagree on count (exact binomial test on them).
- :func:`binomial_ci`: a confidence interval for a rate measured as ``k`` events in ``n`` trials
  (e.g. a false accept rate of 3 in 3,000 impostor pairs), Clopper-Pearson (exact,
  conservative) or Wilson (closer to nominal coverage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["standard_error", "McNemarResult", "mcnemar", "binomial_ci"]


def standard_error(values) -> float:
    """Standard error of the mean of ``values`` (float (K,), e.g. 10 fold accuracies):
    ``std(values, ddof=1) / sqrt(K)``. This is the "±" of LFW's protocol and FaceNet's table."""
    v = np.asarray(values, np.float64).ravel()
    if len(v) < 2:
        raise ValueError(f"need at least 2 values for a standard error, got {len(v)}")
    return float(np.std(v, ddof=1) / np.sqrt(len(v)))


@dataclass(frozen=True)
class McNemarResult:
    """Outcome of :func:`mcnemar`: ``only_a`` pairs right only with method A, ``only_b`` right
    only with B, ``p`` the two-sided exact p-value (1.0 when they never disagree)."""

    only_a: int
    only_b: int
    p: float

    def __str__(self) -> str:
        return f"A alone right on {self.only_a} pairs, B alone on {self.only_b}: McNemar p = {self.p:.3g}"


def mcnemar(correct_a, correct_b) -> McNemarResult:
    """McNemar's exact test for two methods judged on the same items.

    correct_a, correct_b: bool (M,), whether each method got item i right. Pairs both get right
    (or both wrong) say nothing about which is better; under "no difference" each disagreement
    is a fair coin, so the p-value is a two-sided binomial test of ``only_a`` in
    ``only_a + only_b`` trials at 1/2. A small difference in accuracy over thousands of pairs is
    often a handful of disagreements: this says whether that handful is more than chance.
    """
    from scipy.stats import binomtest

    a = np.asarray(correct_a, bool).ravel()
    b = np.asarray(correct_b, bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"correct_a {a.shape} and correct_b {b.shape} must score the same items")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return McNemarResult(only_a, only_b, float(p))


def binomial_ci(k: int, n: int, level: float = 0.95, method: str = "clopper-pearson") -> tuple[float, float]:
    """Two-sided confidence interval ``(low, high)`` for a rate seen as ``k`` events in ``n`` trials.

    method: ``"clopper-pearson"`` (exact: inverts the binomial test; coverage >= level) or
    ``"wilson"`` (score interval). Use it whenever a rate rests on a few events: a false accept
    rate of 0.1% on LFW is 3 of 3,000 impostor pairs, and 3 events are compatible with a true rate
    from about 0.02% to 0.3%.
    """
    from scipy.stats import beta, norm

    if not (isinstance(n, (int, np.integer)) and n > 0 and 0 <= k <= n):
        raise ValueError(f"need integers 0 <= k <= n and n > 0, got k={k!r}, n={n!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    alpha = 1 - level
    if method == "clopper-pearson":
        low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
        high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
        return low, high
    if method == "wilson":
        z = float(norm.ppf(1 - alpha / 2))
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return float(max(0.0, centre - half)), float(min(1.0, centre + half))
    raise ValueError(f"unknown method {method!r}; choose 'clopper-pearson' or 'wilson'")
