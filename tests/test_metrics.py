"""Tests of hsimap.metrics: hand-computed matrices and Olofsson et al. (2014)'s worked example."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hsimap.errors import LabelError
from hsimap.metrics import accuracy_metrics, area_adjusted_accuracy, confusion_matrix


def test_confusion_matrix_hand_computed():
    ref = np.array([1, 1, 2, 2, 3, 3])
    pred = np.array([1, 2, 2, 2, 3, 1])
    cm = confusion_matrix(ref, pred, classes=[1, 2, 3])
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert cm.dtype == np.int64


def test_confusion_matrix_follows_class_order_and_any_shape():
    ref = np.array([[10, 10], [20, 30]])
    pred = np.array([[10, 30], [20, 30]])
    cm = confusion_matrix(ref, pred, classes=[30, 10, 20])  # rows/cols in the given order
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_confusion_matrix_rejects_unknown_values_and_shape_mismatch():
    with pytest.raises(LabelError, match=r"predicted values \[7\]"):
        confusion_matrix([1, 2], [1, 7], classes=[1, 2])
    with pytest.raises(LabelError, match="shape"):
        confusion_matrix([1, 2, 1], [1, 2], classes=[1, 2])


def test_confusion_matrix_empty():
    assert confusion_matrix([], [], classes=[1, 2]).tolist() == [[0, 0], [0, 0]]


def test_accuracy_metrics_hand_computed():
    cm = [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows = reference, columns = map
    m = accuracy_metrics(cm, classes=[1, 2, 3])
    assert m.overall_accuracy == pytest.approx(4 / 6)
    assert m.producer_accuracy == pytest.approx((0.5, 1.0, 0.5))
    assert m.user_accuracy == pytest.approx((0.5, 2 / 3, 1.0))
    assert m.average_accuracy == pytest.approx(2 / 3)
    # p_e = (2*2 + 2*3 + 2*1) / 36 = 1/3; kappa = (2/3 - 1/3) / (1 - 1/3) = 0.5
    assert m.kappa == pytest.approx(0.5)
    assert m.f1 == pytest.approx((0.5, 0.8, 2 / 3))
    assert m.n_samples == 6
    assert m.reference_counts == (2, 2, 2)
    assert m.predicted_counts == (2, 3, 1)


def test_perfect_and_chance_kappa():
    assert accuracy_metrics([[5, 0], [0, 5]], classes=[1, 2]).kappa == pytest.approx(1.0)
    # map independent of the reference: observed agreement equals chance agreement
    assert accuracy_metrics([[2, 2], [2, 2]], classes=[1, 2]).kappa == pytest.approx(0.0)


def test_zero_sample_classes_are_nan_not_errors():
    cm = [[3, 1, 0], [0, 2, 0], [0, 0, 0]]  # class 3: no reference pixel, never predicted
    m = accuracy_metrics(cm, classes=[1, 2, 3])
    assert math.isnan(m.producer_accuracy[2])
    assert math.isnan(m.user_accuracy[2])
    assert math.isnan(m.f1[2])
    assert m.average_accuracy == pytest.approx((0.75 + 1.0) / 2)  # only classes present
    d = m.to_dict()
    assert d["producer_accuracy"][2] is None and d["f1"][2] is None
    json.dumps(d, allow_nan=False)  # strict JSON: no NaN tokens


def test_single_class_kappa_undefined_and_empty_matrix():
    m = accuracy_metrics([[4]], classes=[1])
    assert m.overall_accuracy == 1.0 and math.isnan(m.kappa)
    assert m.to_dict()["kappa"] is None
    empty = accuracy_metrics([[0, 0], [0, 0]], classes=[1, 2])
    assert math.isnan(empty.overall_accuracy) and math.isnan(empty.average_accuracy)
    json.dumps(empty.to_dict(), allow_nan=False)


def test_f1_is_zero_when_class_mapped_and_present_but_never_right():
    m = accuracy_metrics([[0, 2], [3, 0]], classes=[1, 2])
    assert m.f1 == (0.0, 0.0)
    assert m.overall_accuracy == 0.0


# Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E., Wulder, M. A. (2014).
# Good practices for estimating area and assessing accuracy of land change. Remote Sensing of
# Environment 148, 42-57. Section 5 ("Example"), Table 8: error matrix of sample counts, rows =
# MAP class, columns = reference class, for 4 strata (the example has four classes, not three):
# deforestation, forest gain, stable forest, stable non-forest. Mapped areas in 30 m pixels
# (0.09 ha each): 200,000 / 150,000 / 3,200,000 / 6,450,000.
OLOFSSON_TABLE_8 = np.array([
    [66, 0, 5, 4],      # map: deforestation      (n_1. = 75)
    [0, 55, 8, 12],     # map: forest gain        (n_2. = 75)
    [1, 0, 153, 11],    # map: stable forest      (n_3. = 165)
    [2, 1, 9, 313],     # map: stable non-forest  (n_4. = 325)
])
OLOFSSON_MAPPED_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]


def test_olofsson_2014_worked_example():
    r = area_adjusted_accuracy(OLOFSSON_TABLE_8.T,  # hsimap orientation: rows = reference
                               classes=[1, 2, 3, 4], mapped_pixels=OLOFSSON_MAPPED_PIXELS,
                               pixel_area=0.09, area_unit="ha")
    # Published results (section 5, Tables 9-10 and text), reported to two decimals / 1 ha.
    assert round(r.overall_accuracy, 2) == 0.95
    assert [round(u, 2) for u in r.user_accuracy] == [0.88, 0.73, 0.93, 0.96]
    assert [round(u, 2) for u in r.user_accuracy_ci] == [0.07, 0.10, 0.04, 0.02]
    assert [round(p, 2) for p in r.producer_accuracy] == [0.75, 0.85, 0.93, 0.96]
    assert round(r.producer_accuracy_ci[0], 2) == 0.21
    assert [round(a) for a in r.area] == [21_158, 11_686, 285_770, 581_386]
    assert [round(c) for c in r.area_ci] == [6_158, 3_756, 15_510, 16_282]
    assert r.mapped_area == pytest.approx((18_000, 13_500, 288_000, 580_500))
    # Internal consistency: proportions sum to 1, areas to the total mapped area.
    assert sum(r.area_proportion) == pytest.approx(1.0)
    assert sum(r.area) == pytest.approx(900_000)
    json.dumps(r.to_dict(), allow_nan=False)


def test_area_adjusted_with_unsampled_and_single_sample_strata():
    cm = np.array([[5, 0, 0], [1, 4, 0], [0, 0, 0]])  # class 3 mapped but never sampled
    r = area_adjusted_accuracy(cm, classes=[1, 2, 3], mapped_pixels=[100, 100, 50])
    assert math.isnan(r.overall_accuracy)  # needs the unsampled stratum's accuracy
    assert math.isnan(r.user_accuracy[2]) and math.isnan(r.area[0])
    d = r.to_dict()
    assert d["overall_accuracy"] is None and d["area"][0] is None
    json.dumps(d, allow_nan=False)
    # a class with mapped area 0 drops out instead of poisoning everything
    r0 = area_adjusted_accuracy(cm, classes=[1, 2, 3], mapped_pixels=[100, 100, 0])
    assert r0.overall_accuracy == pytest.approx(0.5 * 5 / 6 + 0.5 * 1.0)
    assert not math.isnan(r0.overall_accuracy_se)
    # one sample in a stratum: estimate defined, standard error not
    r1 = area_adjusted_accuracy([[1, 0], [0, 3]], classes=[1, 2], mapped_pixels=[10, 10])
    assert r1.user_accuracy[0] == 1.0 and math.isnan(r1.user_accuracy_se[0])
    assert math.isnan(r1.overall_accuracy_se)


def test_area_adjusted_rejects_bad_input():
    with pytest.raises(LabelError):
        area_adjusted_accuracy([[1]], classes=[1], mapped_pixels=[0])
    with pytest.raises(LabelError):
        area_adjusted_accuracy([[1, 0], [0, 1]], classes=[1, 2], mapped_pixels=[1])


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5).flatmap(lambda k: st.tuples(
    st.lists(st.lists(st.integers(1, 40), min_size=k, max_size=k), min_size=k, max_size=k),
    st.lists(st.integers(1, 10_000), min_size=k, max_size=k))))
def test_area_adjusted_invariants(data):
    counts, mapped = data
    cm = np.array(counts)
    k = len(mapped)
    r = area_adjusted_accuracy(cm, classes=list(range(1, k + 1)), mapped_pixels=mapped)
    assert sum(r.area_proportion) == pytest.approx(1.0)
    assert sum(r.area) == pytest.approx(sum(mapped))
    assert 0.0 <= r.overall_accuracy <= 1.0
    assert all(0.0 <= p <= 1.0 for p in r.producer_accuracy)
    assert all(s >= 0 for s in r.area_se)
    # with equal sampling fractions the stratified OA equals the sample OA
    plain = accuracy_metrics(cm, classes=list(range(1, k + 1)))
    if np.allclose(np.array(mapped) / cm.sum(axis=0), mapped[0] / cm.sum(axis=0)[0]):
        assert r.overall_accuracy == pytest.approx(plain.overall_accuracy)
