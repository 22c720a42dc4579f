"""``hsimap info``: describe a cube or a model file, as text or as JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click


@click.command(short_help="Describe a cube or a model file.")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: numbers as numbers, lists as lists, sizes as "
                   '{"width": .., "height": ..} (a NaN nodata value is the string "NaN").')
def info(path: Path, as_json: bool) -> None:
    """Print what hsimap sees in PATH: a hyperspectral raster or a model (.safetensors).

    Sizes are width x height (columns x rows) in pixels; band numbers are 1-based.

    \b
    Examples:
      hsimap info scene.tif
      hsimap info --json hsimap_model.safetensors
    """
    from hsimap.preflight import Problems

    problems = Problems()  # before the raster reader (rioxarray, about a second) is imported
    problems.files((path, "file", "check the path (relative paths start from the current "
                                  "folder)"))
    problems.raise_all()
    if path.suffix.lower() == ".safetensors":
        description = model_description(path)
    else:
        description = cube_description(path)
    if as_json:
        click.echo(json.dumps(_json_safe(description), indent=1, allow_nan=False))
        return
    click.echo("\n".join(text_lines(description)))


def model_description(path: Path) -> dict[str, Any]:
    """The facts stored in a model file, as JSON-ready values."""
    from hsimap.model_file import read_metadata  # torch-free

    meta = read_metadata(path)  # checks the entries used here (classes, bands, wavelengths)
    training = meta.get("training")
    if not isinstance(training, dict):  # informational only: shown as unknown when edited
        training = {}
    return {
        "model": meta["model_kind"],
        "classes": [{"value": int(c["value"]), "name": str(c["name"]), "color": str(c["color"])}
                    for c in meta["classes"]],
        "bands": {"in_file": int(meta["n_bands"]), "used": len(meta["band_indices"])},
        "bands_used": [int(b) + 1 for b in meta["band_indices"]],
        "wavelengths_nm": _floats(meta.get("wavelengths")),
        "crs": meta.get("crs"),
        "pixel_size": _floats(meta.get("resolution")),
        "halo_px": meta.get("halo"),
        "validation": meta.get("split"),
        "accuracy": meta.get("accuracy"),
        "config": meta.get("model_config"),
        "trained_on": {"cube": training.get("cube"), "labels": training.get("labels"),
                       "class_field": training.get("class_field"),
                       "scenes": _scenes(training)},
        "created": meta.get("created"),
        "software": meta.get("software"),
        "format_version": meta.get("format_version"),
    }


def _scenes(training: dict[str, Any]) -> list[dict[str, Any]]:
    """Every training scene's cube and labels (one for a single-scene model)."""
    listed = training.get("scenes")
    if isinstance(listed, list):
        return [{"cube": s.get("cube"), "labels": s.get("labels")} for s in listed
                if isinstance(s, dict)]
    return [{"cube": training.get("cube"), "labels": training.get("labels")}]


def cube_description(path: Path) -> dict[str, Any]:
    """What hsimap reads from a cube, as JSON-ready values."""
    from hsimap.cube import open_cube

    cube = open_cube(path)
    g = cube.grid
    left, bottom, right, top = (float(v) for v in g.bounds)
    return {
        "size": {"width": g.width, "height": g.height},
        "bands": cube.count,
        "dtype": cube.dtype,
        "crs": None if g.crs is None else g.crs.to_string(),
        "transform": [float(v) for v in list(g.transform)[:6]],
        "pixel_size": [abs(float(g.transform.a)), abs(float(g.transform.e))],
        "bounds": {"left": left, "bottom": bottom, "right": right, "top": top},
        "nodata": cube.nodata,
        "wavelengths_nm": _floats(cube.wavelengths),
        "fwhm_nm": _floats(cube.fwhm),
        "bad_bands": [b + 1 for b in cube.bad_bands],
    }


def _floats(values: Any) -> list[float] | None:
    try:
        return None if values is None else [float(v) for v in values]
    except (TypeError, ValueError):  # an edited informational entry: shown as unknown
        return None


def _json_safe(value: Any) -> Any:
    """Replace NaN/inf (not JSON) by the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def text_lines(description: dict[str, Any], *, indent: int = 0) -> list[str]:
    """One ``key: value`` line per fact; nested tables become indented lines, never dicts."""
    if indent:
        width = max(len(str(k)) for k in description)
        labels = {k: " " * indent + str(k).ljust(width) for k in description}
    else:
        labels = {k: str(k).rjust(_KEY_WIDTH) for k in description}
    lines: list[str] = []
    for key, value in description.items():
        if isinstance(value, dict) and value and key not in _INLINE:
            lines.append(f"{labels[key]}:")
            lines.extend(text_lines(value, indent=indent + _KEY_WIDTH + 2))
        else:
            lines.append(f"{labels[key]}: {_text_value(key, value)}")
    return lines


_KEY_WIDTH = 16
_INLINE = {"size", "bounds", "bands"}


def _text_value(key: str, value: Any) -> str:
    if value is None:
        return "unknown"
    if key == "size":
        return f"{value['width']} x {value['height']} px (width x height)"
    if key == "bands" and isinstance(value, dict):
        return f"{value['in_file']} in the file, {value['used']} used"
    if key == "bounds":
        return ", ".join(f"{k} {_scalar(v)}" for k, v in value.items())
    if key in ("wavelengths_nm", "fwhm_nm"):
        return f"{min(value):.1f}-{max(value):.1f} nm ({len(value)} bands)" if value else "none"
    if key == "classes":
        return ", ".join(f"{c['value']}={c['name']} ({c['color']})" for c in value)
    if key == "bands_used":
        return _ranges(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_scalar(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_scalar(v) for v in value) if value else "none"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_scalar(v)}" for k, v in value.items()) + "}"
    return str(value)


def _ranges(numbers: list[int]) -> str:
    """``1-129, 136-224`` for a sorted list of band numbers."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
