"""hsimap's exception tree and warnings.

Every error a user can cause is an :class:`HsimapError`. The CLI turns exactly these into a
one-paragraph message (what went wrong, which file, how to fix it) and a non-zero exit code;
anything else is a bug and keeps its traceback.

Each subclass also inherits the builtin it resembles, so library callers can catch
``ValueError``/``OSError`` as usual.
"""

from __future__ import annotations

from pathlib import Path


class HsimapError(Exception):
    """Root of every error hsimap raises on purpose.

    Parameters
    ----------
    message
        What went wrong, in one or two sentences.
    path
        The file the problem is about, if any.
    fix
        What the user can do about it.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | Path | None = None,
                 fix: str | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.format())

    def format(self) -> str:
        """Return the user-facing paragraph: ``<file>: <problem>. <fix>``."""
        text = self.message
        if self.path is not None:
            text = f"{self.path}: {text}"
        if self.fix:
            text = f"{text.rstrip('.')}. {self.fix}"
        return text


class InputFileError(HsimapError, OSError):
    """An input file is missing, unreadable or not of the expected kind."""


class CubeError(HsimapError, ValueError):
    """The hyperspectral cube cannot be used (band count, nodata, values)."""


class LabelError(HsimapError, ValueError):
    """The ground-truth vector or raster cannot be turned into training labels."""


class CRSMismatchError(LabelError):
    """Labels and cube coordinate systems cannot be reconciled."""


class ConfigError(HsimapError, ValueError):
    """A configuration value, preset or option is invalid."""


class CheckpointError(HsimapError, ValueError):
    """A model file is missing, damaged, unsafe or from an unknown format version."""


class SceneMismatchError(HsimapError, ValueError):
    """A scene does not match what the model was trained on (bands, wavelengths)."""


class OutputError(HsimapError, OSError):
    """An output path cannot be written (exists, not writable, equals an input)."""


class DeviceError(HsimapError, RuntimeError):
    """The requested compute device is not available."""


class TrainingError(HsimapError, RuntimeError):
    """Training cannot proceed with the data given (too few classes or pixels)."""


class ResourceError(HsimapError, MemoryError):
    """A step would need more memory than the budget allows (``--max-memory``)."""


class HsimapWarning(UserWarning):
    """Root of hsimap's warnings (filter with ``warnings.filterwarnings``)."""


class NoCRSWarning(HsimapWarning):
    """The cube has no coordinate reference system."""


class LabelWarning(HsimapWarning):
    """Something about the labels deserves attention (features outside, reprojection)."""


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a Ctrl-C lies behind ``exc``: Python turns a KeyboardInterrupt raised while a
    class is being created (a lazy import of torch's modules, such as the ``torch._dynamo``
    that the first optimizer imports, defines dataclasses) into a RuntimeError "Error
    calling __set_name__" whose cause is the interrupt."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
