"""The figures of hsimap: training curves and inspection panels, the report's images.

Every figure is a :class:`matplotlib.figure.Figure` on its own Agg canvas (:func:`figure`),
so nothing here touches pyplot's global state or the application's backend (QGIS runs
hsimap in-process). Training writes ``<model>.curves.png`` (:func:`write_curves`) and
``<model>.inside.png`` (:func:`write_inspection`); the evaluation report embeds the
quick-look, the confusion matrix and the curves of a training log as PNG data URIs.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from hsimap.classes import ClassTable
from hsimap.errors import InputFileError

if TYPE_CHECKING:
    from hsimap.checkpoint import Checkpoint
    from hsimap.metrics import AccuracyMetrics

log = logging.getLogger(__name__)

MAX_CURVES = 12
# Keys whose series are the x axis of a training log, not something to plot.
_X_KEYS = {"epoch", "epochs", "step", "steps", "iteration", "iterations", "iter", "time"}
# Parts of a training log that are settings or one-off measurements, never training curves
# (band indices, wavelengths, timesteps, the held-out denoiser check, the training pixels).
_NOT_SERIES = {"meta", "config", "denoiser_eval", "eval", "timings", "training_data"}


# ----------------------------------------------------------------------------- training-log series


def read_training_log(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        raise InputFileError("training log not found", path=path, fix="check the --log path")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"training log is not valid JSON ({exc})", path=path,
                             fix="give the JSON log written by `hsimap train`") from exc
    series = find_series(doc)
    if not series:
        log.warning("%s: no numeric per-epoch series found; no training curves", path)
    return series


def find_series(doc: Any, prefix: str = "") -> dict[str, list[float]]:
    """Numeric series in a training log, by dotted path.

    Lists of two or more numbers become one series (``denoiser.loss``); lists of records
    become one series per numeric key (``classifier.epochs[*].val_acc``). Keys that look
    like an x axis (``epoch``, ``step``, ...) are skipped. Anything else is ignored.
    """
    out: dict[str, list[float]] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            is_axis = isinstance(value, list) and all(is_number(x) for x in value)
            if str(key) in _NOT_SERIES:
                continue
            if not (is_axis and str(key).lower() in _X_KEYS):
                out.update(find_series(value, name))
    elif isinstance(doc, list) and len(doc) >= 2:
        if all(is_number(x) for x in doc):
            out[prefix or "series"] = [float(x) for x in doc]
        elif all(isinstance(x, dict) for x in doc):
            keys = dict.fromkeys(k for rec in doc for k, v in rec.items() if is_number(v))
            for key in keys:
                if str(key).lower() in _X_KEYS:
                    continue
                ys = [float(r[key]) if is_number(r.get(key)) else math.nan for r in doc]
                if sum(math.isfinite(y) for y in ys) >= 2:
                    out[f"{prefix}[*].{key}"] = ys
    return out


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


# ----------------------------------------------------------------------------- figures


def png_data_uri(fig: Any, *, tight: bool = True) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, bbox_inches="tight" if tight else None)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(width: float, height: float, *,
            layout: Literal["constrained"] | None = None) -> Any:
    """A matplotlib figure on the Agg canvas (no display, no global pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def quicklook_png(data: npt.NDArray[np.int64], table: ClassTable) -> str:
    """PNG data URI of a class map with a legend of class colours and names."""
    from matplotlib.patches import Patch

    rgba = np.zeros((*data.shape, 4), dtype=np.uint8)  # no class: transparent
    for c in table:
        rgba[data == c.value] = (*c.rgb(), 255)
    aspect = data.shape[0] / max(data.shape[1], 1)
    fig = figure(7.5, max(2.5, min(12.0, 5.0 * aspect)))
    ax = fig.add_subplot()
    ax.imshow(rgba, interpolation="nearest")
    ax.set_axis_off()
    handles = [Patch(facecolor=c.color, edgecolor="black", linewidth=0.3,
                     label=f"{c.value} {c.name}") for c in table]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
              frameon=False)
    return png_data_uri(fig)


