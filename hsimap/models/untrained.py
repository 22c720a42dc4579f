"""Models with random weights and buffers, for speed and memory checks without training.

The time and memory of a forward pass do not depend on the weights' values, but a freshly
built model holds some buffers as zeros or ones (the projection, the reducers, batch-norm
statistics), which would make its features degenerate. :func:`untrained_model` draws them
at random, reproducibly. Used by the benchmarks and the scale and CUDA tests.
"""

from __future__ import annotations

import torch

from hsimap.models.base import HsiModel, ModelConfig, get_spec


def randomize_buffers(module: torch.nn.Module) -> None:
    """Draw a module's buffers in place: matrices, weights and biases ~ N(0, 0.3), batch-norm
    running variances ~ U(0.5, 1.5); other buffers are left as built."""
    with torch.no_grad():
        for name, buf in module.named_buffers():
            if name.endswith(("matrix", "weight", "bias")):
                buf.normal_(0, 0.3)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)


def untrained_model(kind: str, config: ModelConfig, *, n_bands: int, n_classes: int,
                    seed: int = 0) -> HsiModel:
    """A ``kind`` model built from ``config`` with random weights and buffers, in eval mode.

    ``torch.manual_seed(seed)`` is set before building, so the same call gives the same model.
    """
    spec = get_spec(kind)
    torch.manual_seed(seed)
    model = spec.build(config, n_bands=n_bands, n_classes=n_classes)
    randomize_buffers(model)
    return model.eval()
