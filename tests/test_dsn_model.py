"""DiffSpectralNet: shapes, receptive field, tile invariance, classifier paths, round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from hsimap.errors import ConfigError
from hsimap.models.base import config_from_dict, get_spec
from hsimap.models.diffspectralnet import PRESETS, DiffSpectralNetConfig, build
from hsimap.models.diffspectralnet.classifier import WindowClassifier, gather_patches
from hsimap.models.diffspectralnet.fit import tile_windows
from hsimap.models.diffspectralnet.unet import (
    DenoisingUNet,
    layer_channels,
    padded_bands,
    receptive_radius,
)
from hsimap.models.untrained import fit_random_svm

FAST = DiffSpectralNetConfig(**PRESETS["fast"])
TINY = DiffSpectralNetConfig(**PRESETS["tiny"])
# A reduced SpectralDiff-style 3D config: same structure as ``paper``, tiny widths.
SMALL_3D = dataclasses.replace(
    DiffSpectralNetConfig(**PRESETS["paper"]), proj_bands=6, widths=(4, 8, 8),
    timesteps=(100,), layers=(1, 2), reduced_dims=6, window=3, token_dim=8, heads=2,
    head_dim=4, mlp_dim=8, head_hidden=8)

# The per-pixel denoiser with the unwhitened projection and the spectrum path (no smoothing:
# ``fast`` itself covers the smoothing with the SVM member).
PIXEL = dataclasses.replace(FAST, unet="pixel", proj_whiten=False, spectrum_path=True,
                            widths=(16, 16, 16), timesteps=(20, 50), smooth_radius=0)
# The same with the probability smoothing (and no SVM member, so it smooths the softmax).
SMOOTHED = dataclasses.replace(PIXEL, spectral_weight=0.0, smooth_radius=2, smooth_range=2.0)


def randomized(config: DiffSpectralNetConfig, n_bands: int, n_classes: int = 4, seed: int = 0):
    """A built model in eval mode with random (non-zero) projection, reducers and BN stats."""
    torch.manual_seed(seed)
    model = build(config, n_bands=n_bands, n_classes=n_classes)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith(("matrix", "weight", "bias")):
                buf.normal_(0, 0.3)
            elif name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    if model.spectral is not None:
        fit_random_svm(model.spectral, seed=seed, n_pixels=60)
    return model.eval()


def test_presets_validate_and_fast_is_default():
    spec = get_spec("diffspectralnet")
    assert spec.default_preset == "fast"
    for name in ("paper", "fast", "tiny"):
        cfg = spec.make_config(name)
        assert isinstance(cfg, DiffSpectralNetConfig)
    paper = spec.make_config("paper")
    assert (paper.unet, paper.widths, paper.diffusion_steps, paper.loss) == (
        "3d", (16, 32, 64, 128), 500, "l1")
    assert (paper.window, paper.depth, paper.heads, paper.head_dim) == (13, 2, 20, 64)


@pytest.mark.parametrize("override", [
    {"unet": "4d"}, {"window": 4}, {"timesteps": (5, 600)}, {"layers": (9,)},
    {"beta_start": 0.5, "beta_end": 0.1}, {"widths": (8,)}, {"crop": 0}, {"nope": 1},
    {"reducer": "umap"}, {"lr": -1.0}, {"timesteps": ()}, {"clf_ensemble": 0},
    {"spectral_calibration": "platt"},
])
def test_bad_configs_raise_config_error(override):
    with pytest.raises(ConfigError):
        get_spec("diffspectralnet").make_config("tiny", override)


def test_receptive_radius_matches_spectraldiff_extents():
    paper = DiffSpectralNetConfig(**PRESETS["paper"])
    # method.md: L0, L1, L2 reach 27, 35, 43 px; the full net 51 px.
    assert [2 * receptive_radius(paper, i) + 1 for i in range(4)] == [27, 35, 43, 51]
    assert layer_channels(paper, 1, 204) == 128 * 208 // 4
    assert layer_channels(paper, 2, 204) == 64 * 208 // 2
    assert layer_channels(paper, 0, 204) == 128 * 208 // 8  # duplicate stored once
    assert padded_bands(204, 3) == 208 and padded_bands(200, 3) == 200


@pytest.mark.parametrize("config", [FAST, SMALL_3D], ids=["2d", "3d"])
def test_unet_shapes(config):
    net = DenoisingUNet(config, n_in=6).eval()
    x = torch.randn(2, 6, 11, 13)
    t = torch.tensor([3, 400])
    assert net(x, t).shape == (2, 6, 11, 13)
    _, feats = net.run(x, t, taps=tuple(range(config.n_blocks + 1)))
    for i, f in feats.items():
        assert f.shape == (2, layer_channels(config, i, 6), 11, 13), i


@pytest.mark.parametrize("config", [FAST, SMALL_3D], ids=["2d", "3d"])
def test_unet_receptive_radius_is_exact(config):
    # Positive weights and inputs keep every ReLU open, so the support of the gradient of a
    # centre feature is the structural receptive field, corners included.
    net = DenoisingUNet(config, n_in=3).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.abs() * 0.1 + 0.01)
    size = 2 * receptive_radius(config, config.n_blocks) + 5
    c = size // 2
    for layer in range(config.n_blocks + 1):
        x = (torch.rand(1, 3, size, size) + 0.5).requires_grad_(True)
        _, feats = net.run(x, torch.tensor([5]), taps=(layer,))
        (grad,) = torch.autograd.grad(feats[layer][0, :, c, c].sum(), x)
        support = (grad.abs().sum(1)[0] > 0).nonzero() - c
        r = receptive_radius(config, layer)
        assert int(support.abs().max()) == r, layer
        assert len(support) == (2 * r + 1) ** 2, layer  # the whole square, corners too


@pytest.mark.parametrize("extra", [{}, {"pixel_path": True, "feature_dropout": 0.3},
                                   {"spectrum_path": True}],
                         ids=["plain", "pixel-path", "spectrum-path"])
def test_classifier_train_and_inference_paths_agree(extra):
    torch.manual_seed(0)
    clf = WindowClassifier(dataclasses.replace(TINY, depth=2, **extra), n_feat=5, n_classes=3,
                           n_bands=7)
    with torch.no_grad():
        clf.tokenizer[1].running_mean.normal_()
        clf.tokenizer[1].running_var.uniform_(0.5, 2)
    clf.eval()
    feats = torch.randn(1, 5, 17, 23)
    spectra = torch.randn(1, 7, 17, 23) if extra.get("spectrum_path") else None
    with torch.no_grad():
        dense = clf.forward_map(feats, chunk=50, spectra=spectra)  # several row chunks
    assert dense.shape == (1, 3, 17, 23)
    p = clf.k // 2 + 1
    padded = F.pad(feats[0], (p,) * 4)
    rows, cols = torch.meshgrid(torch.arange(17), torch.arange(23), indexing="ij")
    with torch.no_grad():
        per_pixel = clf.forward_patches(
            gather_patches(padded, rows.flatten(), cols.flatten(), clf.k + 2),
            None if spectra is None else spectra[0].flatten(1).T)
    assert torch.allclose(per_pixel.T.reshape(1, 3, 17, 23), dense, atol=1e-5)
    if spectra is not None:  # the centre spectrum really reaches the head
        with torch.no_grad():
            other = clf.forward_map(feats, chunk=50, spectra=spectra + 1.0)
        assert not torch.allclose(other, dense)
        with pytest.raises(ValueError, match="spectra"):
            clf.forward_map(feats)


@pytest.mark.parametrize("config,n_bands,ring",
                         [(FAST, 12, 0), (SMALL_3D, 10, 2), (PIXEL, 12, 0), (SMOOTHED, 12, 0)],
                         ids=["fast", "3d", "pixel", "smoothed"])
def test_receptive_field_is_exactly_the_halo(config, n_bands, ring):
    model = randomized(config, n_bands)
    halo = model.halo()
    size = 2 * halo + 5
    c = size // 2
    x = torch.randn(1, n_bands, size, size)
    base = model.forward_tile(x, origin=(7, 3))[0, :, c, c]

    dist = torch.maximum((torch.arange(size) - c).abs()[:, None],
                         (torch.arange(size) - c).abs()[None, :])  # Chebyshev distance

    def changed(where: torch.Tensor) -> bool:
        x2 = x.clone()
        x2[0, :, where] = torch.randn(n_bands, int(where.sum())) * 3.0
        return not torch.equal(model.forward_tile(x2, origin=(7, 3))[0, :, c, c], base)

    assert not changed(dist > halo)  # everything beyond the halo, rewritten at once
    # The outermost ring inside it. In a very narrow random net (the 3D one here, 4-8
    # channels) dead ReLUs can cut every path to the outermost ring, so that case checks the
    # outer ``ring + 1`` rings; test_unet_receptive_radius_is_exact checks the exact extent
    # (corners included) with all paths alive.
    assert changed((dist >= halo - ring) & (dist <= halo))
    assert changed((dist == halo // 2) & (torch.arange(size)[None, :] == c))
    assert changed((dist == halo - 2) & (torch.arange(size)[:, None] == c - halo + 2))


@pytest.mark.parametrize("config,n_bands", [
    (FAST, 12), (SMALL_3D, 10), (PIXEL, 12),
    (dataclasses.replace(PIXEL, noise_draws=3), 12), (SMOOTHED, 12)],
    ids=["fast", "3d", "pixel", "draws", "smoothed"])
def test_tiled_prediction_equals_whole_scene(config, n_bands):
    model = randomized(config, n_bands, n_classes=5, seed=1)
    h, w = 45, 52
    x = torch.randn(1, n_bands, h, w)
    x[..., 20:30, 40:55] = 0.0  # an invalid patch
    whole = model.forward_tile(x, origin=(0, 0))
    pasted = torch.full_like(whole, float("nan"))
    for pr, pc, cr, cc in tile_windows(h, w, 20, model.halo()):
        out = model.forward_tile(x[..., pr, pc], origin=(pr.start, pc.start))
        pasted[..., pr.start + cr.start:pr.start + cr.stop,
               pc.start + cc.start:pc.start + cc.stop] = out[..., cr, cc]
    assert not torch.isnan(pasted).any()
    assert torch.allclose(pasted, whole, atol=1e-5, rtol=0)
    assert torch.equal(pasted.argmax(1), whole.argmax(1))


WINDOWS = [(slice(7, 30), slice(11, 40)),  # inside: the smoothing's ring read, not computed
           (slice(0, 18), slice(30, 45)),  # on two tile edges
           (slice(None), slice(None)),  # the whole tile
           (slice(22, 23), slice(0, 1))]  # one pixel on an edge


@pytest.mark.parametrize("config,n_bands", [(FAST, 12), (SMALL_3D, 10), (PIXEL, 12),
                                            (SMOOTHED, 12)],
                         ids=["fast", "3d", "pixel", "smoothed"])
def test_forward_window_is_forward_tile_cropped(config, n_bands):
    """What tiled prediction calls: the logits of the write window alone, equal to the whole
    tile's there (the member, classifier and smoothing skip the rest of the tile)."""
    model = randomized(config, n_bands, n_classes=5, seed=3)
    x = torch.randn(1, n_bands, 33, 45)
    x[..., 5:12, 20:26] = 0.0  # an invalid patch
    whole = model.forward_tile(x, origin=(4, 9))
    for rows, cols in WINDOWS:
        got = model.forward_window(x, origin=(4, 9), window=(rows, cols))
        expected = whole[:, :, rows, cols]
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-5, rtol=0)
        assert torch.equal(got.argmax(1), expected.argmax(1))
    with pytest.raises(ValueError, match="step 1"):
        model.forward_window(x, origin=(0, 0), window=(slice(0, 10, 2), slice(None)))


