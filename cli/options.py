"""Options shared by several commands, each declared once, and the progress-bar adapter."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DEVICE_CHOICES = "auto|cpu|cuda|cuda:N"


class DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        """Validate the spelling; availability is checked when the device is used."""
        import re

        text = str(value).strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
            self.fail(f"{value!r} is not one of {DEVICE_CHOICES}", param, ctx)
        return text


class BandListType(click.ParamType):
    """Comma-separated 1-based band numbers and ranges: ``130-135,180``."""

    name = "bands"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[int, ...]:
        """Parse into 0-based indices."""
        if isinstance(value, tuple):
            return value
        out: set[int] = set()
        try:
            for part in str(value).split(","):
                part = part.strip()
                if not part:
                    continue
                lo, _, hi = part.partition("-")
                first, last = int(lo), int(hi or lo)
                if first < 1 or last < first:
                    raise ValueError(part)
                out.update(range(first - 1, last))
        except ValueError:
            self.fail(f"{value!r} is not a list of 1-based band numbers like 130-135,180",
                      param, ctx)
        return tuple(sorted(out))


device_opt = click.option(
    "--device", type=DeviceType(), default="auto", show_default=True, metavar=DEVICE_CHOICES,
    help="Compute device: auto picks the first CUDA GPU if there is one, else the CPU.")
overwrite_opt = click.option("--overwrite", is_flag=True,
                             help="Replace output files that already exist.")
model_opt = click.option(
    "--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
    default="hsimap_model.safetensors", show_default=True,
    help="Model file (train writes it, predict reads it).")
class_field_opt = click.option(
    "--class-field", default=None, metavar="FIELD",
    help="Attribute holding class names or integer codes (auto-detected if obvious).")
layer_opt = click.option(
    "--layer", default=None, metavar="NAME",
    help="Layer of a multi-layer vector file (GeoPackage, ...); required when it has several.")
mask_opt = click.option(
    "--mask", "mask", default=None, metavar="AOI",
    help="Area of interest: polygons (any OGR vector) or a raster (non-zero = inside).")
mask_layer_opt = click.option(
    "--mask-layer", default=None, metavar="NAME",
    help="Layer of a multi-layer --mask vector file.")
max_memory_opt = click.option(
    "--max-memory", "max_memory", default=None, metavar="SIZE",
    help="Memory a fit may use (the scene is read whole), e.g. 8G, 512M or 50% [default: "
         "half the memory available now]; a larger need is refused before the scene is read, "
         "with what to do.")
all_touched_opt = click.option(
    "--all-touched", is_flag=True,
    help="Label every pixel a polygon touches (default: pixels whose centre is inside).")


def progress_bars(quiet: bool) -> tuple[Callable[[Any], None], Callable[..., None]]:
    """A library progress callback and its closer: a tqdm bar per stage in a terminal, one
    plain line per stage otherwise (:mod:`hsimap.cli.progress`)."""
    from hsimap.cli.progress import ProgressDisplay

    display = ProgressDisplay(quiet=quiet)
    return display, display.close


def input_alias_opt(name: str, metavar: str, what: str, *,
                    as_path: bool = True) -> Callable[[Any], Any]:
    """``--cube``/``--map``: the option spelling of a command's positional input, kept so
    that both styles work everywhere (``hsimap train scene.tif`` = ``hsimap train --cube
    scene.tif``)."""
    return click.option(f"--{name}", f"{name}_opt", multiple=True, metavar=metavar,
                        type=click.Path(path_type=Path) if as_path else click.Path(),
                        help=f"{what} (the same as giving it as the {metavar} argument; "
                             "repeatable where several are taken).")


def merge_inputs(args: tuple[Any, ...], opts: tuple[Any, ...], *, metavar: str,
                 option: str, ordered: bool = False) -> list[Any]:
    """The positional inputs and those given with their ``--option`` alias.

    ``ordered``: the order matters (train pairs each cube with a ``--labels``), so the two
    spellings may not be mixed in one command.
    """
    from hsimap.errors import ConfigError

    if args and opts and ordered:
        raise ConfigError(
            f"the {metavar}s are given both as arguments and with {option}, so their order "
            "(which pairs each with its --labels) is unclear",
            fix=f"give all of them one way: `hsimap train A.tif B.tif --labels A.shp --labels "
                f"B.shp` or `{option} A.tif --labels A.shp {option} B.tif --labels B.shp`")
    return [*args, *opts]


def one_input(arg: Any, opts: tuple[Any, ...], *, metavar: str, option: str,
              example: str) -> Any:
    """The one positional input of a command, or its ``--option`` alias (not both)."""
    from hsimap.errors import ConfigError

    given = [*([] if arg is None else [arg]), *opts]
    if len(given) != 1:
        raise ConfigError(f"{'no' if not given else len(given)} {metavar} given "
                          f"({metavar} as the argument or with {option})",
                          fix=f"give exactly one: {example}")
    return given[0]
