"""Transformer classifier over a ``k x k`` neighbourhood of the reduced feature map.

SpectralDiff's HSINet (method.md A.6): a 3x3 conv tokenizer (conv + BN + ReLU), a CLS token,
a learnable position embedding scaled by a learnable scalar (init 0.01), pre-LN transformer
blocks, and a head ``Linear -> BN1d -> Dropout -> ReLU -> Linear`` on the CLS output.

Two paths share every module and give the same logits:

- training: per labelled pixel, the ``(k+2) x (k+2)`` feature patch (zero-padded beyond the
  scene) goes through the tokenizer without padding, giving ``k x k`` tokens;
- inference: the tokenizer runs once over the whole (zero-padded) tile, then each pixel's
  ``k x k`` token window is gathered with ``unfold`` and the transformer runs in pixel chunks.

Only the CLS output is used, so the last block computes attention for the CLS query alone.
The head sees the CLS output plus the centre pixel's own token (a residual hsimap adds: with
SpectralDiff's tiny position embedding the CLS token barely knows which token is the centre,
and small urban classes were smeared into their neighbours; see docs/benchmarks.md).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from hsimap.models.diffspectralnet.config import DiffSpectralNetConfig


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that draws its mask from ``generator`` when one is set, else
    from torch's global generator (as ``nn.Dropout``). The mask is the one ``nn.Dropout``
    draws from the same generator state, so a fit that hands over a copy of the global state
    trains the same weights while other fits run in other threads. No weights of its own:
    model files read the same."""

    generator: torch.Generator | None = None

    def noise_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """Shape of the mask: one value per element."""
        return tuple(x.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None or not self.training or not 0.0 < self.p < 1.0:
            return cast(torch.Tensor, super().forward(x))
        keep = 1.0 - self.p  # as torch's CPU dropout: bernoulli(1 - p) / (1 - p), times x
        noise = x.new_empty(self.noise_shape(x)).bernoulli_(keep, generator=self.generator)
        return x * noise.div_(keep)


class Dropout1d(Dropout):
    """:class:`torch.nn.Dropout1d` (whole channels of ``(n, C, L)``) with the same
    ``generator`` as :class:`Dropout`."""

    def noise_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """One value per sample and channel."""
        return (x.shape[0], x.shape[1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None:
            return F.dropout1d(x, self.p, self.training, self.inplace)
        if x.dim() != 3:
            raise ValueError(f"Dropout1d expects (n, C, L) input, got {tuple(x.shape)}")
        return super().forward(x)


def set_dropout_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Every :class:`Dropout` of ``module`` draws from ``generator`` (None: the global one)."""
    for m in module.modules():
        if isinstance(m, Dropout):
            m.generator = generator


class _Block(nn.Module):
    """Pre-LN transformer block with bias-free qkv and ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n, s, _ = x.shape
        return x.view(n, s, self.heads, self.head_dim).transpose(1, 2)  # (n, H, s, hd)

    def forward(self, x: torch.Tensor, *, cls_only: bool = False) -> torch.Tensor:
        """``(n, s, dim)`` -> ``(n, s, dim)``, or ``(n, 1, dim)`` for the CLS token alone."""
        h = self.norm1(x)
        inner = self.heads * self.head_dim
        if cls_only:
            q = F.linear(h[:, :1], self.qkv.weight[:inner])  # (n, 1, inner)
            kv = F.linear(h, self.qkv.weight[inner:])  # (n, s, 2*inner)
            k, v = kv.split(inner, dim=-1)
            x = x[:, :1]
        else:
            q, k, v = self.qkv(h).split(inner, dim=-1)
        a = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        a = a.transpose(1, 2).reshape(x.shape[0], x.shape[1], inner)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class WindowClassifier(nn.Module):
    """Per-pixel classifier over a ``k x k`` window of ``n_feat``-channel features.

    Parameters
    ----------
    config
        Uses ``window``, ``token_dim``, ``depth``, ``heads``, ``head_dim``, ``mlp_dim``,
        ``head_hidden``.
    n_feat, n_classes
        Input feature channels ``D`` and classes ``K``.
    n_bands
        Input spectrum bands ``C`` (used with ``config.spectrum_path``).
    """

    def __init__(self, config: DiffSpectralNetConfig, n_feat: int, n_classes: int,
                 n_bands: int = 0) -> None:
        super().__init__()
        k, dim = config.window, config.token_dim
        self.k = k
        self.n_classes = n_classes
        self.tokenizer = nn.Sequential(nn.Conv2d(n_feat, dim, 3), nn.BatchNorm2d(dim),
                                       nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, k * k + 1, dim))
        self.pos_scale = nn.Parameter(torch.tensor(0.01))
        self.blocks = nn.ModuleList(
            _Block(dim, config.heads, config.head_dim, config.mlp_dim)
            for _ in range(config.depth))
        h = config.head_hidden
        self.head = nn.Sequential(nn.Linear(dim, h), nn.BatchNorm1d(h), Dropout(0.1),
                                  nn.ReLU(), nn.Linear(h, n_classes))
        # The centre pixel's own feature vector, embedded without spatial mixing (hsimap).
        self.pixel = nn.Linear(n_feat, dim) if config.pixel_path else None
        # The centre pixel's own standardised input spectrum, all bands (hsimap).
        if config.spectrum_path and n_bands < 1:
            raise ValueError("spectrum_path needs the input band count")
        self.spectrum = nn.Linear(n_bands, dim) if config.spectrum_path else None
        # Whole feature channels dropped per training sample (identity at inference).
        self.channel_dropout = Dropout1d(config.feature_dropout) \
            if config.feature_dropout > 0 else None

    def radius(self) -> int:
        """Feature-map radius one logit depends on: tokenizer (1) + window (``k // 2``)."""
        return 1 + self.k // 2

    def encode(self, tokens: torch.Tensor, centre: torch.Tensor,
               spectrum: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, k*k, dim)`` tokens (any strides), ``(n, D)`` centre features and (with
        ``spectrum_path``) ``(n, C)`` centre spectra -> logits."""
        n, s, dim = tokens.shape
        x = torch.empty(n, s + 1, dim, dtype=tokens.dtype, device=tokens.device)
        x[:, 0] = self.cls_token[0]
        x[:, 1:] = tokens  # one copy, whatever the layout of ``tokens``
        x += self.pos_scale * self.pos_embedding  # (n, k*k+1, dim)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, cls_only=i == last)
        out = x[:, 0] + tokens[:, s // 2]  # CLS + the centre pixel's token
        if self.pixel is not None:
            out = out + self.pixel(centre)
        if self.spectrum is not None:
            if spectrum is None:
                raise ValueError("this classifier needs the centre spectra (spectrum_path)")
            out = out + self.spectrum(spectrum)
        return self.head(out)

    def forward_patches(self, patches: torch.Tensor,
                        spectra: torch.Tensor | None = None) -> torch.Tensor:
        """Training path: ``(n, D, k+2, k+2)`` patches (and ``(n, C)`` centre spectra) ->
        ``(n, K)`` logits."""
        if self.channel_dropout is not None and self.training:
            n, d, a, b = patches.shape
            patches = self.channel_dropout(patches.reshape(n, d, a * b)).view(n, d, a, b)
        tok = self.tokenizer(patches)  # (n, dim, k, k)
        c = self.k // 2 + 1
        return self.encode(tok.flatten(2).transpose(1, 2), patches[:, :, c, c], spectra)

    def forward_map(self, feats: torch.Tensor, chunk: int = 1024,
                    spectra: torch.Tensor | None = None,
                    region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Inference path: ``(1, D, h, w)`` feature map (and ``(1, C, h, w)`` input) ->
        ``(1, K, h, w)`` logits, or those of ``region`` alone (``(row0, row1, col0, col1)``
        of the map: only its windows are computed, from the whole map).

        Features beyond the map are zero, exactly as :func:`gather_patches` pads them.
        """
        _, _, h, w = feats.shape
        r0, r1, c0, c1 = region if region is not None else (0, h, 0, w)
        r = self.k // 2
        # tokens of rows r0 - r .. r1 + r (and the same columns): the tokenizer's 3x3 input
        # reaches one more pixel, all read from the zero-padded map
        padded = F.pad(feats, (r + 1,) * 4)[:, :, r0:r1 + 2 * r + 2, c0:c1 + 2 * r + 2]
        tok = self.tokenizer(padded)  # (1, dim, h_region + 2r, w_region + 2r)
        h, w = r1 - r0, c1 - c0
        rows = max(1, chunk // max(w, 1))
        out: list[torch.Tensor] = []
        for y0 in range(0, h, rows):
            y1 = min(h, y0 + rows)
            win = F.unfold(tok[:, :, y0:y1 + 2 * r], self.k)  # (1, dim*k*k, (y1-y0)*w)
            win = win.view(tok.shape[1], self.k * self.k, -1)  # (dim, k*k, n)
            centre = feats[0, :, r0 + y0:r0 + y1, c0:c1].flatten(1).T  # (n, D)
            spec = None if spectra is None else \
                spectra[0, :, r0 + y0:r0 + y1, c0:c1].flatten(1).T  # (n, C)
            out.append(self.encode(win.permute(2, 1, 0), centre, spec))  # (n, k*k, dim) view
        logits = torch.cat(out, dim=0)  # (h*w, K)
        return logits.T.reshape(1, -1, h, w)


class ClassifierEnsemble(nn.Module):
    """Several :class:`WindowClassifier` members whose softmax probabilities are averaged.

    The output is the log of the mean probability, so ``argmax`` is the averaged vote and
    the values stay log-probabilities like a single member's log-softmax.
    """

    def __init__(self, members: list[WindowClassifier]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.k = members[0].k
        self.n_classes = members[0].n_classes

    def each(self) -> list[WindowClassifier]:
        """The members, typed."""
        return [cast(WindowClassifier, m) for m in self.members]

    @staticmethod
    def _log_mean_prob(logits: list[torch.Tensor]) -> torch.Tensor:
        """Members' logits (classes on dim 1) -> log of their mean softmax probability."""
        probs = torch.stack([x.float().softmax(1) for x in logits]).mean(0)
        return probs.clamp_min(1e-12).log()

    def forward_patches(self, patches: torch.Tensor,
                        spectra: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, D, k+2, k+2)`` -> ``(n, K)`` log mean probabilities."""
        return self._log_mean_prob([m.forward_patches(patches, spectra) for m in self.each()])

    def forward_map(self, feats: torch.Tensor, chunk: int = 1024,
                    spectra: torch.Tensor | None = None,
                    region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """``(1, D, h, w)`` -> ``(1, K, h, w)`` log mean probabilities (of ``region`` alone
        when given, as :meth:`WindowClassifier.forward_map`)."""
        return self._log_mean_prob([m.forward_map(feats, chunk, spectra, region)
                                    for m in self.each()])


def make_classifier(config: DiffSpectralNetConfig, n_feat: int, n_classes: int,
                    n_bands: int = 0) -> WindowClassifier | ClassifierEnsemble:
    """One classifier, or ``config.clf_ensemble`` of them (a plain one when it is 1, so the
    weights keep the names of checkpoints written before ensembles existed)."""
    if config.clf_ensemble == 1:
        return WindowClassifier(config, n_feat, n_classes, n_bands)
    return ClassifierEnsemble([WindowClassifier(config, n_feat, n_classes, n_bands)
                               for _ in range(config.clf_ensemble)])


def gather_patches(padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                   size: int) -> torch.Tensor:
    """``size x size`` patches centred on pixels of a zero-padded map.

    Parameters
    ----------
    padded
        ``(D, H + 2p, W + 2p)`` feature map padded by ``p = size // 2``.
    rows, cols
        ``(n,)`` pixel coordinates in the unpadded map.

    Returns
    -------
    torch.Tensor
        ``(n, D, size, size)``.
    """
    off = torch.arange(size, device=padded.device)
    yy = rows[:, None, None] + off[None, :, None]  # (n, size, 1)
    xx = cols[:, None, None] + off[None, None, :]  # (n, 1, size)
    return padded[:, yy, xx].permute(1, 0, 2, 3)  # (n, D, size, size)
