"""The ``hsimap`` command group: logging, version, lazy subcommands and error reporting.

Subcommands are imported only when invoked, so ``hsimap --help`` never imports torch.
Exactly one place (:class:`HsimapGroup.invoke`) turns :class:`hsimap.errors.HsimapError`
into a one-paragraph message and a non-zero exit code; ``-v`` adds the traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
import traceback
import warnings
from typing import Any

import click

from hsimap._version import __version__

# name -> (module, attribute, short help); the module is imported on use only.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("hsimap.cli.train", "train", "Train a model on a cube and ground-truth labels."),
    "predict": ("hsimap.cli.predict", "predict", "Map a scene with a trained model."),
    "compare": ("hsimap.cli.compare", "compare",
                "Spatial cross-validation of several model kinds."),
    "evaluate": ("hsimap.cli.evaluate", "evaluate", "Accuracy of a map against reference data."),
    "datasets": ("hsimap.cli.datasets", "datasets", "Classic benchmark scenes (.mat)."),
    "info": ("hsimap.cli.info", "info", "Describe a cube or a model file."),
    "sample-data": ("hsimap.cli.bundled", "sample_data",
                    "Copy the bundled sample scene into a folder."),
    "qgis-scripts": ("hsimap.cli.bundled", "qgis_scripts",
                     "Copy the QGIS Processing scripts into a folder."),
}

log = logging.getLogger("hsimap")


def configure_logging(verbosity: int) -> None:
    """Map ``-v``/``-q`` counts to a log level for the ``hsimap`` logger."""
    level = {-2: logging.ERROR, -1: logging.WARNING, 0: logging.INFO}.get(
        max(-2, min(verbosity, 1)), logging.DEBUG
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s" if verbosity < 1
                                           else "%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("hsimap")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.captureWarnings(True)
    warnings.showwarning = _show_warning
    warn_logger = logging.getLogger("py.warnings")
    warn_logger.handlers[:] = [handler]
    warn_logger.setLevel(logging.WARNING if verbosity > -2 else logging.ERROR)
    warn_logger.propagate = False


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Log hsimap's own warnings as one plain line; others in Python's usual format."""
    from hsimap.errors import HsimapWarning

    if issubclass(category, HsimapWarning):
        text = f"Warning: {message}"
    else:
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
    logging.getLogger("py.warnings").warning(text)


class HsimapGroup(click.Group):
    """A group that loads subcommands lazily and reports hsimap errors cleanly."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """All subcommand names, without importing them."""
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Import a subcommand's module on first use."""
        if cmd_name not in SUBCOMMANDS:
            return None
        module, attr, _ = SUBCOMMANDS[cmd_name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List subcommands with their short help, without importing them."""
        rows = [(name, short) for name, (_, _, short) in SUBCOMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; turn HsimapError and Ctrl-C into clean exits."""
        from hsimap.errors import HsimapError, caused_by_interrupt

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, SystemExit):
            raise  # an exit a subcommand chose (after handling a Ctrl-C itself, maybe)
        except BaseException as exc:
            if caused_by_interrupt(exc):  # Ctrl-C, also when Python wrapped it in an error
                click.secho("Interrupted: no output file was completed.", err=True,
                            fg="yellow")
                ctx.exit(130)
            if not isinstance(exc, HsimapError):
                raise
            if ctx.obj and ctx.obj.get("verbosity", 0) > 0:
                traceback.print_exc()
            click.secho(f"Error: {exc.format()}", err=True, fg="red")
            ctx.exit(exc.exit_code)


@click.group(cls=HsimapGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="hsimap")
@click.option("-v", "--verbose", count=True, help="More output (-vv for debug, with tracebacks).")
@click.option("-q", "--quiet", count=True, help="Less output (-q warnings only, -qq errors only).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: int) -> None:
    """hsimap: hyperspectral image + ground-truth polygons -> land-cover map.

    \b
    Typical use:
      hsimap train scene.tif --labels gt.shp
      hsimap predict scene.tif -o map.tif
      hsimap evaluate map.tif --labels reference.gpkg
    """
    ctx.ensure_object(dict)
    ctx.obj["verbosity"] = verbose - quiet
    configure_logging(verbose - quiet)


def main() -> None:
    """Console entry point."""
    cli(obj={})


if __name__ == "__main__":
    main()