def test_forward_window_skips_the_classifier_beyond_the_smoothing_ring(monkeypatch):
    """With the smoothing, the classifier runs on the window plus ``smooth_radius`` px only
    (that is where the time goes), not on the whole tile with its halo."""
    model = randomized(FAST, 12, n_classes=5, seed=3)
    regions = []
    forward_map = WindowClassifier.forward_map

    def spy(self, feats, chunk=1024, spectra=None, region=None):
        regions.append(region)
        return forward_map(self, feats, chunk, spectra, region)

    monkeypatch.setattr(WindowClassifier, "forward_map", spy)
    x = torch.randn(1, 12, 40, 40)
    model.forward_window(x, origin=(0, 0), window=(slice(10, 30), slice(0, 20)))
    r = FAST.smooth_radius
    assert regions == [(10 - r, 30 + r, 0, 20 + r)]


def test_build_load_state_dict_round_trip():
    model = randomized(SMALL_3D, 9, n_classes=3, seed=2)
    cfg = config_from_dict(DiffSpectralNetConfig, model.config_dict())
    assert cfg == SMALL_3D
    fresh = build(cfg, n_bands=9, n_classes=3)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.eval()
    x = torch.randn(1, 9, 20, 21)
    assert torch.equal(fresh.forward_tile(x, origin=(4, 5)), model.forward_tile(x, origin=(4, 5)))


