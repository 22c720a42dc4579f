"""Run the tile work of ``predict`` on an existing Dask cluster (``dask.distributed``).

The client submits one task per tile; each worker loads the model once (a per-process
cache keyed by the model path, size, modification time and SHA-256), reads its tile window from the
scene *by path* (so the scene and the model must be readable at the same path on every
worker: a shared file system, or a GDAL path such as ``/vsis3/...`` for the scene), and
returns the finished write window (class values, and probabilities/confidence if asked).
The client writes windows as tasks complete, with at most ``2 x`` the cluster's threads in
flight, so memory stays bounded on both sides. The computation per tile is the same
function a local run uses, so the map is identical. Before Dask is asked to connect (it
waits up to 30 s for a scheduler), a plain TCP connection to the address is tried with a
short timeout, so a wrong address or a stopped scheduler is reported at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import torch

from hsimap.checkpoint import Checkpoint, load_checkpoint
from hsimap.device import resolve_device
from hsimap.errors import ConfigError
from hsimap.fingerprint import file_sha256
from hsimap.predict.engine import SceneReader, TileWork, compute_tile
from hsimap.predict.outputs import TileResult
from hsimap.predict.partial import PartialOutputs
from hsimap.tiling import Tile

if TYPE_CHECKING:
    from dask.distributed import Client

log = logging.getLogger(__name__)

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 30
PROBE_TIMEOUT_S = 3.0
DEFAULT_SCHEDULER_PORT = 8786
IN_FLIGHT_PER_THREAD = 2

ModelKey = tuple[str, int, int, str, str]  # path, size, mtime, SHA-256, device
_CACHE_LOCK = threading.Lock()
_CACHE: dict[ModelKey, Checkpoint] = {}


def model_key(model_path: Path, device: str) -> ModelKey:
    """Cache key of a model file: resolved path, size, modification time, SHA-256, device."""
    st = Path(model_path).stat()
    return (str(Path(model_path).resolve()), st.st_size, st.st_mtime_ns,
            file_sha256(model_path), device)


def worker_checkpoint(key: ModelKey) -> Checkpoint:
    """The checkpoint for ``key``, loaded once per worker process (the latest one is kept)."""
    with _CACHE_LOCK:
        ckpt = _CACHE.get(key)
        if ckpt is None:
            path = Path(key[0])
            st = path.stat()
            if (st.st_size, file_sha256(path)) != (key[1], key[3]):
                raise ConfigError(f"the model file on this worker differs from the client's "
                                  f"({st.st_size} bytes, mtime {st.st_mtime_ns})", path=path,
                                  fix="give every worker the same model file")
            threads = _worker_threads()
            if threads:
                torch.set_num_threads(threads)
            _CACHE.clear()
            ckpt = _CACHE[key] = load_checkpoint(path, device=resolve_device(key[4]))
        return ckpt


def _worker_threads() -> int | None:
    """Threads this Dask worker runs tasks on (torch should use as many), if known."""
    try:
        from dask.distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def run_tile(key: ModelKey, reader: SceneReader, tile: Tile, work: TileWork) -> TileResult:
    """Worker task: read one tile window by path, classify it, return the write window."""
    ckpt = worker_checkpoint(key)
    with reader.env():
        values, valid = reader.read(tile.read)
    return compute_tile(ckpt, values, valid, tile, work, resolve_device(key[4]))


def scheduler_endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``tcp://`` / ``tls://`` (or scheme-less) scheduler address.

    ``None`` for other transports (``inproc://``, ``ucx://``, ``ws://``...), which are not
    probed.
    """
    text = address.strip()
    if "://" not in text:
        text = f"tcp://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("tcp", "tls") or not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_SCHEDULER_PORT
    except ValueError as exc:
        raise ConfigError(f"the Dask scheduler address {address!r} has an invalid port",
                          fix="write it as tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)") from exc
    return parts.hostname, port


def probe_scheduler(address: str, *, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast when nothing accepts TCP connections at a scheduler's address.

    Dask itself retries for :data:`CONNECT_TIMEOUT_S` seconds before giving up on a refused
    or unreachable address; a plain connection attempt answers in milliseconds.
    """
    endpoint = scheduler_endpoint(address)
    if endpoint is None:
        return
    host, port = endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        reason = f"connection refused: nothing listens on {host}:{port}"
    except TimeoutError:
        reason = f"no answer from {host}:{port} within {timeout:g} s"
    except socket.gaierror as exc:
        reason = f"unknown host {host!r} ({exc.strerror})"
    except OSError as exc:
        reason = f"{host}:{port}: {exc.strerror or exc}"
    else:
        return
    raise ConfigError(
        f"cannot reach the Dask scheduler at {address!r} ({reason})",
        fix=f"start one (`dask scheduler` plus `dask worker {address}` on each machine) or "
            f"fix --scheduler / ${SCHEDULER_ENV}")


def connect(address: str) -> Client:
    """A ``dask.distributed.Client`` for the scheduler at ``address``, with a clear error."""
    try:
        from dask.distributed import Client
    except ImportError as exc:  # pragma: no cover - distributed is a dependency
        raise ConfigError("dask.distributed is not installed",
                          fix="pip install 'distributed' (it comes with hsimap)") from exc
    probe_scheduler(address)
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"cannot reach the Dask scheduler at {address!r} ({exc})",
            fix=f"start one (`dask scheduler` plus `dask worker {address}` on each machine) or "
                f"fix --scheduler / ${SCHEDULER_ENV}") from exc


def run_on_cluster(address: str, *, scene: Path | str, model_path: Path, tiles: list[Tile],
                   work: TileWork, reader: SceneReader, device: str, sink: PartialOutputs,
                   on_written: Callable[[TileResult], None]) -> None:
    """Compute ``tiles`` on the cluster at ``address``; write each result as it arrives."""
    from dask.distributed import as_completed

    if not tiles:
        return
    key = model_key(model_path, device)
    client = connect(address)
    try:
        n_threads = max(1, sum(client.nthreads().values()))
        limit = IN_FLIGHT_PER_THREAD * n_threads
        log.info("Dask cluster %s: %d worker thread(s), up to %d tiles in flight", address,
                 n_threads, limit)
        pending: Iterator[Tile] = iter(tiles)
        futures = as_completed(loop=client.loop)

        def submit() -> None:
            t = next(pending, None)
            if t is not None:
                futures.add(client.submit(run_tile, key, reader, t, work, pure=False,
                                          key=f"hsimap-tile-{os.getpid()}-{t.index}-"
                                              f"{id(futures)}"))

        for _ in range(limit):
            submit()
        for fut in futures:
            result: TileResult = fut.result()
            fut.release()
            submit()
            sink.write(result)
            on_written(result)
    finally:
        client.close()  # releases unfinished tasks: the scheduler drops them
