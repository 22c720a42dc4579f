"""Old home of the Dask runner, kept so that ``import hsimap.distributed`` keeps working.

The code lives in :mod:`hsimap.predict.cluster`.
"""

from hsimap.predict.cluster import (
    CONNECT_TIMEOUT_S,
    DEFAULT_SCHEDULER_PORT,
    IN_FLIGHT_PER_THREAD,
    PROBE_TIMEOUT_S,
    SCHEDULER_ENV,
    ModelKey,
    connect,
    model_key,
    probe_scheduler,
    run_on_cluster,
    run_tile,
    scheduler_endpoint,
    worker_checkpoint,
)

__all__ = [
    "CONNECT_TIMEOUT_S", "DEFAULT_SCHEDULER_PORT", "IN_FLIGHT_PER_THREAD", "PROBE_TIMEOUT_S",
    "SCHEDULER_ENV", "ModelKey", "connect", "model_key", "probe_scheduler", "run_on_cluster",
    "run_tile", "scheduler_endpoint", "worker_checkpoint",
]
