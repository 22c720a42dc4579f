"""Progress that tells the truth: one plain line per stage when stderr is not a terminal,
an explicit early-stopping line with the kept epoch, bars closed when their stage ends."""

from __future__ import annotations

import io
import re
from pathlib import Path

from click.testing import CliRunner

from hsimap.cli.main import cli
from hsimap.cli.progress import ProgressDisplay, format_duration
from hsimap.models.base import ProgressEvent

from .fixtures import write_cube, write_polygons

ESCAPE = re.compile(r"\x1b|\r")


def _feed(display: ProgressDisplay, events: list[ProgressEvent]) -> None:
    for event in events:
        display(event)
    display.close()


def test_lines_mode_prints_one_plain_line_per_stage() -> None:
    out = io.StringIO()
    display = ProgressDisplay(stream=out, bars=False)
    _feed(display, [
        *(ProgressEvent("denoiser", i, 50, {"loss": 0.5}) for i in range(1, 51)),
        *(ProgressEvent("classifier", i, 40, {"epoch": i, "loss": 1 / i, "val_acc": 0.9})
          for i in range(1, 16)),
        ProgressEvent("classifier", 15, 40, note="stopped early at epoch 15 of 40; kept "
                                                 "epoch 7 (best validation accuracy 0.9300)"),
        *(ProgressEvent("refit classifier", i, 15) for i in range(1, 16)),
        ProgressEvent("forest", 0, 300), ProgressEvent("forest", 300, 300),
        *(ProgressEvent("predict", i, 9) for i in range(1, 5)),  # interrupted
    ])
    lines = out.getvalue().splitlines()
    assert not ESCAPE.search(out.getvalue())
    assert len(lines) == 5, lines
    assert re.fullmatch(r"denoiser: 50/50 iterations, \d+\.\ds \([\d.e+]+ iteration/s\); "
                        r"loss 0\.5", lines[0])
    assert lines[1].startswith("classifier: 15/40 epochs, ")
    assert lines[1].endswith("; stopped early at epoch 15 of 40; kept epoch 7 (best "
                             "validation accuracy 0.9300)")
    assert "epoch 15," not in lines[1]  # the epoch counter is not repeated as a metric
    assert lines[2].startswith("refit classifier: 15/15 epochs, ")
    assert lines[3].startswith("forest: 300/300 trees, ")
    assert lines[4].startswith("predict: 4/9 tiles, ") and lines[4].endswith("not finished")


def test_a_restarted_stage_and_a_note_after_the_end_each_get_their_line() -> None:
    out = io.StringIO()
    display = ProgressDisplay(stream=out, bars=False)
    _feed(display, [
        *(ProgressEvent("classifier", i, 3, {"member": 1}) for i in range(1, 4)),
        ProgressEvent("classifier", 3, 3, note="kept epoch 2 (best validation accuracy 1)"),
        *(ProgressEvent("classifier", i, 3, {"member": 2}) for i in range(1, 4)),
    ])
    lines = out.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "classifier (member 1)", "classifier (member 1)", "classifier (member 2)"]
    assert lines[1] == "classifier (member 1): kept epoch 2 (best validation accuracy 1)"


def test_bars_mode_closes_each_bar_and_writes_the_note() -> None:
    out = io.StringIO()
    display = ProgressDisplay(stream=out, bars=True)
    _feed(display, [
        *(ProgressEvent("classifier", i, 40) for i in range(1, 6)),
        ProgressEvent("classifier", 5, 40, note="stopped early at epoch 5 of 40; kept epoch 2"),
        *(ProgressEvent("predict", i, 3) for i in range(1, 4)),
    ])
    text = out.getvalue()
    assert "\x1b[A" not in text  # one bar at a time: no cursor moves
    assert "5/40" in text and "classifier: stopped early at epoch 5 of 40; kept epoch 2\n" in text
    assert "3/3" in text


def test_format_duration() -> None:
    assert [format_duration(s) for s in (0.42, 14.4, 139, 3720)] == [
        "0.4s", "14s", "2m19s", "1h02m"]


def test_train_log_has_plain_stage_lines_and_the_kept_epoch(tmp_path: Path) -> None:
    """`hsimap train` with stderr redirected: plain lines, early stopping said, refit shown."""
    cube = write_cube(tmp_path / "cube.tif")
    labels = write_polygons(tmp_path / "gt.gpkg")
    (tmp_path / "c.toml").write_text("[config]\nepochs = 40\npatience = 3\n")
    r = CliRunner().invoke(cli, [
        "train", "--cube", str(cube), "--labels", str(labels), "--model-type", "spectral-mlp",
        "--config", str(tmp_path / "c.toml"), "--guard", "1", "--model",
        str(tmp_path / "m.safetensors")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert not ESCAPE.search(r.stderr), r.stderr
    stage_lines = [line for line in r.stderr.splitlines()
                   if line.startswith(("classifier", "refit classifier"))]
    assert len(stage_lines) == 2, r.stderr
    m = re.match(r"classifier: (\d+)/40 epochs, .*; stopped early at epoch (\d+) of 40 \(no "
                 r"better validation accuracy for 3 epochs\); kept epoch (\d+) \(best "
                 r"validation accuracy [01]\.\d{4}\)$", stage_lines[0])
    assert m, stage_lines[0]
    stopped, kept = int(m.group(1)), int(m.group(3))
    assert int(m.group(2)) == stopped < 40 and kept == stopped - 3
    # the refit trains for the kept epochs, and its line shows its own (correct) total
    assert re.match(rf"refit classifier: {kept}/{kept} epochs?, ", stage_lines[1]), stage_lines


def test_a_stage_the_model_ended_early_is_not_called_unfinished() -> None:
    """A denoiser that stops on its plateau (2000 of at most 3000 iterations) in a command that
    succeeded: its line says it ended there, with the time up to its last event, not "not
    finished" with the whole run's time (seen in a real training log of the fast preset)."""
    import time

    out = io.StringIO()
    display = ProgressDisplay(stream=out, bars=False)
    for i in range(1, 21):
        display(ProgressEvent("denoiser", i * 100, 3000, {"loss": 0.2}))
    time.sleep(0.3)  # the classifier's time, not the denoiser's
    for i in range(1, 4):
        display(ProgressEvent("classifier", i, 3))
    display.close(completed=True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("classifier: 3/3 epochs")
    denoiser = lines[1]
    assert denoiser.startswith("denoiser: 2000/3000 iterations, 0.")
    assert denoiser.endswith("; ended at 2000 of at most 3000 iterations")
    assert "not finished" not in out.getvalue()
    seconds = float(re.search(r"iterations, ([\d.]+)s", denoiser).group(1))
    assert seconds < 0.3, denoiser