# The report's page is at most 1100 px wide (PAGE_CSS); a figure drawn narrower than this at
# FIGURE_DPI is shown at its own size, never scaled down, in a 1400 px wide window.
FIGURE_DPI = 100
CONFUSION_MAX_PX = 1040
MIN_TEXT_PX = 10.0  # smallest number height (px at 100 % zoom) the report draws
MIN_CELL_IN = 0.34  # holds a four-character count (1.2M) at MIN_TEXT_PX


@dataclass(frozen=True)
class ConfusionLayout:
    """Size of the confusion-matrix figure and of its numbers, from the class count."""

    cell_in: float  # side of one matrix cell, inches
    width_in: float
    height_in: float
    number_pt: float  # font size of the counts in the cells
    label_pt: float  # font size of the class names
    compact: bool  # counts written as 12k / 1.2M to fit the cells
    numbers: bool  # whether counts are written at all (else: confusion_matrix.csv)

    def px(self, points: float) -> float:
        """Pixels of ``points`` at the figure's resolution."""
        return points * FIGURE_DPI / 72.0


def confusion_layout(k: int, largest: int) -> ConfusionLayout:
    """Cells as large as the page allows (1.1 in at most; at least ``MIN_CELL_IN``, so that
    many classes make a figure wider than the page, which the report scrolls instead of
    shrinking), numbers as large as a cell holds (never under ``MIN_TEXT_PX``; counts of
    four digits or more become 12k / 1.2M when that is what fits), class names with them."""
    margin_in = 3.4  # class names, axis labels and the colour bar
    cell = float(np.clip((CONFUSION_MAX_PX / FIGURE_DPI - margin_in) / max(k, 1),
                         MIN_CELL_IN, 1.1))
    digits = len(str(max(int(largest), 1)))
    compact = False

    def fitting(n_chars: int) -> float:
        return min(16.0, 0.8 * cell * 72.0 / (0.62 * n_chars), cell * 72.0 * 0.45)

    number = fitting(digits)
    if number * FIGURE_DPI / 72.0 < MIN_TEXT_PX and digits > 3:
        compact, number = True, fitting(4)  # 12k, 1.2M
    numbers = number * FIGURE_DPI / 72.0 >= MIN_TEXT_PX
    label = float(np.clip(cell * 72.0 * 0.32, 8.0, 12.0))
    side = cell * k
    return ConfusionLayout(cell, side + margin_in, side + margin_in - 0.8, number, label,
                           compact, numbers)


def _count_text(n: int, compact: bool) -> str:
    if not compact or n < 1000:
        return str(n)
    for div, unit in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            v = n / div
            return f"{v:.1f}{unit}" if v < 10 else f"{v:.0f}{unit}"
    return str(n)


def confusion_png(accuracy: AccuracyMetrics, table: ClassTable) -> str:
    """PNG data URI of the confusion matrix: colour = row share, text = counts, sized by
    :func:`confusion_layout` so the numbers read at 100 % zoom in a 1400 px wide window."""
    cm = accuracy.matrix.astype(np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(table)
    lay = confusion_layout(k, int(cm.max()) if cm.size else 0)
    fig = figure(lay.width_in, lay.height_in, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("share of reference row", fontsize=lay.label_pt)
    bar.ax.tick_params(labelsize=lay.label_pt)
    labels = [f"{c.value} {c.name}"[:28] for c in table]
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=lay.label_pt)
    ax.set_yticks(range(k), labels, fontsize=lay.label_pt)
    ax.set_xlabel("map class", fontsize=lay.label_pt + 1)
    ax.set_ylabel("reference class", fontsize=lay.label_pt + 1)
    if lay.numbers:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, _count_text(int(cm[i, j]), lay.compact), ha="center",
                            va="center", fontsize=lay.number_pt,
                            color="white" if share[i, j] > 0.5 else "black")
    return png_data_uri(fig, tight=False)