def test_forward_tile_rejects_wrong_band_count():
    model = randomized(TINY, 6)
    with pytest.raises(ValueError):
        model.forward_tile(torch.zeros(1, 7, 8, 8), origin=(0, 0))


def test_build_rejects_foreign_config():
    with pytest.raises(ConfigError):
        build({"unet": "2d"}, n_bands=4, n_classes=2)


def test_ensemble_averages_member_probabilities_and_round_trips():
    config = dataclasses.replace(TINY, clf_ensemble=3)
    model = randomized(config, 6, n_classes=4, seed=3)
    members = model.classifier.each()
    assert len(members) == 3
    assert not torch.equal(members[0].head[-1].weight, members[1].head[-1].weight)
    feats = torch.randn(1, model.features.out_dims, 11, 13)
    with torch.no_grad():
        out = model.classifier.forward_map(feats)
        probs = torch.stack([m.forward_map(feats).softmax(1) for m in members]).mean(0)
    assert torch.allclose(out.exp(), probs, atol=1e-6)
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 11, 13), atol=1e-5)
    # A plain model keeps the weight names of checkpoints written before ensembles.
    assert any(k.startswith("classifier.tokenizer") for k in randomized(TINY, 6).state_dict())
    fresh = build(config_from_dict(DiffSpectralNetConfig, model.config_dict()), n_bands=6,
                  n_classes=4)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, 6, 15, 16)
    assert torch.equal(fresh.eval().forward_tile(x, origin=(2, 1)),
                       model.forward_tile(x, origin=(2, 1)))


