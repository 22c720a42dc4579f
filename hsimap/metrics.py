"""Accuracy of a class map: confusion matrix, OA/AA/kappa and area-adjusted estimates.

Pure numpy. Two families of numbers are computed:

* **Sample accuracy** (:func:`accuracy_metrics`): overall accuracy, average accuracy, Cohen's
  kappa and per-class producer's/user's accuracy and F1, straight from the confusion matrix
  of the reference pixels. This is what the hyperspectral benchmark literature reports.
* **Area-adjusted accuracy** (:func:`area_adjusted_accuracy`): the stratified estimator of
  Olofsson et al. (2014), which weights each map class by its mapped area, corrects the class
  areas for the map's errors and gives standard errors and 95 % confidence intervals.

Orientation: everywhere in hsimap a confusion matrix has **rows = reference class** and
**columns = map class** (``counts[i, j]`` = reference pixels of class ``i`` that the map
calls class ``j``). Olofsson et al. write their error matrix the other way round (rows = map);
the formulas below are written in their notation with that transposition applied.

Undefined quantities (a class with no reference pixels has no producer's accuracy, a map
class with one sample has no standard error) are ``nan`` in the dataclasses and ``None`` in
:meth:`to_dict`, never an exception.

References
----------
Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014).
Good practices for estimating area and assessing accuracy of land change. *Remote Sensing of
Environment* 148, 42-57. https://doi.org/10.1016/j.rse.2014.02.015
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hsimap.errors import LabelError

#: Two-sided 95 % normal quantile used for every confidence interval (Olofsson et al. 2014).
Z_95 = 1.96


def _none_if_nan(x: float) -> float | None:
    """JSON-friendly float: ``nan``/``inf`` become ``None``."""
    return None if not math.isfinite(x) else float(x)


def _floats(xs: Sequence[float]) -> list[float | None]:
    return [_none_if_nan(x) for x in xs]


def _safe_div(
    num: npt.NDArray[np.float64], den: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Elementwise ``num / den`` with ``nan`` where ``den == 0`` (no warnings)."""
    out = np.full(np.broadcast(num, den).shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def confusion_matrix(
    reference: npt.ArrayLike, predicted: npt.ArrayLike, *, classes: Sequence[int]
) -> npt.NDArray[np.int64]:
    """Count (reference, predicted) pairs.

    Parameters
    ----------
    reference, predicted
        Integer class values of the same shape (any number of dimensions). Pixels to leave
        out (unlabelled, nodata) must be removed by the caller.
    classes
        The class values, in the order of the matrix rows and columns.

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` int64 counts, rows = reference class, columns = predicted (map) class.

    Raises
    ------
    LabelError
        If the arrays differ in shape or hold a value that is not in ``classes``.
    """
    ref = np.asarray(reference).ravel()
    pred = np.asarray(predicted).ravel()
    if np.shape(reference) != np.shape(predicted):
        raise LabelError(
            f"reference and predicted values differ in shape: "
            f"{np.shape(reference)} vs {np.shape(predicted)}"
        )
    values = np.asarray(list(classes), dtype=np.int64)
    if len(np.unique(values)) != len(values):
        raise LabelError(f"class values are not unique: {list(classes)}")
    k = len(values)
    order = np.argsort(values)
    sorted_values = values[order]

    def index(a: npt.NDArray[Any], what: str) -> npt.NDArray[np.int64]:
        a = a.astype(np.int64, copy=False)
        pos = np.clip(np.searchsorted(sorted_values, a), 0, max(k - 1, 0))
        ok = sorted_values[pos] == a if k else np.zeros(a.shape, bool)
        if not np.all(ok):
            bad = np.unique(a[~ok])[:10].tolist()
            raise LabelError(
                f"{what} values {bad} are not among the classes {list(classes)}",
                fix="add them to the class list or mask them out before counting",
            )
        return order[pos].astype(np.int64)

    if ref.size == 0:
        return np.zeros((k, k), dtype=np.int64)
    flat = index(ref, "reference") * k + index(pred, "predicted")
    return np.bincount(flat, minlength=k * k).reshape(k, k).astype(np.int64)


@dataclass(frozen=True)
class AccuracyMetrics:
    """Sample accuracy of a map against reference pixels.

    Attributes
    ----------
    classes
        Class values, in matrix order.
    confusion
        ``(K, K)`` counts as nested tuples, rows = reference, columns = map.
    overall_accuracy
        Correct / all reference pixels (OA).
    average_accuracy
        Mean producer's accuracy over the classes present in the reference (AA).
    kappa
        Cohen's kappa.
    producer_accuracy
        Per class, correct / reference pixels of that class (recall); ``nan`` when absent.
    user_accuracy
        Per class, correct / pixels mapped as that class (precision); ``nan`` when none.
    f1
        Per class, harmonic mean of producer's and user's accuracy.
    """

    classes: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]
    overall_accuracy: float
    average_accuracy: float
    kappa: float
    producer_accuracy: tuple[float, ...]
    user_accuracy: tuple[float, ...]
    f1: tuple[float, ...]

    @property
    def matrix(self) -> npt.NDArray[np.int64]:
        """The confusion matrix as a ``(K, K)`` int64 array (rows = reference)."""
        return np.array(self.confusion, dtype=np.int64).reshape(len(self.classes),
                                                                  len(self.classes))

    @property
    def n_samples(self) -> int:
        """Number of reference pixels counted."""
        return int(self.matrix.sum())

    @property
    def reference_counts(self) -> tuple[int, ...]:
        """Reference pixels per class (row sums)."""
        return tuple(int(x) for x in self.matrix.sum(axis=1))

    @property
    def predicted_counts(self) -> tuple[int, ...]:
        """Reference pixels per map class (column sums)."""
        return tuple(int(x) for x in self.matrix.sum(axis=0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; undefined values are ``None``."""
        return {
            "classes": list(self.classes),
            "n_samples": self.n_samples,
            "overall_accuracy": _none_if_nan(self.overall_accuracy),
            "average_accuracy": _none_if_nan(self.average_accuracy),
            "kappa": _none_if_nan(self.kappa),
            "confusion_matrix": [list(r) for r in self.confusion],
            "reference_counts": list(self.reference_counts),
            "predicted_counts": list(self.predicted_counts),
            "producer_accuracy": _floats(self.producer_accuracy),
            "user_accuracy": _floats(self.user_accuracy),
            "f1": _floats(self.f1),
        }


def accuracy_metrics(
    confusion: npt.ArrayLike, *, classes: Sequence[int]
) -> AccuracyMetrics:
    """OA, AA, kappa and per-class accuracies from a confusion matrix.

    Parameters
    ----------
    confusion
        ``(K, K)`` non-negative counts, rows = reference, columns = map.
    classes
        The ``K`` class values in matrix order.

    Returns
    -------
    AccuracyMetrics
        With ``nan`` for every quantity that is undefined (no samples).
    """
    cm = np.asarray(confusion, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise LabelError(f"confusion matrix shape {cm.shape} does not match {k} classes")
    if np.any(cm < 0):
        raise LabelError("confusion matrix has negative counts")
    n = cm.sum()
    diag = np.diag(cm)
    rows = cm.sum(axis=1)
    cols = cm.sum(axis=0)
    producer = _safe_div(diag, rows)
    user = _safe_div(diag, cols)
    f1 = _safe_div(2 * diag, rows + cols)  # = 2PU/(P+U), and 0 when P = U = 0 but defined
    oa = float(diag.sum() / n) if n else math.nan
    present = rows > 0
    aa = float(producer[present].mean()) if present.any() else math.nan
    if n:
        pe = float((rows * cols).sum() / (n * n))
        kappa = (oa - pe) / (1 - pe) if pe < 1 else math.nan
    else:
        kappa = math.nan
    return AccuracyMetrics(
        classes=tuple(int(c) for c in classes),
        confusion=tuple(tuple(int(x) for x in r) for r in cm.astype(np.int64)),
        overall_accuracy=oa,
        average_accuracy=aa,
        kappa=float(kappa),
        producer_accuracy=tuple(float(x) for x in producer),
        user_accuracy=tuple(float(x) for x in user),
        f1=tuple(float(x) for x in f1),
    )


@dataclass(frozen=True)
class AreaAdjustedAccuracy:
    """Stratified area-adjusted accuracy and class areas (Olofsson et al. 2014).

    The strata are the map classes; ``W_i`` is the mapped-area share of map class ``i``.
    All per-class tuples are in ``classes`` order. Standard errors are ``nan`` where the
    estimator is undefined (a stratum with fewer than two samples, a class never sampled).

    Attributes
    ----------
    classes
        Class values (strata and reference classes share one list).
    mapped_pixels
        Pixels mapped as each class over the whole map (``N_i``).
    pixel_area
        Area of one pixel in ``area_unit``.
    area_unit
        Unit of the areas (e.g. ``"ha"``, or ``"pixels"`` when the map has no metric CRS).
    weights
        ``W_i = N_i / N``.
    proportions
        Estimated area proportions ``p_ij = W_i n_ij / n_i.`` as nested tuples, in hsimap
        orientation: row = reference class ``j``, column = map class ``i``.
    overall_accuracy, overall_accuracy_se
        ``O = sum_i W_i n_ii / n_i.`` and its standard error.
    user_accuracy, user_accuracy_se
        ``U_i = n_ii / n_i.`` and ``sqrt(U_i (1 - U_i) / (n_i. - 1))``.
    producer_accuracy, producer_accuracy_se
        ``P_j = p_jj / p_.j`` and its standard error (Olofsson et al. 2014, from Card 1982).
    area_proportion, area_proportion_se
        ``p_.j = sum_i W_i n_ij / n_i.`` and ``sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.) /
        (n_i. - 1))``.
    mapped_area, area, area_se
        Mapped area, error-adjusted area estimate ``A_j = A_tot p_.j`` and its standard error.
    z
        Normal quantile of the confidence intervals (1.96 for 95 %).
    """

    classes: tuple[int, ...]
    mapped_pixels: tuple[int, ...]
    pixel_area: float
    area_unit: str
    weights: tuple[float, ...]
    proportions: tuple[tuple[float, ...], ...]
    overall_accuracy: float
    overall_accuracy_se: float
    user_accuracy: tuple[float, ...]
    user_accuracy_se: tuple[float, ...]
    producer_accuracy: tuple[float, ...]
    producer_accuracy_se: tuple[float, ...]
    area_proportion: tuple[float, ...]
    area_proportion_se: tuple[float, ...]
    mapped_area: tuple[float, ...]
    area: tuple[float, ...]
    area_se: tuple[float, ...]
    z: float = Z_95

    @property
    def overall_accuracy_ci(self) -> float:
        """Half-width of the overall accuracy's confidence interval (``z * SE``)."""
        return self.z * self.overall_accuracy_se

    @property
    def user_accuracy_ci(self) -> tuple[float, ...]:
        """Half-widths of the user's accuracies' confidence intervals."""
        return tuple(self.z * s for s in self.user_accuracy_se)

    @property
    def producer_accuracy_ci(self) -> tuple[float, ...]:
        """Half-widths of the producer's accuracies' confidence intervals."""
        return tuple(self.z * s for s in self.producer_accuracy_se)

    @property
    def area_ci(self) -> tuple[float, ...]:
        """Half-widths of the area estimates' confidence intervals (``z * SE``)."""
        return tuple(self.z * s for s in self.area_se)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; undefined values are ``None``."""
        return {
            "method": "Olofsson et al. 2014 stratified estimator (strata = map classes)",
            "classes": list(self.classes),
            "z": self.z,
            "pixel_area": self.pixel_area,
            "area_unit": self.area_unit,
            "mapped_pixels": list(self.mapped_pixels),
            "weights": _floats(self.weights),
            "proportions": [_floats(r) for r in self.proportions],
            "overall_accuracy": _none_if_nan(self.overall_accuracy),
            "overall_accuracy_se": _none_if_nan(self.overall_accuracy_se),
            "overall_accuracy_ci": _none_if_nan(self.overall_accuracy_ci),
            "user_accuracy": _floats(self.user_accuracy),
            "user_accuracy_se": _floats(self.user_accuracy_se),
            "user_accuracy_ci": _floats(self.user_accuracy_ci),
            "producer_accuracy": _floats(self.producer_accuracy),
            "producer_accuracy_se": _floats(self.producer_accuracy_se),
            "producer_accuracy_ci": _floats(self.producer_accuracy_ci),
            "area_proportion": _floats(self.area_proportion),
            "area_proportion_se": _floats(self.area_proportion_se),
            "mapped_area": _floats(self.mapped_area),
            "area": _floats(self.area),
            "area_se": _floats(self.area_se),
            "area_ci": _floats(self.area_ci),
        }


def area_adjusted_accuracy(
    confusion: npt.ArrayLike,
    *,
    classes: Sequence[int],
    mapped_pixels: Sequence[int],
    pixel_area: float = 1.0,
    area_unit: str = "pixels",
    z: float = Z_95,
) -> AreaAdjustedAccuracy:
    """Olofsson et al. (2014) stratified estimates of accuracy and class area.

    Assumes the reference pixels are a stratified random sample with the map classes as
    strata (eqs. 2-10 of the paper). Map classes with no sample (``n_i. = 0``) but mapped
    area leave every estimate that needs them ``nan``; map classes with one sample have an
    estimate but a ``nan`` standard error.

    Parameters
    ----------
    confusion
        ``(K, K)`` sample counts, rows = reference class, columns = map class (hsimap
        orientation; the transpose of the paper's Table 8).
    classes
        The ``K`` class values in matrix order.
    mapped_pixels
        Number of map pixels of each class over the whole map (``N_i``), same order.
    pixel_area
        Area of one pixel in ``area_unit`` (e.g. 0.09 for 30 m pixels in hectares).
    area_unit
        Name of the area unit, stored with the result.
    z
        Normal quantile for the confidence intervals (1.96 = 95 %).

    Returns
    -------
    AreaAdjustedAccuracy
    """
    cm = np.asarray(confusion, dtype=np.float64)
    k = len(classes)
    if cm.shape != (k, k):
        raise LabelError(f"confusion matrix shape {cm.shape} does not match {k} classes")
    n_map = np.asarray(mapped_pixels, dtype=np.float64)
    if n_map.shape != (k,) or np.any(n_map < 0):
        raise LabelError(
            f"mapped_pixels must be {k} non-negative counts, got {list(mapped_pixels)}"
        )
    if n_map.sum() <= 0:
        raise LabelError("the map has no mapped pixels, so no class areas can be estimated")
    # Work in the paper's orientation: n[i, j], i = map class (stratum), j = reference class.
    n = cm.T
    n_i = n.sum(axis=1)                                    # samples per stratum, n_i.
    weights = n_map / n_map.sum()                          # W_i
    frac = _safe_div(n, n_i[:, None])                      # n_ij / n_i. (nan if n_i. = 0)
    # A stratum with zero weight contributes nothing even if unsampled.
    frac_w = np.where(weights[:, None] > 0, frac, 0.0)
    p = weights[:, None] * frac_w                          # eq. 2 (nan rows if unsampled)
    p_col = p.sum(axis=0)                                  # p_.j, eq. 9
    diag_p = np.diag(p)
    overall = float(diag_p.sum())                          # eq. 1/4
    user = np.diag(frac)                                   # U_i = n_ii / n_i.
    producer = _safe_div(diag_p, p_col)                    # P_j = p_jj / p_.j

    dof = n_i - 1.0
    # (n_ij/n_i.)(1 - n_ij/n_i.)/(n_i. - 1); nan where n_i. < 2 (variance undefined).
    raw_var = _safe_div(frac * (1.0 - frac), np.broadcast_to(dof[:, None], frac.shape))
    var_term = np.where(weights[:, None] > 0, raw_var, 0.0)  # zero-weight strata drop out
    user_se = np.sqrt(np.diag(raw_var))                                          # eq. 6
    overall_se = math.sqrt(float((weights**2 * np.diag(var_term)).sum()))        # eq. 5
    area_prop_se = np.sqrt((weights[:, None] ** 2 * var_term).sum(axis=0))       # eq. 10

    # Producer's accuracy SE (eq. 7): N_hat_.j = sum_i N_i n_ij / n_i.
    n_hat_ref = (n_map[:, None] * frac_w).sum(axis=0)
    producer_var = np.full(k, np.nan)
    for j in range(k):
        if not (n_hat_ref[j] > 0) or not np.isfinite(producer[j]):
            continue
        pj = producer[j]
        own = n_map[j] ** 2 * (1 - pj) ** 2 * var_term[j, j]
        others = sum(n_map[i] ** 2 * var_term[i, j] for i in range(k) if i != j)
        producer_var[j] = (own + pj**2 * others) / n_hat_ref[j] ** 2
    producer_se = np.sqrt(producer_var)

    total_area = float(n_map.sum()) * pixel_area
    return AreaAdjustedAccuracy(
        classes=tuple(int(c) for c in classes),
        mapped_pixels=tuple(int(x) for x in n_map),
        pixel_area=float(pixel_area),
        area_unit=area_unit,
        weights=tuple(float(x) for x in weights),
        proportions=tuple(tuple(float(x) for x in row) for row in p.T),
        overall_accuracy=overall,
        overall_accuracy_se=overall_se,
        user_accuracy=tuple(float(x) for x in user),
        user_accuracy_se=tuple(float(x) for x in user_se),
        producer_accuracy=tuple(float(x) for x in producer),
        producer_accuracy_se=tuple(float(x) for x in producer_se),
        area_proportion=tuple(float(x) for x in p_col),
        area_proportion_se=tuple(float(x) for x in area_prop_se),
        mapped_area=tuple(float(x) * pixel_area for x in n_map),
        area=tuple(float(x) * total_area for x in p_col),
        area_se=tuple(float(x) * total_area for x in area_prop_se),
        z=float(z),
    )
