"""Write an evaluation into one folder: ``metrics.json``, CSV tables and the HTML report.

:func:`write_report` takes what :func:`hsimap.evaluate.evaluate_map` computed and writes:

* ``metrics.json``: every number, machine readable (undefined values are ``null``);
* ``confusion_matrix.csv`` and ``per_class.csv``: the same numbers as the JSON, as tables;
* ``report.html``: a self-contained page (images embedded as data URIs) with a quick-look
  of the map, the confusion-matrix heatmap, the tables, the protocol and, when a training log
  is given, the training curves.

Nothing here computes a metric; the figures come from :mod:`hsimap.plots`.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hsimap._files import atomic_write_text, make_output_folder
from hsimap.classes import ClassInfo, ClassTable
from hsimap.metrics import AccuracyMetrics, AreaAdjustedAccuracy
from hsimap.plots import (
    confusion_layout,
    confusion_png,
    curves_png,
    is_number,
    quicklook_png,
)

__all__ = ["OUTPUT_NAMES", "PAGE_CSS", "confusion_layout", "csv_text", "split_facts",
           "write_report"]

OUTPUT_NAMES = ("metrics.json", "confusion_matrix.csv", "per_class.csv", "report.html")


def _csv_cell(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)  # the same shortest round-trip text json.dumps writes
    return str(x)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(x) for x in row])
    return buf.getvalue()


def write_report(out: Path, document: dict[str, Any], table: ClassTable,
                   accuracy: AccuracyMetrics, area: AreaAdjustedAccuracy, *,
                   quicklook: npt.NDArray[np.int64],
                   log_series: dict[str, list[float]] | None) -> dict[str, Path]:
    make_output_folder(out)
    files = {name: out / name for name in OUTPUT_NAMES}
    atomic_write_text(files["metrics.json"], json.dumps(document, indent=2, allow_nan=False) + "\n")
    cm_header = ["reference_value", "reference_name"] + [f"map_{v}" for v in table.values]
    cm_rows = [[c.value, c.name, *accuracy.confusion[i]] for i, c in enumerate(table)]
    atomic_write_text(files["confusion_matrix.csv"], csv_text(cm_header, cm_rows))
    records = document["per_class"]
    header = list(records[0]) if records else []
    atomic_write_text(files["per_class.csv"],
                      csv_text(header, [list(r.values()) for r in records]))
    atomic_write_text(files["report.html"], _html_report(
        document, table, accuracy, area, quicklook=quicklook, log_series=log_series))
    return files


# ----------------------------------------------------------------------------- training-log tables


def _denoiser_table(training_log: str | None) -> str:
    """HTML table of the log's ``denoiser_eval`` (held-out noise error per timestep), or ''."""
    try:
        doc = json.loads(Path(training_log).read_text()) if training_log else {}
    except (OSError, ValueError):
        return ""
    ev = doc.get("denoiser_eval") if isinstance(doc, dict) else None
    if not isinstance(ev, dict) or not ev.get("timesteps"):
        return ""
    try:
        rows = "".join(
            f"<tr><td>{int(t)}</td><td>{float(e):.3f}</td><td>{float(z):.3f}</td>"
            f"<td>{float(e) / float(z):.2f}</td></tr>"
            for t, e, z in zip(ev["timesteps"], ev["eps_l1"], ev["zero_l1"], strict=True))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return ""
    return ("<h2>Denoiser check</h2><p class=note>Noise-prediction error (mean absolute, eval "
            f"mode) on {int(ev.get('n_pixels', 0))} pixels held out of denoiser training, at "
            "each feature timestep, beside the error of predicting zero noise. A ratio near 1 "
            "means the denoiser learned nothing at that timestep.</p><table><tr><th>timestep"
            "</th><th>denoiser L1</th><th>predict-zero L1</th><th>ratio</th></tr>"
            f"{rows}</table>")


