"""Progress display for the CLI: live bars in a terminal, one plain line per stage elsewhere.

The library reports :class:`hsimap.models.base.ProgressEvent` s; this module shows them.

- **Terminal** (stderr is a TTY): one tqdm bar per stage, closed when the stage ends, so
  no bar is left frozen or redrawn later.
- **Anything else** (a log file, a pipe, the QGIS log): nothing while a stage runs, then one
  line when it ends, without escape codes or bar characters, e.g. ``classifier: 40/40
  epochs, 2m19s (1.7 s/epoch); loss 0.12, val_acc 0.91``.

A stage ends when ``done`` reaches ``total``, when an event brings a ``note`` (early
stopping: ``stopped early at epoch 15 of 40; kept epoch 7 ...``), or when it starts again
(the next ensemble member, the next fold); a stage still open when the command ends is
reported as unfinished. ``HSIMAP_PROGRESS=bars`` or ``=lines`` overrides the choice (the QGIS
scripts ask for bars, which they parse).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

ENV_VAR = "HSIMAP_PROGRESS"

# Unit of a stage's steps (singular, plural); a "refit " prefix is ignored.
UNITS: dict[str, tuple[str, str]] = {
    "predict": ("tile", "tiles"), "classifier": ("epoch", "epochs"),
    "denoiser": ("iteration", "iterations"), "features": ("tile", "tiles"),
    "forest": ("tree", "trees"), "svm": ("fit", "fits"),
    "cross-validation": ("grid point", "grid points"), "projection": ("step", "steps"),
}
HIDDEN_METRICS = {"epoch", "member"}


def stage_unit(stage: str, n: int) -> str:
    """The unit of ``n`` steps of ``stage`` (``epochs``, ``tiles``, ...)."""
    base = stage.removeprefix("refit ")
    if base.endswith(" folds"):
        one, many = "fold", "folds"
    else:
        one, many = UNITS.get(base, ("step", "steps"))
    return one if n == 1 else many


def format_duration(seconds: float) -> str:
    """``0.4s``, ``14s``, ``2m19s``, ``1h02m``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class _Stage:
    name: str
    total: int
    member: Any = None
    done: int = 0
    start: float = field(default_factory=time.perf_counter)
    last: float = field(default_factory=time.perf_counter)  # time of the latest event
    metrics: dict[str, float] = field(default_factory=dict)
    finished: bool = False
    bar: Any = None

    @property
    def label(self) -> str:
        return self.name if self.member is None else f"{self.name} (member {self.member})"


def wants_bars(stream: TextIO) -> bool:
    """Bars in a terminal, lines elsewhere; ``HSIMAP_PROGRESS`` (``bars``/``lines``) decides
    when set."""
    choice = os.environ.get(ENV_VAR, "").strip().lower()
    if choice in ("bars", "lines"):
        return choice == "bars"
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class ProgressDisplay:
    """A progress callback for the library (call it with events) and :meth:`close`."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None,
                 bars: bool | None = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.bars = wants_bars(self.stream) if bars is None else bars
        self.stages: dict[str, _Stage] = {}

    def __call__(self, event: Any) -> None:
        """Show one :class:`~hsimap.models.base.ProgressEvent`."""
        if self.quiet:
            return
        note = getattr(event, "note", None)
        metrics = dict(event.metrics or {})
        member = metrics.get("member")
        stage = self.stages.get(event.stage)
        restart = stage is not None and note is None and (
            stage.finished or event.done < stage.done or member != stage.member)
        if stage is not None and restart:
            if not stage.finished:
                self._end(stage, unfinished=True)
            stage = None
        if stage is None:
            if note is not None:  # a note on a stage never seen: just say it
                self._write(f"{event.stage}: {note}")
                return
            stage = self.stages[event.stage] = _Stage(event.stage, event.total, member)
            if self.bars:
                stage.bar = self._bar(stage)
        if note is not None and stage.finished:
            self._write(f"{stage.label}: {note}")
            return
        self._update(stage, event, metrics, note)
        if note is not None or (event.total > 0 and event.done >= event.total):
            self._end(stage, note=note)

    def close(self, completed: bool = False) -> None:
        """End every stage still open: reported as unfinished, or with ``completed`` (the
        command succeeded) as ended by the library before its planned total (a denoiser
        that stopped on a plateau), with the time up to its last event."""
        for stage in list(self.stages.values()):
            if not stage.finished:
                if completed:
                    self._end(stage, note=f"ended at {stage.done} of at most {stage.total} "
                                          f"{stage_unit(stage.name, stage.total)}",
                              ended_early=True)
                else:
                    self._end(stage, unfinished=True)
        self.stages.clear()

    # ------------------------------------------------------------------------- internals

    def _update(self, stage: _Stage, event: Any, metrics: dict[str, Any],
                note: str | None) -> None:
        stage.done, stage.total = event.done, event.total
        stage.last = time.perf_counter()
        shown = {k: float(v) for k, v in metrics.items()
                 if k not in HIDDEN_METRICS and v is not None and float(v) == float(v)}
        if shown or note is None:  # a closing note keeps the last metrics
            stage.metrics = shown
        if stage.bar is not None:
            if stage.bar.total != event.total:
                stage.bar.total = event.total
            stage.bar.n = event.done
            if stage.metrics:
                stage.bar.set_postfix({k: f"{v:.4g}" for k, v in stage.metrics.items()},
                                      refresh=False)
            stage.bar.refresh()

    def _bar(self, stage: _Stage) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=stage.total, desc=stage.label, unit=stage_unit(stage.name, 1),
                    leave=True, dynamic_ncols=True, file=self.stream)

    def _end(self, stage: _Stage, *, note: str | None = None, unfinished: bool = False,
             ended_early: bool = False) -> None:
        stage.finished = True
        if stage.bar is not None:
            stage.bar.close()
            stage.bar = None
            if note:
                self._write(f"{stage.label}: {note}")
            elif unfinished:
                self._write(f"{stage.label}: stopped at {stage.done}/{stage.total} "
                            f"{stage_unit(stage.name, stage.total)}")
            return
        self._write(self.summary(stage, note=note, unfinished=unfinished,
                                 until_last=unfinished or ended_early))

    def summary(self, stage: _Stage, *, note: str | None = None,
                unfinished: bool = False, until_last: bool = False) -> str:
        """The one line of a stage: counts, time, rate, last metrics, note."""
        seconds = (stage.last if until_last else time.perf_counter()) - stage.start
        unit = stage_unit(stage.name, stage.total)
        text = f"{stage.label}: {stage.done}/{stage.total} {unit}, {format_duration(seconds)}"
        if stage.done > 1 and seconds > 0:
            one = stage_unit(stage.name, 1)
            rate = stage.done / seconds
            text += f" ({rate:.3g} {one}/s)" if rate >= 1 else f" ({1 / rate:.3g} s/{one})"
        if stage.metrics:
            text += "; " + ", ".join(f"{k} {v:.4g}" for k, v in stage.metrics.items())
        if note:
            text += f"; {note}"
        elif unfinished:
            text += "; not finished"
        return text

    def _write(self, line: str) -> None:
        if self.bars:
            from tqdm.auto import tqdm

            tqdm.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()