def test_pixel_unet_has_no_spatial_context():
    assert all(receptive_radius(PIXEL, i) == 0 for i in range(PIXEL.n_blocks + 1))
    model = randomized(PIXEL, 12)
    assert model.halo() == 1 + PIXEL.window // 2  # tokenizer + window only


def test_unwhitened_projection_keeps_relative_variances():
    from hsimap.models.projection import SpectralProjection

    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([5.0, 2.0, 1.0, 0.5, 0.1, 0.05])
    pixels = torch.randn(4000, 6, generator=gen) * scales
    out = {}
    for whiten in (True, False):
        proj = SpectralProjection(6, 4, whiten=whiten)
        proj.fit(pixels)
        out[whiten] = proj(pixels.T.reshape(1, 6, 40, 100))[0].reshape(4, -1).var(1)
    assert torch.allclose(out[True], torch.ones(4), atol=0.05)
    var = out[False]
    assert abs(float(var.mean()) - 1.0) < 0.05
    ratio = var / var[0]
    expected = scales[:4] ** 2 / scales[0] ** 2
    assert torch.allclose(ratio, expected, rtol=0.1)


def test_dihedral_augmentation_gives_the_8_symmetries_and_keeps_the_centre():
    from hsimap.models.diffspectralnet.fit_classifier import dihedral

    patch = torch.randn(1, 3, 9, 9)
    outs = [dihedral(patch, torch.tensor([w])) for w in range(8)]
    assert torch.equal(outs[0], patch)
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8
    for o in outs:  # the centre pixel (whose spectrum the head sees) never moves
        assert torch.equal(o[..., 4, 4], patch[..., 4, 4])
        assert torch.equal(o.flatten(1).sort(1).values, patch.flatten(1).sort(1).values)
    batch = torch.randn(16, 2, 5, 5)
    which = torch.randint(0, 8, (16,))
    mixed = dihedral(batch, which)
    for i in range(16):
        assert torch.equal(mixed[i:i + 1], dihedral(batch[i:i + 1], which[i:i + 1]))


