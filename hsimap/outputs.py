"""Old home of the prediction outputs, kept so that ``from hsimap.outputs import ...`` works.

The code lives in :mod:`hsimap.predict.outputs` (what a run writes, checks, the lock),
:mod:`hsimap.predict.partial` (partial files and the resume record) and
:mod:`hsimap.geotiff` (profiles, tags, COG, creation options).
"""

from hsimap.geotiff import (
    CONFIDENCE_TAG,
    PROBS_TAG,
    check_creation_options,
    with_creation_options,
    write_cog,
)
from hsimap.predict.outputs import (
    DEFAULT_FLUSH_SECONDS,
    DISK_FULL_BYTES,
    PROB_SCALE,
    RECORD_FORMAT,
    RECORD_VERSION,
    ConfidenceKind,
    OutputLock,
    OutputSpec,
    ProbDtype,
    TileResult,
    check_outputs,
    input_files,
    lock_path,
    record_path,
    write_error,
)
from hsimap.predict.partial import (
    PartialOutputs,
    block_for_tile,
    read_record,
    remove_partial_state,
)

DEFAULT_CHECKPOINT_SECONDS = DEFAULT_FLUSH_SECONDS  # the name before "flush"

__all__ = [
    "DEFAULT_CHECKPOINT_SECONDS",
    "CONFIDENCE_TAG", "DEFAULT_FLUSH_SECONDS", "DISK_FULL_BYTES", "PROBS_TAG",
    "PROB_SCALE", "RECORD_FORMAT", "RECORD_VERSION", "ConfidenceKind", "OutputLock",
    "OutputSpec", "PartialOutputs", "ProbDtype", "TileResult", "block_for_tile",
    "check_creation_options", "check_outputs", "input_files", "lock_path",
    "read_record", "record_path", "remove_partial_state", "with_creation_options",
    "write_cog", "write_error",
]