def curves_png(series: dict[str, list[float]]) -> str:
    """PNG data URI with one small panel per training-log series."""
    from matplotlib.ticker import MaxNLocator

    names = list(series)[:MAX_CURVES]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = figure(4.0 * ncols, 2.8 * nrows, layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ys = series[name]
        ax.plot(range(1, len(ys) + 1), ys, marker="." if len(ys) < 60 else None, linewidth=1)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("epoch / step", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return png_data_uri(fig, tight=False)


# ----------------------------------------------------------------------------- training figures


def write_inspection(ckpt: Checkpoint, raw: np.ndarray, valid: np.ndarray,
                     labelled: np.ndarray, wavelengths: list[float] | None, path: Path, *,
                     n_windows: int = 3, size: int = 48) -> Path | None:
    """A PNG grid of the model's diagnostic panels for the most-labelled windows of the scene.

    Rows are windows, columns the panels of :meth:`HsiModel.inspect` (for DiffSpectralNet: the
    true-colour input, its noised and denoised versions and the feature PCs per timestep).
    """
    import torch
    from scipy import ndimage

    _, h, w = raw.shape
    size = min(size, h, w)
    density = ndimage.uniform_filter(labelled.astype(np.float32), size=size, mode="constant")
    rgb = None
    if wavelengths is not None:
        rgb = tuple(int(np.argmin(np.abs(np.asarray(wavelengths) - nm)))
                    for nm in (640.0, 550.0, 460.0))
    rows = []
    for _ in range(n_windows):
        r, c = np.unravel_index(int(np.argmax(density)), density.shape)
        r0, c0 = int(np.clip(r - size // 2, 0, h - size)), int(np.clip(c - size // 2, 0, w - size))
        density[max(0, r0 - size // 2):r0 + size + size // 2,
                max(0, c0 - size // 2):c0 + size + size // 2] = -1
        halo = ckpt.model.halo()  # compute with context, show the window itself
        y0, x0 = max(0, r0 - halo), max(0, c0 - halo)
        window = np.s_[:, y0:min(h, r0 + size + halo), x0:min(w, c0 + size + halo)]
        x = ckpt.norm.apply(raw[window].copy(), valid[window[1:]])
        panels = ckpt.model.inspect(torch.from_numpy(x)[None], origin=(y0, x0),
                                    rgb_bands=rgb)  # type: ignore[arg-type]
        if not panels:
            return None
        crop = np.s_[r0 - y0:r0 - y0 + size, c0 - x0:c0 - x0 + size]
        rows.append(((r0, c0), {k: v[crop] for k, v in panels.items()}))
    return _plot_panels(rows, path)


def _plot_panels(rows: list[tuple[tuple[int, int], dict[str, np.ndarray]]],
                 path: Path) -> Path:
    n_cols = max(len(panels) for _, panels in rows)
    fig = figure(1.9 * n_cols, 2.1 * len(rows))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for i, ((r0, c0), panels) in enumerate(rows):
        for j, (title, image) in enumerate(panels.items()):  # titles may carry the window's
            ax = axes[i][j]  # own numbers (the denoiser's error there), so every row has them
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=6)
        axes[i][0].set_ylabel(f"row {r0}, col {c0}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return path


def write_curves(history: Mapping[str, Any], path: Path) -> Path | None:
    """Plot the denoiser loss and classifier loss/accuracy curves to a PNG."""
    panels = []
    den = history.get("denoiser", {})
    if den.get("loss"):
        panels.append(("denoiser loss (per iteration)", {"loss": den["loss"]}))
    epochs = history.get("classifier", {}).get("epochs", [])
    if epochs:
        panels.append(("classifier loss", {"loss": [e["loss"] for e in epochs]}))
        panels.append(("classifier accuracy", {
            k: [e[k] for e in epochs] for k in ("train_acc", "val_acc") if k in epochs[0]}))
    if not panels:
        return None
    fig = figure(4.5 * len(panels), 3.2)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, series) in zip(axes[0], panels, strict=True):
        for name, ys in series.items():
            ax.plot(range(1, len(ys) + 1), ys, label=name)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