def test_patch_sampler_gives_the_patches_of_gather_and_dihedral():
    from hsimap.models.diffspectralnet.fit_classifier import PatchSampler, dihedral

    padded = torch.randn(5, 14, 17)  # (D, H + 2p, W + 2p) for 7 x 7 patches, p = 3
    rows, cols = torch.randint(0, 8, (40,)), torch.randint(0, 11, (40,))
    which = torch.randint(0, 8, (40,))
    sampler = PatchSampler(padded, 7)
    plain = gather_patches(padded, rows, cols, 7)
    assert torch.equal(sampler(rows, cols), plain)
    assert torch.equal(sampler(rows, cols, which), dihedral(plain, which))


def test_noise_draws_average_the_feature_maps_of_fixed_noise_fields():
    from hsimap.models.diffspectralnet.features import NOISE_DRAW_STRIDE

    two = randomized(dataclasses.replace(PIXEL, noise_draws=2, reducer="scale"), 12, seed=3)
    x = torch.randn(1, 12, 9, 11)
    maps = dict(two.features.raw_maps(x, (4, 5)))
    state = two.state_dict()
    singles = []
    for seed in (PIXEL.noise_seed, PIXEL.noise_seed + NOISE_DRAW_STRIDE):
        one = build(dataclasses.replace(PIXEL, noise_seed=seed, reducer="scale"), n_bands=12,
                    n_classes=4).eval()
        one.load_state_dict(state)
        singles.append(dict(one.features.raw_maps(x, (4, 5))))
    assert torch.equal(maps[0], singles[0][0])  # the clean projected spectra
    for k in range(1, len(maps)):
        assert torch.allclose(maps[k], (singles[0][k] + singles[1][k]) / 2, atol=1e-6)
        assert not torch.allclose(singles[0][k], singles[1][k])


def test_inside_the_model_shows_the_denoisers_error_per_timestep():
    """The panels per timestep give the window's noise-prediction error (against the noise
    prediction actually added, recomputed here from the position-keyed noise) beside
    predicting zero, and the amplified change denoising makes."""
    import re

    from hsimap.models.diffspectralnet.noise import position_noise
    from hsimap.models.diffspectralnet.panels import inspection_panels

    model = randomized(PIXEL, 12, seed=2)
    x = torch.randn(1, 12, 10, 9)
    panels = inspection_panels(model, x, origin=(3, 4))
    fx = model.features
    xp = fx.projection(x)
    for t in PIXEL.timesteps:
        titles = [k for k in panels if k.startswith(f"t={t}: noise error")]
        assert len(titles) == 1
        shown, zero = map(float, re.findall(r"\d+\.\d+", titles[0]))
        eps = position_noise((3, 4), tuple(xp.shape[1:]), t, PIXEL.noise_seed)[None]
        a = float(fx.process.abar[t])
        xt = a ** 0.5 * xp + (1 - a) ** 0.5 * eps
        with torch.no_grad():
            pred = fx.unet(xt, torch.full((1,), t))
        assert shown == pytest.approx(float((pred - eps).abs().mean()), abs=0.006)
        assert zero == pytest.approx(float(eps.abs().mean()), abs=0.006)
        diff = panels[f"t={t}: denoised - input, amplified"]
        assert diff.shape == (10, 9, 3) and 0 <= diff.min() and diff.max() <= 1
        assert diff.std() > 0.01  # a random denoiser changes the input
        assert panels[titles[0]].shape == (10, 9, 3)


@pytest.mark.parametrize("weight", [1.0, 1.5, -0.1, True])
def test_spectral_weight_outside_0_1_is_a_config_error(weight):
    from hsimap.errors import ConfigError

    with pytest.raises(ConfigError, match="spectral_weight"):
        get_spec("diffspectralnet").make_config("fast", {"spectral_weight": weight})


@pytest.mark.parametrize("field,value", [("smooth_radius", -1), ("smooth_radius", 1.5),
                                         ("smooth_radius", True), ("smooth_range", 0.0),
                                         ("smooth_range", -2.0), ("smooth_range", True),
                                         ("pseudo_epochs", -1), ("pseudo_epochs", 2.5),
                                         ("pseudo_confidence", 1.0),
                                         ("pseudo_confidence", -0.1), ("pseudo_ratio", 0.0),
                                         ("pseudo_ratio", True)])
def test_smoothing_settings_out_of_range_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=field):
        get_spec("diffspectralnet").make_config("fast", {field: value})