def split_facts(training_log: str | None) -> list[tuple[str, str]]:
    """How the model was validated and what it was fitted on, from the log's ``meta``:
    ``(fact, value)`` rows (empty for a log without them)."""
    try:
        doc = json.loads(Path(training_log).read_text()) if training_log else {}
    except (OSError, ValueError):
        return []
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if not isinstance(meta, dict):
        return []
    def table(key: str) -> dict[str, Any]:
        value = meta.get(key)
        return value if isinstance(value, dict) else {}

    split, acc, training = table("split"), table("accuracy"), table("training")
    res = meta.get("resolution")
    pixel = float(res[0]) if isinstance(res, list) and res and is_number(res[0]) else None
    rows: list[tuple[str, str]] = []
    scenes = training.get("scenes")
    if isinstance(scenes, list) and scenes:
        rows.append(("training scenes", "; ".join(
            f"{s.get('cube')} + {s.get('labels')}" for s in scenes if isinstance(s, dict))))
    elif training.get("cube"):
        rows.append(("training scene", f"{training.get('cube')} + {training.get('labels')}"))
    if split:
        rows.append(("validation split", f"{split.get('method')}, {split.get('val_fraction')} "
                                         f"of each class held out, seed {split.get('seed')}"))
        rows.append(("training / validation pixels",
                     f"{split.get('n_train')} / {split.get('n_val')}"))
        rows.append(("guard band", f"{split.get('guard_px')} px; it removed "
                                   f"{split.get('n_guard_removed')} validation pixels"))
    distance = acc.get("val_distance_px")
    if isinstance(distance, int | float) and is_number(distance):
        metres = f" ({distance * pixel:g} m)" if pixel else ""
        rows.append(("closest validation pixel to a training pixel", f"{distance} px{metres}"))
    if is_number(acc.get("val_oa")):
        rows.append(("validation accuracy at training",
                     f"{float(acc['val_oa']):.4f} on {acc.get('val_pixels')} pixels"))
    if "refitted_on_all" in acc:
        rows.append(("saved model", (
            f"refitted on all {acc.get('fitted_pixels')} labelled pixels (training + "
            "validation): the validation pixels trained the saved model, so only reference "
            "data outside the training labels is an independent test")
            if acc.get("refitted_on_all") else
            f"fitted on the {acc.get('fitted_pixels')} training pixels only (--no-refit): the "
            "validation pixels are independent of it"))
    return rows


def _split_table(training_log: str | None) -> str:
    rows = split_facts(training_log)
    if not rows:
        return ""
    body = "".join(f"<tr><th class=name>{html.escape(k)}</th><td class=name>{html.escape(v)}"
                   "</td></tr>" for k, v in rows)
    return ("<h2>How the model was validated</h2><p class=note>From the training log: the "
            "split of the labels into training and validation pixels, the guard band between "
            "them, and whether the saved model was refitted on the validation pixels.</p>"
            f"<table>{body}</table>")


def _inside_figure(training_log: str | None) -> str | None:
    """Data URI of the ``<model>.inside.png`` written beside ``<model>.log.json``, if any."""
    if not training_log or not training_log.endswith(".log.json"):
        return None
    png = Path(training_log[: -len(".log.json")] + ".inside.png")
    if not png.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


# ----------------------------------------------------------------------------- HTML

PAGE_CSS = """
.warn{background:#fff3cd;border-left:4px solid #d39e00;padding:0.5em 0.8em}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td.name,th.name{text-align:left}
.swatch{display:inline-block;width:0.9em;height:0.9em;border:1px solid #555;
margin-right:0.4em;vertical-align:middle}
.kpi{display:inline-block;margin:0 2em 1em 0}.kpi b{font-size:1.6em;display:block}
img{max-width:100%;height:auto}p.note{color:#555;font-size:0.9em;max-width:60em}
code{background:#f4f4f4;padding:0 3px}
.scroll{overflow-x:auto}img.natural{max-width:none}
"""


