"""Accuracy benchmark: DiffSpectralNet vs baselines under three protocols, several seeds.

Prints a markdown table of mean +- std OA / AA / kappa (in %) and train / predict seconds per
(dataset, protocol, method), and writes every run to a JSON file.

Datasets (from the shared data folder, see its README):
  salinas_a  AVIRIS Salinas-A, 83 x 86 x 204, 6 classes (.mat)
  potsdam    EnMAP L2A Potsdam, the 18 EnMAP-Box test tiles of 32 x 32 x 224 mosaicked
             (160 x 192 px grid, 6 classes)
  indian_pines  AVIRIS Indian Pines, the full 145 x 145 x 200 scene stretched to 8 bits per
             band (indian_pines_8bit/, 16 classes, 10,366 labelled px)

Protocols:
  random30   30 random labelled pixels per class for training, the rest for testing
  randomNpx  N random labelled pixels per class (at most half of the class), e.g. random5px:
             the few-label regime, where label-free pretraining should pay if anywhere
  random5    5 % of each class for training, the rest for testing
  random10   10 % of each class for training (at least 2 px), the rest for testing: the
             DiffSpectralNet paper's Indian Pines protocol
  disjoint   whole tiles (potsdam: the 32 x 32 EnMAP tiles; salinas_a: 16 x 16 blocks) go to
             training or testing; test pixels within --guard px (Chebyshev) of any training
             pixel are dropped. The table states the guard and the test pixels left.
             (indian_pines: 16 x 16 blocks.)
  disjointNpx  the disjoint protocol's blocks and test pixels (the same for a seed), with
             only N random labelled pixels per class of the training blocks kept for
             training (all of a class that has fewer), e.g. disjoint10px: few labels without
             neighbourhood interpolation

Rows: svm-rbf / random-forest on standardised spectra; cnn-pca (a 3-layer CNN on 9 x 9
patches of 30 PCA components: the simplest spatial baseline, issue 12's floor) and
cnn-pca-11aug (the same CNN on 11 x 11 patches with rotation/mirror augmentation, the best of
the CNN variants tried); cnn-fast (cnn-pca-11aug ended as fast ends: its probabilities
averaged 0.5/0.5 with hsimap's svm and smoothed with fast's setting; sub-rows /cnn, /blend);
cnn-dsn (cnn-pca-11aug given fast's diffusion features as more input channels) and
cnn-ddpm / cnn-ddpm-u (cnn-pca-11aug whose convolutions are first trained label-free as a
DDPM noise predictor on the whole scene, then fine-tuned; -u: the denoiser sees the
components unwhitened): does the diffusion stage help the floor?
spectral-mlp (hsimap's baseline); hsimap-svm / hsimap-rf: hsimap's own `svm` (C and gamma
by grouped spatial CV on the training pixels) and `random-forest` kinds, default presets;
dsn-fast (DiffSpectralNet, fast preset: since 2026-12-02 with its SVM member,
spectral_weight 0.5, since 2026-12-06 with its probability smoothing), dsn-fast-1t (one
feature timestep), dsn-paper;
blend-dsn-svm: the fast preset without its member and without smoothing (sub-row
/spatial; --blend-spatial adds config overrides), hsimap's svm (/spectral) and their
probability average (the row: w = 0.5, i.e. the fast preset before its smoothing; /w0.25,
/w0.75), all fitted on the same fold; --dump stores each fold's probabilities for
bench_smoothing.py, which applies the smoothing;
clf-raw / clf-pca: the same window-transformer classifier on the standardised spectra / on
32 PCA components instead of diffusion features (is the diffusion stage worth it?), like
dsn-fast with its SVM member.
The denoiser is label-free, so for one scene and seed it is trained once and reused by the
DiffSpectralNet rows of every protocol (its train time is counted in the first fit only).

Early stopping of the neural models uses validation pixels taken (block-wise) from the
training pixels only; test pixels are never seen by any model selection. The unsupervised
steps of DiffSpectralNet (spectral projection, denoiser) see every valid pixel of the scene,
test pixels included, but no labels (the transductive setting of the paper).

Example:
  python benchmarks/bench_accuracy.py --data ../shared/data --seeds 5 --out results.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class Scene:
    """A benchmark scene in memory: raw cube, validity, labels and tile ids."""

    name: str
    cube: np.ndarray      # (C, H, W) float32, good bands only
    valid: np.ndarray     # (H, W) bool
    labels: np.ndarray    # (H, W) int64 class index 0..K-1, -1 unlabelled
    tiles: np.ndarray     # (H, W) int64 tile/block id for the disjoint protocol, -1 none
    class_names: list[str]


def load_salinas_a(data: Path, block: int = 16) -> Scene:
    """Salinas-A from its standard .mat files."""
    from scipy.io import loadmat

    folder = data / "salinas_a"
    cube = loadmat(folder / "SalinasA_corrected.mat")["salinasA_corrected"]  # (H, W, C)
    gt = loadmat(folder / "SalinasA_gt.mat")["salinasA_gt"].astype(np.int64)
    values = sorted(int(v) for v in np.unique(gt) if v > 0)
    index = np.full(gt.shape, -1, dtype=np.int64)
    for i, v in enumerate(values):
        index[gt == v] = i
    h, w = gt.shape
    tiles = (np.arange(h)[:, None] // block) * (-(-w // block)) + np.arange(w)[None, :] // block
    names = {1: "Brocoli_green_weeds_1", 10: "Corn_senesced_green_weeds",
             11: "Lettuce_romaine_4wk", 12: "Lettuce_romaine_5wk", 13: "Lettuce_romaine_6wk",
             14: "Lettuce_romaine_7wk"}
    return Scene("salinas_a", np.ascontiguousarray(cube.transpose(2, 0, 1), np.float32),
                 np.ones(gt.shape, bool), index, tiles, [names[v] for v in values])


IP_NAMES = ["Alfalfa", "Buildings-Grass-Trees-Drives", "Corn", "Corn-mintill", "Corn-notill",
            "Grass-pasture-mowed", "Grass-pasture", "Grass-trees", "Hay-windrowed", "Oats",
            "Soybean-clean", "Soybean-mintill", "Soybean-notill", "Stone-Steel-Towers",
            "Wheat", "Woods"]  # label_M values 1..16 (indian_pines_8bit/README.md)


def load_indian_pines(data: Path, block: int = 16) -> Scene:
    """Indian Pines (8-bit copy) from its .mat files; label -1 = unlabelled, 1..16 classes."""
    from scipy.io import loadmat

    folder = data / "indian_pines_8bit"
    cube = loadmat(folder / "IP_200_M.mat")["data_M"]  # (145, 145, 200) uint8
    gt = loadmat(folder / "Label_M_IP_16.mat")["label_M"].astype(np.int64)
    index = np.where(gt >= 1, gt - 1, -1)
    h, w = gt.shape
    tiles = (np.arange(h)[:, None] // block) * (-(-w // block)) + np.arange(w)[None, :] // block
    return Scene("indian_pines", np.ascontiguousarray(cube.transpose(2, 0, 1), np.float32),
                 np.ones(gt.shape, bool), index, tiles, list(IP_NAMES))


def load_potsdam(data: Path) -> Scene:
    """The 18 EnMAP Potsdam tiles on their common grid; bad bands (bbl=0) dropped."""
    import rasterio

    folder = data / "enmap_potsdam_tiles"
    paths = sorted((folder / "images").glob("enmap_potsdam_tile_*.tif"))
    with rasterio.open(paths[0]) as src:
        bbl = [src.tags(i + 1).get("bbl", "1") for i in range(src.count)]
        nodata = src.nodata
    good = [i for i, b in enumerate(bbl) if float(b) != 0]
    offsets = [tuple(int(x) for x in p.stem.split("_")[-2:]) for p in paths]  # (col, row)
    width = max(c for c, _ in offsets) + 32 - min(c for c, _ in offsets)
    height = max(r for _, r in offsets) + 32 - min(r for _, r in offsets)
    c0, r0 = min(c for c, _ in offsets), min(r for _, r in offsets)
    cube = np.zeros((len(good), height, width), np.float32)
    valid = np.zeros((height, width), bool)
    labels = np.full((height, width), -1, np.int64)
    tiles = np.full((height, width), -1, np.int64)
    for t, (p, (c, r)) in enumerate(zip(paths, offsets, strict=True)):
        with rasterio.open(p) as src:
            img = src.read()[good]
        with rasterio.open(folder / "labels" / p.name) as src:
            lab = src.read(1).astype(np.int64)
        rs, cs = slice(r - r0, r - r0 + 32), slice(c - c0, c - c0 + 32)
        cube[:, rs, cs] = img
        valid[rs, cs] = (img != nodata).all(0) & np.isfinite(img).all(0)
        labels[rs, cs] = np.where(lab > 0, lab - 1, -1)
        tiles[rs, cs] = t
    labels[~valid] = -1
    names = ["roof", "pavement", "low vegetation", "tree", "soil", "water"]
    return Scene("potsdam", cube, valid, labels, tiles, names)


def per_class_sample(lab: np.ndarray, within: np.ndarray, rng: np.random.Generator,
                     count: Callable[[int], int]) -> np.ndarray:
    """Mask of ``count(n)`` random pixels of each class (ascending) among its ``n`` pixels
    in ``within``; classes with none there are skipped."""
    out = np.zeros(lab.shape, bool)
    for c in np.unique(lab[within & (lab >= 0)]):
        pix = np.flatnonzero(within & (lab == c))
        out.flat[rng.choice(pix, count(len(pix)), replace=False)] = True
    return out


def protocol_masks(scene: Scene, protocol: str, seed: int,
                   guard: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Training and test masks for one protocol and seed."""
    rng = np.random.default_rng(seed)
    lab = scene.labels
    # random30 is random30px by its older name; random5 / random10 are shares of each class
    per_class = re.fullmatch(r"random(\d+)px", "random30px" if protocol == "random30"
                             else protocol)
    share = {"random5": 0.05, "random10": 0.10}.get(protocol)
    if per_class or share:
        train = per_class_sample(lab, lab >= 0, rng, lambda n: (
            min(int(per_class[1]), n // 2) if per_class else max(2, round(share * n))))
        test = (lab >= 0) & ~train
        return train, test, {"guard": 0, "removed": 0}
    ids = np.unique(scene.tiles[(lab >= 0)])
    classes = np.unique(lab[lab >= 0])
    for _ in range(200):  # resample until every class has training and test pixels
        chosen = rng.permutation(ids)[: max(1, int(round(0.5 * len(ids))))]
        train = np.isin(scene.tiles, chosen) & (lab >= 0)
        test_all = (lab >= 0) & ~np.isin(scene.tiles, chosen)
        if all(train[lab == c].any() and test_all[lab == c].any() for c in classes):
            break
    from scipy import ndimage

    near = ndimage.maximum_filter(train, size=2 * guard + 1) if guard else train
    test = test_all & ~near
    few = re.fullmatch(r"disjoint(\d+)px", protocol)
    if few:  # the same blocks and test pixels as disjoint; N px per class of them train
        train = per_class_sample(lab, train, rng, lambda n: min(int(few[1]), n))
    return train, test, {"guard": guard, "removed": int(test_all.sum() - test.sum())}


def standardise(scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-band mean/std over valid pixels and the standardised cube (invalid = 0)."""
    pix = scene.cube[:, scene.valid].astype(np.float64)
    mean, std = pix.mean(1), pix.std(1)
    std[std == 0] = 1
    z = ((scene.cube - mean[:, None, None].astype(np.float32))
         / std[:, None, None].astype(np.float32))
    z[:, ~scene.valid] = 0
    return z.astype(np.float32), mean.astype(np.float32), std.astype(np.float32)


Runner = Callable[[Scene, np.ndarray, np.ndarray, int],
                  tuple[np.ndarray, float, float, dict]]


def label_map(scene: Scene, p: np.ndarray) -> np.ndarray:
    """The class map of ``(K, H, W)`` probabilities: argmax, -1 outside the valid pixels."""
    return np.where(scene.valid, p.argmax(0), -1)


def sklearn_runner(kind: str) -> Runner:
    """SVM-RBF or random forest on standardised spectra."""

    def run(scene: Scene, train: np.ndarray, _test: np.ndarray, seed: int):
        from sklearn.ensemble import RandomForestClassifier
        from sklearn.svm import SVC

        z, _, _ = standardise(scene)
        x = z.reshape(z.shape[0], -1).T
        y = scene.labels.reshape(-1)
        clf = (SVC(C=100.0, gamma="scale", random_state=seed) if kind == "svm" else
               RandomForestClassifier(n_estimators=300, n_jobs=-1, random_state=seed))
        t0 = time.perf_counter()
        clf.fit(x[train.reshape(-1)], y[train.reshape(-1)])
        t1 = time.perf_counter()
        valid = scene.valid.reshape(-1)
        pred = np.full(y.shape, -1, np.int64)
        pred[valid] = clf.predict(x[valid])
        return pred.reshape(scene.labels.shape), t1 - t0, time.perf_counter() - t1, {}

    return run


def pca_map(scene: Scene, components: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """``(components, H, W)`` principal components of the standardised scene, each scaled to
    unit variance over the valid pixels (PCA fitted on every valid pixel, no labels:
    transductive like the denoiser), 0 outside the valid pixels; and each component's
    standard deviation before that scaling."""
    z, _, _ = standardise(scene)
    pix = z[:, scene.valid].T.astype(np.float64)
    mu = pix.mean(0)
    _, _, vt = np.linalg.svd(pix - mu, full_matrices=False)
    pcs = ((z.reshape(z.shape[0], -1).T - mu) @ vt[:components].T).T
    std = pcs[:, scene.valid.reshape(-1)].std(1)
    pcs = pcs / std[:, None]
    pcs[:, ~scene.valid.reshape(-1)] = 0
    return pcs.reshape(components, *scene.labels.shape).astype(np.float32), std


def cnn_trunk(channels: int, padding: int = 0) -> list:
    """The floor's three 3 x 3 convolutions (64 filters, batch norm, ReLU)."""
    from torch import nn

    return [nn.Conv2d(channels, 64, 3, padding=padding), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=padding), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=padding), nn.BatchNorm2d(64), nn.ReLU()]


def pretrain_trunk(inputs: np.ndarray, valid: np.ndarray, seed: int, steps: int,
                   gain: np.ndarray | None = None, t_max: int = 200, crop: int = 24,
                   batch: int = 16) -> tuple[dict, dict]:
    """Diffusion pretraining of the floor's trunk, label-free, on every valid pixel of the
    scene: the three convolutions ('same' padding) and a 1 x 1 output layer learn to predict
    the noise of DDPM-noised crops of ``inputs`` (``fast``'s linear schedule, 500 steps,
    t drawn uniformly from 1..``t_max``; no timestep input: a noise-level-blind denoiser,
    so the trunk's weights carry over unchanged), L1 loss on valid pixels, Adam 1e-3.
    ``gain``: per-channel factors applied to ``inputs`` for the denoiser (to undo the
    components' whitening, under which noise looks like signal); the first convolution's
    weights are multiplied by them afterwards, so the returned trunk computes on ``inputs``
    exactly what the denoiser's trunk computed on the rescaled ones.
    Returns the trunk's state dict (keys of :func:`cnn_trunk`'s layers) and the denoiser's
    noise error on the whole scene (eval mode) at t = 10, 50, 100 beside predicting zero."""
    import torch
    from torch import nn

    from hsimap.models.base import get_spec
    from hsimap.models.diffspectralnet.schedule import Diffusion, eps_loss

    g = torch.Generator().manual_seed(seed + 7919)
    torch.manual_seed(seed + 7919)
    c, h, w = inputs.shape
    g_in = np.ones(c, np.float32) if gain is None else gain.astype(np.float32)
    x = torch.from_numpy(inputs * g_in[:, None, None])
    m = torch.from_numpy(valid.astype(np.float32))
    trunk = nn.Sequential(*cnn_trunk(c, padding=1))
    net = nn.Sequential(trunk, nn.Conv2d(64, c, 1))
    proc = Diffusion.from_config(get_spec("diffspectralnet").make_config("fast", {}))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    size = min(crop, h, w)
    net.train()
    for _ in range(steps):
        r0 = torch.randint(0, h - size + 1, (batch,), generator=g)
        c0 = torch.randint(0, w - size + 1, (batch,), generator=g)
        x0 = torch.stack([x[:, a:a + size, b:b + size] for a, b in zip(r0, c0, strict=True)])
        mb = torch.stack([m[a:a + size, b:b + size] for a, b in zip(r0, c0, strict=True)])[:, None]
        t = torch.randint(1, t_max + 1, (batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        loss = eps_loss(net(proc.q_sample(x0, t, eps)), eps, mb, "l1")
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    check: dict = {"timesteps": [10, 50, 100], "eps_l1": [], "zero_l1": []}
    with torch.no_grad():
        for t in check["timesteps"]:
            eps = torch.randn((1, c, h, w), generator=g)
            pred = net(proc.noisy(x[None], t, eps))
            check["eps_l1"].append(round(float((pred - eps).abs()[0][:, valid].mean()), 4))
            check["zero_l1"].append(round(float(eps.abs()[0][:, valid].mean()), 4))
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    state["0.weight"] *= torch.from_numpy(g_in)[None, :, None, None]
    return state, check


_TRUNKS: dict[tuple, tuple[dict, dict]] = {}  # pretrained trunks, see cnn_probabilities


def cnn_probabilities(scene: Scene, train: np.ndarray, seed: int, *, components: int = 30,
                      size: int = 9, epochs: int = 100, augment: bool = False,
                      extra: np.ndarray | None = None, pretrain: int = 0,
                      unwhiten: bool = False,
                      info: dict | None = None) -> tuple[np.ndarray, float, float]:
    """The simplest spatial baseline (issue 12's floor): a 3-layer CNN on ``size`` x ``size``
    patches of ``components`` PCA components (:func:`pca_map`), Adam, a fixed schedule, no
    validation; ``augment``: each training patch turned by a random one of the 8 symmetries
    of the square, as DiffSpectralNet's ``clf_augment`` does. ``extra``: more ``(D, H, W)``
    input channels stacked after the components (DiffSpectralNet's diffusion features, for
    ``cnn-dsn``); ``pretrain``: steps of :func:`pretrain_trunk` whose weights initialise the
    convolutions (``cnn-ddpm``; the denoiser's check goes into ``info``; ``unwhiten``: the
    denoiser sees the components at their own variance, ``cnn-ddpm-u``). Returns its
    ``(K, H, W)`` class probabilities (0 outside the valid pixels), fit and prediction
    seconds (pretraining included in the fit). ``--train-seed`` changes the initialisation
    and the batches (not the split)."""
    import torch
    from torch import nn

    from hsimap.models.diffspectralnet.classifier import gather_patches
    from hsimap.models.diffspectralnet.fit_classifier import dihedral

    fold_seed, seed = seed, seed + 1000 * TRAIN_SEED["offset"]
    torch.manual_seed(seed)
    inputs, pc_std = pca_map(scene, components)
    if extra is not None:
        inputs = np.concatenate([inputs, extra.astype(np.float32)])
    channels = inputs.shape[0]
    h, w = scene.labels.shape
    r = size // 2
    padded = torch.from_numpy(np.pad(inputs, ((0, 0), (r, r), (r, r))))
    k = len(scene.class_names)
    net = nn.Sequential(*cnn_trunk(channels), nn.Flatten(), nn.Dropout(0.3),
                        nn.Linear(64 * (size - 6) ** 2, k))
    t0 = time.perf_counter()
    if pretrain:  # label-free: once per scene, training seed and steps, as the denoiser
        key = (*label_free_draw(scene, fold_seed), channels, pretrain, unwhiten)
        if key not in _TRUNKS:
            _TRUNKS[key] = pretrain_trunk(inputs, scene.valid,
                                          (fold_seed if DENOISER["per_fold"] else 0)
                                          + 1000 * TRAIN_SEED["offset"], pretrain,
                                          gain=np.concatenate(
                                              [pc_std / pc_std[0],
                                               np.ones(channels - components)])
                                          if unwhiten else None)
        state, check = _TRUNKS[key]
        net[:9].load_state_dict(state)  # the trunk's layers, keys 0..8
        if info is not None:
            info["pretrain_check"] = check

    def patches(idx: np.ndarray) -> torch.Tensor:
        rows, cols = (torch.from_numpy(a) for a in np.divmod(idx, w))
        return gather_patches(padded, rows, cols, size)  # (n, C, s, s)

    idx = np.flatnonzero(train.reshape(-1))
    y = torch.from_numpy(scene.labels.reshape(-1)[idx])
    xs = patches(idx)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(epochs):
        for b in torch.randperm(len(idx), generator=g).split(64):
            if len(b) < 2:
                continue
            xb = dihedral(xs[b], torch.randint(0, 8, (len(b),), generator=g)) \
                if augment else xs[b]
            opt.zero_grad()
            nn.functional.cross_entropy(net(xb), y[b]).backward()
            opt.step()
    t1 = time.perf_counter()
    net.eval()
    valid = np.flatnonzero(scene.valid.reshape(-1))
    prob = np.zeros((k, h * w), np.float32)
    with torch.no_grad():
        for part in np.array_split(valid, max(1, len(valid) // 4096)):
            prob[:, part] = net(patches(part)).softmax(1).numpy().T
    return prob.reshape(k, h, w), t1 - t0, time.perf_counter() - t1


def dsn_diffusion_map(scene: Scene, train: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """``fast``'s diffusion features of the scene ``(D, H, W)`` (its reduced (timestep,
    layer) maps, without the projected-spectra map) and their seconds: ``fast``'s projection,
    denoiser and reducers fitted as :func:`fit_hsimap` fits them (the denoiser cached per
    scene, or per fold under ``--denoiser per-fold``), its classifier cut to one epoch
    (unused here)."""
    import torch

    from hsimap.models.diffspectralnet.fit import extract_features

    ckpt, t_fit, _ = fit_hsimap(scene, train, seed, "diffspectralnet", "fast",
                                {"clf_epochs": 1, "spectral_weight": 0.0, "smooth_radius": 0})
    model = ckpt.model  # type: ignore[attr-defined]
    z, _, _ = standardise(scene)
    t0 = time.perf_counter()
    feats = extract_features(model, torch.from_numpy(z), torch.device("cpu"), lambda e: None)
    n_spectra = model.features.reducers[0].bias.shape[0] \
        if model.features.keys[0] == (-1, -1) else 0
    return feats[n_spectra:].numpy(), t_fit + time.perf_counter() - t0


def cnn_runner(*, diffusion: bool = False, **settings: object) -> Runner:
    """:func:`cnn_probabilities`' argmax as a row (``diffusion``: ``fast``'s diffusion
    features as extra input channels, :func:`dsn_diffusion_map`)."""

    def run(scene: Scene, train: np.ndarray, _test: np.ndarray, seed: int):
        extra, t_dsn, info = None, 0.0, {}
        if diffusion:
            extra, t_dsn = dsn_diffusion_map(scene, train, seed)
        prob, t_fit, t_pred = cnn_probabilities(scene, train, seed, extra=extra, info=info,
                                                **settings)  # type: ignore[arg-type]
        return label_map(scene, prob), t_fit + t_dsn, t_pred, info

    return run


def cnn_fast_runner() -> Runner:
    """The floor with ``fast``'s ending: the tuned CNN (11 x 11, augmented) in place of the
    diffusion + transformer model, its probabilities averaged 0.5/0.5 with hsimap's ``svm``
    and smoothed as ``fast`` smooths (radius 6, range 0.5, guided by a 32-component
    unwhitened projection fitted label-free). Sub-rows: the CNN alone (``/cnn``) and the
    unsmoothed blend (``/blend``). Does the diffusion + transformer part beat the simplest
    spatial model inside the same pipeline?"""

    def run(scene: Scene, train: np.ndarray, _test: np.ndarray, seed: int):
        import torch

        from hsimap.models.smoothing import ProbabilitySmoother
        from hsimap.predict.engine import class_probabilities

        p_cnn, t_fit, t_pred = cnn_probabilities(scene, train, seed, size=11, augment=True)
        ckpt, t_svm, _ = fit_hsimap(scene, train, seed, "svm", None, {})
        t1 = time.perf_counter()
        p_svm = class_probabilities(ckpt, scene.cube, scene.valid)
        blend = 0.5 * p_cnn + 0.5 * p_svm
        z, _, _ = standardise(scene)
        smoother = ProbabilitySmoother(z.shape[0], radius=6, range_factor=0.5)
        smoother.fit(torch.from_numpy(z), scene.valid, rng=np.random.default_rng(seed))
        with torch.no_grad():
            smoothed = smoother(torch.from_numpy(blend.astype(np.float32))[None],
                                torch.from_numpy(z)[None])[0].numpy()
        also = {"cnn": label_map(scene, p_cnn), "blend": label_map(scene, blend)}
        return (label_map(scene, smoothed), t_fit + t_svm, t_pred + time.perf_counter() - t1,
                {"also": also})

    return run


# (scene, training seed, projection + denoiser settings) -> a fitted DiffSpectralNet whose
# label-free stages (spectral projection, denoiser) every later fit on the same scene with the
# same settings reuses: the denoiser sees no labels, so one is trained per scene, not per
# fold (its train time is counted in the first fit only). The fold seed still sets the split
# and the classifier's initialisation; --train-seed changes the denoiser too. With
# --denoiser per-fold every fold trains its own (seeded by the fold), so the folds of a run are
# independent draws and their standard errors cover the denoiser's draw as well; shared, its
# one draw moves every fold at once (docs/benchmarks.md: by about 1.5 points of a 10-fold
# mean on Indian Pines disjoint), which the standard error does not see.
_DENOISERS: dict[tuple, tuple[object, dict]] = {}
_LABEL_FREE = ("proj_bands", "proj_whiten", "unet", "widths", "time_dim", "diffusion_steps",
               "schedule", "beta_start", "beta_end", "loss", "denoiser_iterations", "crop",
               "batch", "lr", "t_sampling", "denoiser_check_every", "denoiser_min_gain",
               "timesteps", "features")
VALIDATION = {"mode": "guarded"}  # set from --clf-val in main()
DENOISER = {"per_fold": False}  # set from --denoiser in main()


def label_free_draw(scene: Scene, seed: int) -> tuple:
    """Which draw of a label-free stage (denoiser, pretrained trunk) a fold of ``scene`` with
    fold ``seed`` uses: one per scene and ``--train-seed``, or per fold as well under
    ``--denoiser per-fold``. Part of the caches' keys."""
    return scene.name, TRAIN_SEED["offset"], seed if DENOISER["per_fold"] else None


def validation_split(scene: Scene, train: np.ndarray, seed: int, model: str,
                     config: object) -> tuple[np.ndarray, np.ndarray]:
    """The (train, validation) masks a fit of ``model`` on the fold's ``train`` pixels uses:
    all of them and none under ``--clf-val none``; else 8 px validation blocks drawn from the
    training pixels with a guard band of the model's window radius."""
    from hsimap.models.base import get_spec
    from hsimap.split import make_split

    if VALIDATION["mode"] == "none":
        return train.copy(), np.zeros_like(train)
    probe = get_spec(model).build(config, n_bands=scene.cube.shape[0],
                                  n_classes=len(scene.class_names))
    split = make_split(np.where(train, scene.labels, -1), scene.tiles, method="block",
                       val_fraction=0.15, guard=probe.window_radius(), seed=seed,
                       block_size=8)
    return split.train, split.val


def fit_on_split(scene: Scene, train: np.ndarray, seed: int, model: str, config: object,
                 init: object | None = None,
                 device: object = None) -> tuple[object, object, dict]:
    """Fit an hsimap model kind on ``train`` pixels as every benchmark row does.

    Standardised spectra. Early stopping (``--clf-val guarded``, the default) uses 8 px
    validation blocks drawn from the training pixels only, with a guard band of the model's
    window radius between them and the pixels it trains on; ``--clf-val none`` trains on all
    training pixels with the fixed schedule. ``init`` reuses a fitted model's label-free
    stages; ``device`` (a ``torch.device``, default CPU) is where it trains. Returns the
    fitted model (eval mode), a :class:`Checkpoint` for :func:`classify_array` and the fit's
    history.
    """
    import torch

    from hsimap.checkpoint import Checkpoint, Normalisation
    from hsimap.classes import ClassTable
    from hsimap.models.base import TrainData, get_spec

    torch.manual_seed(seed)
    spec = get_spec(model)
    z, mean, std = standardise(scene)
    inner = np.where(train, scene.labels, -1)  # validation drawn from training pixels only
    tr, va = validation_split(scene, train, seed, model, config)
    data = TrainData(z, scene.valid, inner, tr, va, len(scene.class_names))
    extra = {} if init is None else {"init": init}
    fitted, history = spec.fit(data, config, seed=seed,
                               device=device if device is not None else torch.device("cpu"),
                               progress=lambda e: None, **extra)
    ckpt = Checkpoint(fitted.eval(), Normalisation(mean, std),
                      ClassTable.from_names(scene.class_names), {})
    return fitted, ckpt, history


def fit_hsimap(scene: Scene, train: np.ndarray, seed: int, model: str, preset: str | None,
               overrides: dict) -> tuple[object, float, dict]:
    """Fit an hsimap model kind on a fold (the label-free DiffSpectralNet stages cached per
    scene and training seed); returns its checkpoint, fit seconds and extra fields."""
    from hsimap.models.base import get_spec

    config = get_spec(model).make_config(preset, overrides)
    key = None
    if model == "diffspectralnet" and config.features == "diffusion":
        key = (*label_free_draw(scene, seed), tuple(getattr(config, f) for f in _LABEL_FREE))
    cached = _DENOISERS.get(key)
    t0 = time.perf_counter()
    fitted, ckpt, history = fit_on_split(scene, train, seed + 1000 * TRAIN_SEED["offset"],
                                         model, config, None if cached is None else cached[0])
    t_fit = time.perf_counter() - t0
    if key is not None and cached is None:
        _DENOISERS[key] = (fitted, history.get("denoiser_eval", {}))
    extra = {}
    if key is not None:
        ev = _DENOISERS[key][1]
        extra = {"denoiser_ratio": ev.get("ratio"), "denoiser_t": ev.get("timesteps")}
    if "classifier" in history:
        extra["best_epoch"] = history["classifier"].get("best_epoch")
    return ckpt, t_fit, extra


def hsimap_runner(model: str, preset: str | None, overrides: dict) -> Runner:
    """An hsimap model kind trained through its ``fit`` and applied by tiled inference."""

    def run(scene: Scene, train: np.ndarray, _test: np.ndarray, seed: int):
        from hsimap.predict import classify_array

        ckpt, t_fit, extra = fit_hsimap(scene, train, seed, model, preset, overrides)
        t1 = time.perf_counter()
        pred = classify_array(ckpt, scene.cube, scene.valid)
        return pred, t_fit, time.perf_counter() - t1, extra

    return run


TRAIN_SEED = {"offset": 0}  # set from --train-seed in main()
PROTOCOL = {"name": ""}  # the protocol being run (for --dump's file names)


BLEND_WEIGHTS = (0.25, 0.5, 0.75)  # spatial-model weight; 0.5 fixed a priori (issue 12)


def blend_runner(spatial: tuple[str, str | None, dict],
                 spectral: tuple[str, str | None, dict]) -> Runner:
    """A spatial hsimap model and a per-pixel one fitted on the same fold, their class
    probabilities averaged (weight w on the spatial one). The row itself is w = 0.5; the
    components and the other weights come as sub-rows (``name/part``) of the same fold, so
    every comparison among them is paired."""
    def run(scene: Scene, train: np.ndarray, test: np.ndarray, seed: int):
        from hsimap.models.base import get_spec
        from hsimap.predict.engine import class_probabilities

        parts, t_fit, t_pred, extra, ckpts = [], 0.0, 0.0, {}, []
        for model, preset, overrides in (spatial, spectral):
            ckpt, t, ex = fit_hsimap(scene, train, seed, model, preset, overrides)
            extra = extra or ex
            ckpts.append(ckpt)
            t1 = time.perf_counter()
            parts.append(class_probabilities(ckpt, scene.cube, scene.valid))
            t_fit += t
            t_pred += time.perf_counter() - t1
        also = {"spatial": label_map(scene, parts[0]), "spectral": label_map(scene, parts[1])}
        for w in BLEND_WEIGHTS:
            if w != 0.5:
                also[f"w{w}"] = label_map(scene, w * parts[0] + (1 - w) * parts[1])
        if DUMP["dir"] is not None:
            vals = [validation_split(scene, train, seed, m,
                                     get_spec(m).make_config(pr, ov))[1]
                    for m, pr, ov in (spatial, spectral)]
            dump_fold(scene, train, test, seed, parts, ckpts[0], vals[0] & vals[1])
        return (label_map(scene, 0.5 * parts[0] + 0.5 * parts[1]), t_fit, t_pred,
                {**extra, "also": also})

    return run


DUMP: dict[str, Path | None] = {"dir": None}  # set from --dump in main()


def dump_fold(scene: Scene, train: np.ndarray, test: np.ndarray, seed: int,
              parts: list[np.ndarray], spatial_ckpt: object, val: np.ndarray) -> None:
    """Write one blend fold's class probabilities (spatial, spectral), masks (``val``: the
    training pixels both parts held out for validation; none under ``--clf-val none``),
    labels and the DiffSpectralNet's spectral projection of the scene (the guide of its
    probability smoothing) to ``--dump``, for ``bench_smoothing.py``."""
    import torch

    z, _, _ = standardise(scene)
    with torch.no_grad():
        guide = spatial_ckpt.model.features.projection(torch.from_numpy(z)[None])[0]
    out = DUMP["dir"]
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / f"{scene.name}_{PROTOCOL['name']}_{seed}_t{TRAIN_SEED['offset']}.npz",
        spatial=parts[0], spectral=parts[1], guide=guide.numpy(), train=train, test=test,
        val=val,
        labels=scene.labels, valid=scene.valid, seed=seed)


def method_table(args: argparse.Namespace) -> dict[str, Runner]:
    """Rows of the table by name."""
    dsn = {"denoiser_iterations": args.denoiser_iters} if args.denoiser_iters else {}
    rows: dict[str, Runner] = {
        "svm-rbf": sklearn_runner("svm"),
        "random-forest": sklearn_runner("rf"),
        "cnn-pca": cnn_runner(),
        "cnn-pca-11aug": cnn_runner(size=11, augment=True),
        "cnn-pca-15aug": cnn_runner(size=15, augment=True),
        "cnn-pca-19aug": cnn_runner(size=19, augment=True),
        "cnn-dsn": cnn_runner(size=11, augment=True, diffusion=True),
        "cnn-ddpm": cnn_runner(size=11, augment=True, pretrain=args.pretrain_steps),
        "cnn-ddpm-u": cnn_runner(size=11, augment=True, pretrain=args.pretrain_steps,
                                 unwhiten=True),
        "cnn-fast": cnn_fast_runner(),
        "spectral-mlp": hsimap_runner("spectral-mlp", None, {}),
        "hsimap-svm": hsimap_runner("svm", None, {}),
        "svm-smooth": hsimap_runner("svm", "smooth", {}),
        "hsimap-rf": hsimap_runner("random-forest", None, {}),
        "dsn-fast": hsimap_runner("diffspectralnet", "fast", dict(dsn)),
        "dsn-fast-1t": hsimap_runner("diffspectralnet", "fast",
                                     {**dsn, "timesteps": [args.single_t]}),
        "dsn-paper": hsimap_runner("diffspectralnet", "paper", dict(dsn)),
        "clf-raw": hsimap_runner("diffspectralnet", "fast",
                                 {"features": "projection", "proj_bands": 0}),
        "clf-pca": hsimap_runner("diffspectralnet", "fast",
                                 {"features": "projection", "proj_bands": 32}),
        # the model alone (no SVM member) and hsimap's svm, averaged: 0.5 is today's fast
        "blend-dsn-svm": blend_runner(
            ("diffspectralnet", "fast", {**dsn, **json.loads(args.blend_spatial),
                                         "spectral_weight": 0.0, "smooth_radius": 0}),
            ("svm", None, {})),
    }
    for extra in args.extra_rows:  # name=model:preset:json-overrides
        name, _, spec = extra.partition("=")
        model, preset, over = (spec.split(":", 2) + ["", ""])[:3]
        rows[name] = hsimap_runner(model, preset or None, json.loads(over or "{}"))
    return rows


def scores(pred: np.ndarray, scene: Scene, test: np.ndarray) -> dict[str, float]:
    """OA, AA, kappa (%) on test pixels."""
    from hsimap.metrics import accuracy_metrics, confusion_matrix

    k = len(scene.class_names)
    cm = confusion_matrix(scene.labels[test], pred[test], classes=list(range(k)))
    m = accuracy_metrics(cm, classes=list(range(k)))
    return {"oa": 100 * m.overall_accuracy, "aa": 100 * m.average_accuracy,
            "kappa": 100 * m.kappa}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--datasets", default="salinas_a,potsdam")
    p.add_argument("--protocols", default="random30,random5,disjoint")
    p.add_argument("--methods", default="svm-rbf,random-forest,spectral-mlp,dsn-fast,dsn-fast-1t")
    p.add_argument("--extra-rows", nargs="*", default=[], metavar="NAME=MODEL:PRESET:JSON")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds run are first-seed .. first-seed + seeds - 1 (to split many "
                        "folds over processes; --table merges their JSON files)")
    p.add_argument("--guard", type=int, default=8, help="disjoint guard band (px)")
    p.add_argument("--single-t", type=int, default=5, help="timestep of the 1-timestep row")
    p.add_argument("--denoiser-iters", type=int, default=0, help="override denoiser iterations")
    p.add_argument("--pretrain-steps", type=int, default=2000,
                   help="cnn-ddpm: steps of the trunk's diffusion pretraining")
    p.add_argument("--clf-val", choices=["guarded", "none"], default="guarded",
                   help="early-stopping validation of the neural classifiers: guarded blocks "
                        "from the training pixels, or none (fixed schedule, all pixels)")
    p.add_argument("--train-seed", type=int, default=0,
                   help="training-seed offset: the same folds, other initialisations "
                        "(denoiser included), for the seed-spread rows")
    p.add_argument("--denoiser", choices=["per-scene", "per-fold"], default="per-scene",
                   help="DiffSpectralNet rows: train the label-free denoiser once per scene "
                        "and reuse it for every fold (cheap; one draw shared by the folds), or "
                        "once per fold (independent folds: honest standard errors)")
    p.add_argument("--out", type=Path, default=Path("bench_accuracy.json"))
    p.add_argument("--blend-spatial", default="{}", metavar="JSON",
                   help="config overrides of blend-dsn-svm's DiffSpectralNet, e.g. "
                        "'{\"window\": 9}'")
    p.add_argument("--dump", type=Path, metavar="DIR",
                   help="blend rows: write each fold's class probabilities, masks and guide "
                        "here (for benchmarks/bench_smoothing.py)")
    p.add_argument("--table", type=Path, nargs="+", metavar="JSON",
                   help="only print the table of earlier runs' JSON files")
    p.add_argument("--versus", type=Path, metavar="JSON",
                   help="with --table: pair every row fold by fold with a variant of a "
                        "bench_smoothing.py --out file (see --variant)")
    p.add_argument("--variant", default="blend/r6x0.5",
                   help="the --versus variant (default: fast as stored, blend/r6x0.5)")
    p.add_argument("--base", metavar="METHOD",
                   help="with --table: the row every other row is paired with (default "
                        "svm-rbf; with --spread, dsn-fast)")
    p.add_argument("--spread", action="store_true",
                   help="with --table: the training-seed spread table instead (runs with "
                        "several --train-seed values, paired with dsn-fast)")
    args = p.parse_args(argv)
    if args.table:
        rows = [r for f in args.table for r in json.loads(f.read_text())]
        if args.versus:
            print_versus(rows, json.loads(args.versus.read_text()), args.variant)
        elif args.spread:
            print_spread(rows, args.base or "dsn-fast")
        else:
            print_table(rows, args.base or "svm-rbf")
        return
    VALIDATION["mode"] = args.clf_val
    DUMP["dir"] = args.dump
    TRAIN_SEED["offset"] = args.train_seed
    DENOISER["per_fold"] = args.denoiser == "per-fold"
    loaders = {"salinas_a": load_salinas_a, "potsdam": load_potsdam,
               "indian_pines": load_indian_pines}
    rows = method_table(args)
    results = []
    for ds in args.datasets.split(","):
        scene = loaders[ds](args.data)
        for proto in args.protocols.split(","):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                train, test, info = protocol_masks(scene, proto, seed, args.guard)
                PROTOCOL["name"] = proto
                for name in args.methods.split(","):
                    pred, t_fit, t_pred, extra = rows[name](scene, train, test, seed)
                    also = extra.pop("also", {})
                    for sub, p in [(name, pred), *((f"{name}/{k}", v) for k, v in also.items())]:
                        r = {"dataset": ds, "protocol": proto, "method": sub, "seed": seed,
                             "train_seed": args.train_seed, "clf_val": args.clf_val,
                             **({"denoiser": args.denoiser} if args.denoiser != "per-scene"
                                else {}),
                             "n_train": int(train.sum()), "n_test": int(test.sum()), **info,
                             **scores(p, scene, test), "train_s": t_fit, "predict_s": t_pred,
                             **extra}
                        results.append(r)
                        print(json.dumps(r), flush=True)
                    args.out.write_text(json.dumps(results, indent=1))
    print_table(results)


def paired(results: list[dict], key: tuple, base: str = "svm-rbf",
           field: str = "oa") -> tuple[float, float, int] | None:
    """Mean paired difference of ``key``'s method to ``base`` on the same fits (fold seed and
    training seed), its standard error (std / sqrt(n), n - 1 in the std) and the number of
    fits paired."""
    ds, proto, method = key
    mine = {(r["seed"], r.get("train_seed", 0)): r[field] for r in results
            if (r["dataset"], r["protocol"], r["method"]) == key}
    ref = {(r["seed"], r.get("train_seed", 0)): r[field] for r in results
           if (r["dataset"], r["protocol"], r["method"]) == (ds, proto, base)}
    seeds = sorted(set(mine) & set(ref))
    if method == base or not seeds:
        return None
    d = np.array([mine[s] - ref[s] for s in seeds])
    return float(d.mean()), standard_error(d), len(d)


def standard_error(d: np.ndarray) -> float:
    """Standard error of the mean of paired differences (n - 1 in the std; NaN for one)."""
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")


def mean_se_text(d: np.ndarray) -> str:
    """``"+1.23 ± 0.45"``: the mean paired difference and its standard error."""
    return f"{d.mean():+.2f} ± {standard_error(d):.2f}"


def print_spread(results: list[dict], base: str = "dsn-fast") -> None:
    """Training-seed spread: per (scene, protocol, method), each fold's OA under every
    ``train_seed`` run, the mean over folds of its range, and the paired difference to
    ``base`` over every (fold, training seed) both have."""
    oa = {(r["dataset"], r["protocol"], r["method"], r["seed"], r["train_seed"]): r["oa"]
          for r in results}
    print("\n| dataset | protocol | method | OA per fold (training seeds) | mean range "
          f"| - {base}, paired (fits) |")
    print("|---|---|---|---|---|---|")
    for ds, proto, method in dict.fromkeys(k[:3] for k in oa):
        mine = {k[3:]: v for k, v in oa.items() if k[:3] == (ds, proto, method)}
        folds = sorted({f for f, _ in mine})
        seeds = sorted({t for _, t in mine})
        cells, ranges = [], []
        for f in folds:
            vals = [mine.get((f, t)) for t in seeds]
            cells.append(f"{f}: " + " / ".join("-" if v is None else f"{v:.1f}" for v in vals))
            got = [v for v in vals if v is not None]
            if len(got) > 1:
                ranges.append(max(got) - min(got))
        d = np.array([v - oa[(ds, proto, base, *k)] for k, v in mine.items()
                      if (ds, proto, base, *k) in oa])
        pair = "" if method == base or len(d) < 2 else f"{mean_se_text(d)} ({len(d)})"
        spread = f"{np.mean(ranges):.2f}" if ranges else ""
        print(f"| {ds} | {proto} | {method} | {'; '.join(cells)} | {spread} | {pair} |")


def print_versus(results: list[dict], other: list[dict], variant: str) -> None:
    """Every (scene, protocol, method) of ``results`` paired fold by fold with ``variant``'s
    rows of a ``bench_smoothing.py --out`` file (``fast`` as stored: ``blend/r6x0.5``) and
    with SVM-RBF rows of ``results`` or ``other``."""
    ref = {(r["dataset"], r["protocol"], r["seed"]): r["oa"] for r in other
           if r.get("variant") == variant}
    svm = {(r["dataset"], r["protocol"], r["seed"]): r["oa"] for r in results
           if r["method"] == "svm-rbf"}
    print(f"\n| dataset | protocol | method | folds | OA | {variant} | - {variant}, paired "
          "(better/worse) | - svm-rbf, paired |")
    print("|---|---|---|---|---|---|---|---|")

    def pair(d: np.ndarray) -> str:
        return "" if len(d) < 2 else \
            f"{mean_se_text(d)} ({int((d > 0).sum())}/{int((d < 0).sum())})"

    for ds, proto, method in dict.fromkeys((r["dataset"], r["protocol"], r["method"])
                                           for r in results):
        mine = {r["seed"]: r["oa"] for r in results
                if (r["dataset"], r["protocol"], r["method"]) == (ds, proto, method)}
        folds = [f for f in sorted(mine) if (ds, proto, f) in ref]
        if method == "svm-rbf" or not folds:
            continue
        a = np.array([mine[f] for f in folds])
        b = np.array([ref[(ds, proto, f)] for f in folds])
        s = np.array([mine[f] - svm[(ds, proto, f)] for f in folds if (ds, proto, f) in svm])
        print(f"| {ds} | {proto} | {method} | {len(folds)} | {a.mean():.2f} | {b.mean():.2f} | "
              f"{pair(a - b)} | {pair(s)} |")


def print_table(results: list[dict], base: str = "svm-rbf") -> None:
    """Markdown table of mean +- std over folds, with the paired difference to ``base``."""
    print("\n| dataset | protocol | method | n train / test (guard px, removed) | OA | AA | "
          f"kappa | OA - {base.upper() if base == 'svm-rbf' else base}, paired (folds) | "
          "train s | predict s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keys = list(dict.fromkeys((r["dataset"], r["protocol"], r["method"]) for r in results))
    keys.sort(key=lambda k: (k[0], k[1]))  # stable: methods stay in run order
    for key in keys:
        rs = [r for r in results if (r["dataset"], r["protocol"], r["method"]) == key]

        def ms(f: str, rs: list[dict] = rs) -> str:
            v = np.array([r[f] for r in rs])
            return f"{v.mean():.2f} ± {v.std():.2f}"

        n = f"{np.mean([r['n_train'] for r in rs]):.0f} / {np.mean([r['n_test'] for r in rs]):.0f}"
        n += f" ({rs[0]['guard']}, {np.mean([r['removed'] for r in rs]):.0f})"
        pd = paired(results, key, base)
        diff = "" if pd is None else f"{pd[0]:+.2f} ± {pd[1]:.2f} ({pd[2]})"
        print(f"| {key[0]} | {key[1]} | {key[2]} ({len(rs)} folds) | {n} | {ms('oa')} | "
              f"{ms('aa')} | {ms('kappa')} | {diff} | "
              f"{np.mean([r['train_s'] for r in rs]):.1f} | "
              f"{np.mean([r['predict_s'] for r in rs]):.1f} |")


if __name__ == "__main__":
    main()
