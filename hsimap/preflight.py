"""Checks every command runs before torch is imported or any input is read, reported together.

A run that would fail on a missing file, an output that exists without ``--overwrite``, an
unknown preset or a bad config value should say so at once, in one message listing every
problem, not one problem per attempt after seconds of imports and reading.
:class:`Problems` collects the :class:`hsimap.errors.HsimapError` of each check and raises
them together (:class:`SeveralProblems`); nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hsimap.errors import HsimapError, InputFileError, OutputError

T = TypeVar("T")


class SeveralProblems(HsimapError, ValueError):
    """Several problems found before a run, each with its file and fix."""

    def __init__(self, problems: Sequence[HsimapError]) -> None:
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problems, nothing was done:"]
        lines += [f"  {i}. {p.format()}" for i, p in enumerate(self.problems, 1)]
        super().__init__("\n".join(lines))
        self.exit_code = max(p.exit_code for p in self.problems)


class Problems:
    """Problems found so far; :meth:`raise_all` raises them as one error."""

    def __init__(self) -> None:
        self.errors: list[HsimapError] = []

    def check(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run one check; keep its :class:`HsimapError` (returning ``None``) instead of raising."""
        try:
            return func(*args, **kwargs)
        except SeveralProblems as exc:
            self.errors.extend(exc.problems)
        except HsimapError as exc:
            self.errors.append(exc)
        return None

    def files(self, *items: tuple[str | Path | None, str, str]) -> None:
        """Missing input files, all in one problem: ``items`` are ``(path, what, fix)``.

        ``None`` paths and GDAL virtual paths (``/vsizip/...``, URLs; GDAL checks those) are
        skipped.
        """
        missing = [(Path(p), what, fix) for p, what, fix in items
                   if p is not None and not self.exists(p)]
        if len(missing) == 1:
            path, what, fix = missing[0]
            self.errors.append(InputFileError(f"{what} not found", path=path, fix=fix))
        elif missing:
            listed = "; ".join(f"{what} {path}" for path, what, _ in missing)
            fixes = list(dict.fromkeys(fix for _, _, fix in missing))
            self.errors.append(InputFileError(
                f"{len(missing)} input files are not found: {listed}", fix="; ".join(fixes)))

    def exists(self, path: str | Path | None) -> bool:
        """Whether a local input is there to be checked further (GDAL paths count as there)."""
        return path is not None and (str(path).startswith("/vsi") or "://" in str(path)
                                     or Path(path).exists())

    def raise_all(self) -> None:
        """Raise the one problem found, or all of them together; nothing when none."""
        # a problem met by several checks (each map of a batch) is listed once
        self.errors = list({e.format(): e for e in self.errors}.values())
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise SeveralProblems(self.errors)


def log_path_for(model_path: Path) -> Path:
    """``model.safetensors`` -> ``model.log.json``."""
    return model_path.with_name(model_path.stem + ".log.json")


def split_paths(out: Path, cubes: Sequence[str | Path], folder: str | Path | None) -> list[Path]:
    """Where ``--export-split`` writes: ``<model>_split.gpkg`` for one scene, else
    ``<model>_split_<cube stem>.gpkg`` per scene (``_2``, ... after a repeated stem)."""
    if folder is None:
        return []
    if len(cubes) == 1:
        return [Path(folder) / f"{out.stem}_split.gpkg"]
    paths, seen = [], set()
    for cube in cubes:
        stem = Path(str(cube)).stem
        name, k = stem, 1
        while name in seen:
            k += 1
            name = f"{stem}_{k}"
        seen.add(name)
        paths.append(Path(folder) / f"{out.stem}_split_{name}.gpkg")
    return paths


def check_train_outputs(out: str | Path, *, inputs: Sequence[str | Path],
                        cubes: Sequence[str | Path], export_split: str | Path | None,
                        overwrite: bool) -> Path:
    """Check the model file and every file ``train`` writes beside it (log, curves, the
    "inside" figure, ``--export-split`` files); returns the model path. Nothing is created."""
    from hsimap._files import check_output

    problems = Problems()
    model = problems.check(check_output, out, inputs=tuple(inputs), overwrite=overwrite)
    problems.raise_all()
    assert model is not None
    companions = [log_path_for(model), model.with_name(model.stem + ".curves.png"),
                  model.with_name(model.stem + ".inside.png"),
                  *split_paths(model, cubes, export_split)]
    for companion in companions:
        if export_split is not None and companion.parent == Path(export_split) and \
                not companion.parent.exists():
            continue  # a folder --export-split creates: nothing in it exists yet
        problems.check(check_output, companion, inputs=tuple(inputs), overwrite=overwrite)
    problems.raise_all()
    return model


def check_predict_outputs(scene: str | Path, *, out: str | Path, model: str | Path,
                          probabilities: str | Path | None = None,
                          confidence: str | Path | None = None, prob_dtype: str = "uint8",
                          confidence_kind: str = "max", cog: bool = False,
                          creation_options: Any = (), overwrite: bool = False,
                          resume: bool = False) -> tuple[Any, list[str | Path], Any]:
    """Check the GDAL creation options and every file ``predict`` writes (map, sidecars,
    probabilities, confidence), together; returns the :class:`hsimap.predict.outputs.OutputSpec`,
    the input files and the resume record (``None`` unless ``resume``)."""
    from hsimap.geotiff import check_creation_options
    from hsimap.predict.outputs import OutputSpec, check_outputs, input_files
    from hsimap.predict.partial import read_record

    options = tuple((str(k), str(v)) for k, v in dict(creation_options or ()).items())
    spec = OutputSpec(Path(out), None if probabilities is None else Path(probabilities),
                      None if confidence is None else Path(confidence),
                      prob_dtype, confidence_kind, cog, options)  # type: ignore[arg-type]
    problems = Problems()
    problems.check(check_creation_options, options, cog=cog)
    inputs = input_files(scene, model)
    previous = read_record(spec.map) if resume else None
    problems.check(check_outputs, spec, inputs=inputs, overwrite=overwrite,
                   done=previous.get("finalized", []) if previous else ())
    problems.raise_all()
    return spec, inputs, previous


# The files `hsimap compare` writes into its folder (hsimap.compare.OUTPUT_NAMES).
COMPARE_OUTPUTS = ("compare.json", "compare.csv", "compare_folds.csv", "compare.html")


def check_compare_dir(out: str | Path, *, overwrite: bool) -> Path:
    """The comparison folder, refused when it is a file or already holds a comparison and
    ``overwrite`` is not given; nothing is created."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError("output path exists and is not a folder", path=out,
                          fix="give a folder name with -o")
    existing = [n for n in COMPARE_OUTPUTS if (out / n).exists()]
    if existing and not overwrite:
        raise OutputError(f"folder already holds a comparison ({', '.join(existing)})",
                          path=out, fix="pass --overwrite to replace it, or choose another "
                                        "folder with -o")
    return out