def _fmt(x: float | None, digits: int = 4) -> str:
    return "&ndash;" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _fmt_pm(x: float | None, ci: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "&ndash;"
    if ci is None or not math.isfinite(ci):
        return f"{x:.{digits}f}"
    return f"{x:.{digits}f} &plusmn; {ci:.{digits}f}"


def _name_cell(c: ClassInfo) -> str:
    return (f'<td class="name"><span class="swatch" style="background:{html.escape(c.color)}">'
            f"</span>{c.value} {html.escape(c.name)}</td>")


def _per_class_table(table: ClassTable, accuracy: AccuracyMetrics) -> str:
    head = ("<tr><th class=name>class</th><th>reference px</th><th>mapped as (in reference)</th>"
            "<th>producer's acc.</th><th>user's acc.</th><th>F1</th></tr>")
    body = "".join(
        f"<tr>{_name_cell(c)}<td>{accuracy.reference_counts[i]}</td>"
        f"<td>{accuracy.predicted_counts[i]}</td><td>{_fmt(accuracy.producer_accuracy[i])}</td>"
        f"<td>{_fmt(accuracy.user_accuracy[i])}</td><td>{_fmt(accuracy.f1[i])}</td></tr>"
        for i, c in enumerate(table))
    return f"<table>{head}{body}</table>"


def _area_table(table: ClassTable, area: AreaAdjustedAccuracy) -> str:
    u = html.escape(area.area_unit)
    head = (f"<tr><th class=name>class</th><th>mapped px</th><th>weight W<sub>i</sub></th>"
            f"<th>user's acc. &plusmn; 95% CI</th><th>producer's acc. &plusmn; 95% CI</th>"
            f"<th>mapped area ({u})</th><th>adjusted area &plusmn; 95% CI ({u})</th></tr>")
    digits = 2 if area.area_unit == "ha" else 0
    body = "".join(
        f"<tr>{_name_cell(c)}<td>{area.mapped_pixels[i]}</td><td>{_fmt(area.weights[i])}</td>"
        f"<td>{_fmt_pm(area.user_accuracy[i], area.user_accuracy_ci[i])}</td>"
        f"<td>{_fmt_pm(area.producer_accuracy[i], area.producer_accuracy_ci[i])}</td>"
        f"<td>{_fmt(area.mapped_area[i], digits)}</td>"
        f"<td>{_fmt_pm(area.area[i], area.area_ci[i], digits)}</td></tr>"
        for i, c in enumerate(table))
    oa = _fmt_pm(area.overall_accuracy, area.overall_accuracy_ci)
    unsampled = [c for i, c in enumerate(table)
                 if area.mapped_pixels[i] > 0 and area.weights[i] > 0
                 and not math.isfinite(area.user_accuracy[i])]
    note = ""
    if unsampled:
        names = ", ".join(html.escape(f"{c.value} {c.name}") for c in unsampled)
        note = (f"<p class=note>Map class(es) {names} have mapped area but no reference pixel, "
                "so their accuracy, and every estimate that needs it, is undefined "
                "(&ndash;). Add reference data inside those classes.</p>")
    return (f"<p>Area-adjusted overall accuracy: <b>{oa}</b></p>{note}"
            f"<table>{head}{body}</table>")


def _inputs_table(info: dict[str, Any]) -> str:
    rows = []
    for key, value in info.items():
        if key == "map_tags":
            value = ", ".join(f"{k}={v}" for k, v in value.items()) or None
        if value is None or value == []:
            continue
        text = html.escape(str(value))
        rows.append(f"<tr><th class=name>{html.escape(key)}</th><td class=name><code>{text}"
                    "</code></td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _html_report(document: dict[str, Any], table: ClassTable, accuracy: AccuracyMetrics,
                 area: AreaAdjustedAccuracy, *, quicklook: npt.NDArray[np.int64],
                 log_series: dict[str, list[float]] | None) -> str:
    info = document["inputs"]
    title = f"hsimap evaluation: {Path(info['map']).name}"
    kpis = "".join(
        f'<div class="kpi">{label}<b>{_fmt(document[key])}</b></div>'
        for label, key in (("Overall accuracy", "overall_accuracy"),
                           ("Average accuracy", "average_accuracy"), ("Cohen's kappa", "kappa")))
    kpis += f'<div class="kpi">Reference pixels<b>{accuracy.n_samples}</b></div>'
    parts = [
        f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=note>Created {html.escape(document['created'])} by hsimap "
        f"{html.escape(document['hsimap_version'])}. All numbers are also in "
        "<code>metrics.json</code>, <code>confusion_matrix.csv</code> and "
        "<code>per_class.csv</code>.</p>",
        *(f'<p class="warn"><b>Warning:</b> {html.escape(n)}</p>'
          for n in info.get("warnings", [])),
        f"<h2>Summary</h2>{kpis}",
        "<h2>Map</h2>",
        f'<img alt="quick-look of the class map" src="{quicklook_png(quicklook, table)}">',
        "<h2>Confusion matrix</h2><p class=note>Rows: reference class; columns: map class. "
        "Colour: share of the reference row; numbers: pixel counts.</p>",
        '<div class="scroll"><img class="natural" alt="confusion matrix" '
        f'src="{confusion_png(accuracy, table)}"></div>',
        f"<h2>Per-class accuracy</h2>{_per_class_table(table, accuracy)}",
        "<h2>Area-adjusted accuracy and class areas</h2>",
        _area_table(table, area),
    ]
    if log_series is not None:
        parts.append("<h2>Training curves</h2>")
        if log_series:
            parts.append(f'<img alt="training curves" src="{curves_png(log_series)}">')
        else:
            parts.append("<p class=note>The training log holds no numeric series.</p>")
        parts.append(_split_table(document["inputs"].get("training_log")))
        parts.append(_denoiser_table(document["inputs"].get("training_log")))
        inside = _inside_figure(document["inputs"].get("training_log"))
        if inside:
            parts.append("<h2>Inside the model</h2><p class=note>For the most-labelled windows "
                         "of the training scene: the input, its noised versions at the feature "
                         "timesteps, the denoiser's reconstruction, and the first three "
                         "principal components of each timestep's features.</p>")
            parts.append(f'<img alt="inside the model" src="{inside}">')
    parts += [
        f"<h2>Protocol</h2><p class=note>{html.escape(document['protocol'])}</p>",
        f"<h2>Provenance</h2>{_inputs_table(info)}",
        "</body></html>\n",
    ]
    return "\n".join(parts)
