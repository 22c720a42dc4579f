"""hsimap.device: CPU threads used for fitting."""

from __future__ import annotations

import pytest


def test_fitting_threads_follow_the_setting_and_are_restored(monkeypatch):
    import torch

    from hsimap.device import fitting_threads, training_threads
    from hsimap.errors import DeviceError

    before = torch.get_num_threads()
    monkeypatch.setenv("HSIMAP_TRAIN_THREADS", "1")
    with fitting_threads(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("HSIMAP_TRAIN_THREADS", "zero")
    with pytest.raises(DeviceError, match="HSIMAP_TRAIN_THREADS"):
        training_threads()
    monkeypatch.delenv("HSIMAP_TRAIN_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert training_threads() is None  # the user's OpenMP setting is left alone
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert training_threads() == 1
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert training_threads() is None
