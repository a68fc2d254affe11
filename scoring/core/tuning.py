"""The math of weight tuning: proposal checks, the histogram of final scores, the least-squares fit to labels.

Pure: no Django. tuning.services runs it over stored evaluations and human labels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize

from scoring.core.aggregate.route import weighted_mean
from scoring.core.critics.registry import CRITERIA

#: Histogram of final scores: ten bins of 0.1; 1.0 falls in the last one.
BINS = tuple(f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10))
Row = tuple[Mapping[str, float | None], float]  # (subscores, human final score)


def number(value: Any) -> float | None:
    """A finite float from a number or numeric text; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clean_weights(weights: Any, errors: dict[str, str]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or set(weights) != set(CRITERIA):
        errors["weights"] = f"give exactly one weight per criterion: {', '.join(CRITERIA)}"
        return {}
    values = {name: number(weights[name]) for name in CRITERIA}
    checked = {name: value for name, value in values.items() if value is not None and value >= 0}
    if len(checked) != len(values):
        errors["weights"] = "every weight must be a number >= 0"
        return {}
    total = sum(checked.values())
    if total <= 0:
        errors["weights"] = "at least one weight must be above 0"
        return {}
    return {name: round(value / total, 6) for name, value in checked.items()}


def clean_knots(knots: Any, errors: dict[str, str]) -> tuple[tuple[float, float], ...]:
    problem = "give at least two [ratio, score] pairs, ratios > 0 and increasing, scores in [0, 1] not increasing"
    try:
        pairs = tuple((number(ratio), number(score)) for ratio, score in knots)
    except (TypeError, ValueError):
        errors["perf_knots"] = problem
        return ()
    checked = tuple((r, s) for r, s in pairs if r is not None and s is not None and r > 0 and 0 <= s <= 1)
    ok = len(pairs) >= 2 and len(checked) == len(pairs)
    ok = ok and all(a[0] < b[0] and a[1] >= b[1] for a, b in itertools.pairwise(checked))
    if not ok:
        errors["perf_knots"] = problem
        return ()
    return checked


def histogram(scores: Sequence[float | None]) -> tuple[list[int], int]:
    """Counts per 0.1 bin of [0, 1], and how many scores are null."""
    counts = [0] * len(BINS)
    for score in scores:
        if score is not None:
            counts[min(int(score * len(BINS)), len(BINS) - 1)] += 1
    return counts, sum(score is None for score in scores)


def mean_distance(pairs: Sequence[tuple[float | None, float]]) -> float | None:
    distances = [abs(score - human) for score, human in pairs if score is not None]
    return round(sum(distances) / len(distances), 4) if distances else None


@dataclass(frozen=True)
class Fit:
    """Weights fitted to human final scores, and how far the aggregation under them stays from those scores."""

    weights: dict[str, float]
    n: int
    rmse: float
    mae: float


def fit_error(rows: Sequence[Row], weights: Mapping[str, float]) -> tuple[float, float]:
    """(RMSE, MAE) of the real aggregation (weighted_mean, nulls renormalised) against the human scores."""
    residuals = []
    for scores, human in rows:
        predicted = weighted_mean(scores, weights)
        residuals.append((predicted if predicted is not None else 0.0) - human)
    errors = np.asarray(residuals, dtype=float)
    return round(float(np.sqrt(np.mean(errors**2))), 4), round(float(np.mean(np.abs(errors))), 4)


def fit_weights(rows: Sequence[Row], *, criteria: Sequence[str] = CRITERIA) -> Fit:
    """Least-squares weights (each >= 0, summing to 1) that make the aggregation match the human scores.

    The model is the aggregation itself: a null subscore leaves the mean and the other weights renormalise, so
    the prediction is sum(w_i s_i) / sum(w_i over measured i). SLSQP minimises the squared error under
    w >= 0 and sum(w) = 1 with the exact gradient. With no nulls this is the plain simplex-constrained linear
    least squares. Raises ValueError without rows.
    """
    if not rows:
        raise ValueError("no labelled patches to fit")
    table = np.array([[np.nan if s.get(c) is None else s[c] for c in criteria] for s, _ in rows], dtype=float)
    measured = (~np.isnan(table)).astype(float)
    scores = np.nan_to_num(table)
    target = np.array([human for _, human in rows], dtype=float)
    k, n = len(criteria), len(rows)
    tiny = 1e-9

    def residual(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        total = np.maximum(measured @ w, tiny)
        predicted = (scores @ w) / total
        return predicted - target, predicted, total

    def loss(w: np.ndarray) -> float:
        r, _, _ = residual(w)
        return float(r @ r / n)

    def gradient(w: np.ndarray) -> np.ndarray:
        r, predicted, total = residual(w)
        jacobian = (scores - predicted[:, None] * measured) / total[:, None]
        # numpy types `@` on arrays of unknown dtype as Any; the result is the gradient array.
        grad: np.ndarray = 2 * jacobian.T @ r / n
        return grad

    solution = minimize(
        loss,
        np.full(k, 1.0 / k),
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    w = np.clip(solution.x, 0.0, None)
    w = w / w.sum()
    weights = {name: round(float(value), 4) for name, value in zip(criteria, w, strict=True)}
    rmse, mae = fit_error(rows, weights)
    return Fit(weights=weights, n=n, rmse=rmse, mae=mae)
