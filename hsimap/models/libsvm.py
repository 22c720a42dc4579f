"""scikit-learn's libsvm, as hsimap uses it: one fit at a time, the fitted machine as tensors,
and libsvm's probability coupling re-implemented in torch.

- :func:`fit_svc` fits an ``SVC`` under a process-wide lock (:data:`LIBSVM`): libsvm draws
  from one Mersenne Twister for the whole process, so fits in threads must take turns to
  give what they give alone.
- :func:`svc_tensors` turns a fitted ``SVC(kernel="rbf", probability=True)`` into the
  tensors the ``svm`` kind stores (never a pickle); :func:`shared_sigmoid` replaces its
  per-pair Platt sigmoids by one shared slope.
- :func:`multiclass_probability` is libsvm's pairwise coupling (Wu, Lin & Weng 2004,
  method 2) for a batch of pixels.

The model kind itself (config, grid search, inference, presets) is :mod:`hsimap.models.svm`.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

# scikit-learn 1.9 and 1.10 deprecate SVC(probability=True) and its probA_ / probB_, which
# hsimap needs (pyproject caps scikit-learn below 1.11). Filtered once, for these messages
# only: a catch_warnings block around each fit is not thread-safe, and fits run in threads
# (DiffSpectralNet's member beside its classifier, compare's folds).
warnings.filterwarnings("ignore", message="The `probability` parameter was deprecated",
                        category=FutureWarning)
warnings.filterwarnings("ignore", message="Attribute `prob[AB]_` was deprecated",
                        category=FutureWarning)

#: libsvm's floor and ceiling of a pairwise probability (``svm_predict_probability``).
PAIRWISE_MIN_PROB = 1e-7


# scikit-learn's libsvm draws from one process-wide Mersenne Twister (newrand.h), which
# every fit reseeds; its probability cross-validation draws fold assignments from it. Two
# fits at once in threads would interleave those draws, so hsimap's fits take turns.
LIBSVM = threading.Lock()


def fit_svc(svc: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """``svc.fit``, one libsvm fit at a time in this process (:data:`LIBSVM`: the same
    result whatever runs in other threads), without scikit-learn 1.9's FutureWarning about
    ``probability=True`` (hsimap needs libsvm's pairwise Platt probabilities, which only
    that option gives; see the filters at the top of this module)."""
    with LIBSVM:
        return svc.fit(x, y)


def svc_tensors(svc: Any) -> dict[str, torch.Tensor]:
    """The stored tensors of a fitted ``sklearn.svm.SVC(kernel="rbf", probability=True)``.

    scikit-learn flips the signs of ``dual_coef_`` and ``intercept_`` for two classes; the
    tensors keep libsvm's convention (decision > 0 votes for the first class of a pair).
    """
    sign = -1.0 if len(svc.classes_) == 2 else 1.0
    gamma = svc.gamma if isinstance(svc.gamma, (int, float)) else svc._gamma
    prob_a, prob_b = np.asarray(svc.probA_, np.float64), np.asarray(svc.probB_, np.float64)
    return {
        "support_vectors": torch.from_numpy(np.asarray(svc.support_vectors_, np.float32)),
        "n_support": torch.from_numpy(np.asarray(svc.n_support_, np.int64)),
        "class_index": torch.from_numpy(np.asarray(svc.classes_, np.int64)),
        "dual_coef": torch.from_numpy(sign * np.asarray(svc.dual_coef_, np.float64)),
        "intercept": torch.from_numpy(sign * np.asarray(svc.intercept_, np.float64)),
        "prob_a": torch.from_numpy(prob_a),
        "prob_b": torch.from_numpy(prob_b),
        "gamma": torch.tensor([float(gamma)], dtype=torch.float64),
    }


def shared_sigmoid(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with one Platt slope for every class pair (the median of the pairs'
    slopes; for an even count the lower middle one, as ``torch.median``) and no offsets
    (``calibration = "shared"``, see :class:`hsimap.models.svm.SVMConfig`)."""
    a = tensors["prob_a"]
    slope = a.median() if len(a) else a.new_zeros(())
    return {**tensors, "prob_a": torch.full_like(a, float(slope)),
            "prob_b": torch.zeros_like(tensors["prob_b"])}


def multiclass_probability(r: torch.Tensor) -> torch.Tensor:
    """Class probabilities ``(N, k)`` from pairwise ones ``r`` ``(N, k, k)``.

    ``r[n, i, j]`` estimates P(class i | i or j) for pixel ``n`` (diagonal unused). This is
    libsvm's ``multiclass_probability`` (Wu, Lin & Weng 2004, method 2) run for every pixel
    at once: the same initialisation, Gauss-Seidel sweep, stopping rule (per pixel, max error
    below ``0.005 / k``) and iteration cap (``max(100, k)``), so the result is libsvm's.
    """
    n, k, _ = r.shape
    off = 1.0 - torch.eye(k, dtype=r.dtype, device=r.device)
    r = r * off
    rt = r.transpose(1, 2)  # rt[:, t, j] = r[:, j, t]
    q = -rt * r + torch.diag_embed((r * r).sum(1))  # Q[t][t] = sum_j r[j][t]^2
    p = torch.full((n, k), 1.0 / k, dtype=r.dtype, device=r.device)
    active = torch.ones(n, dtype=torch.bool, device=r.device)
    eps = 0.005 / k
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    for _ in range(max(100, k)):
        qp = (q @ p[:, :, None])[:, :, 0]
        pqp = (p * qp).sum(1)
        active &= (qp - pqp[:, None]).abs().amax(1) >= eps
        if not bool(active.any()):
            break
        # A pixel that has met the stopping rule gets diff = 0, which leaves p, Qp and pQp
        # exactly as they are: the same as libsvm leaving its loop, without indexing.
        for t in range(k):
            qtt = q[:, t, t]
            diff = torch.where(active, (-qp[:, t] + pqp) / qtt, zero)
            p[:, t] += diff
            pqp = (pqp + diff * (diff * qtt + 2 * qp[:, t])) / (1 + diff) / (1 + diff)
            qp = (qp + diff[:, None] * q[:, t, :]) / (1 + diff)[:, None]
            p = p / (1 + diff)[:, None]
    return p
