"""Generate large benchmark scenes with realistic spectra from the bundled sample scene.

The sample EnMAP-like cube (224 bands, int16) is a mosaic of 64 x 64 px tiles with nodata
gaps. Its fully valid 64 x 64 blocks are laid out over the requested size at random; every
copy is randomly flipped/transposed and its spectra scaled by a smooth random gain (+-5 %)
plus a little noise, so the spectra stay realistic while no two copies are identical. Bands
that are nodata everywhere in the sample (flagged bad bands) stay nodata; every pixel of the
scene is valid. Written window by window (memory stays small), as a tiled,
pixel-interleaved GeoTIFF with the sample's CRS, pixel size and band metadata.

    python benchmarks/make_scenes.py --out /tmp/hsimap-bench --sizes 600,1800
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "potsdam_enmap.tif"
BLOCK = 64  # the sample's mosaic tiles
STRIP = 256  # rows written at a time


def make_scene(out: Path, *, height: int, width: int, seed: int = 0,
               compress: str = "deflate", sample: Path = SAMPLE) -> Path:
    """Write a ``height x width`` scene made of perturbed copies of ``sample`` to ``out``."""
    rng = np.random.default_rng(seed)
    with rasterio.open(sample) as src:
        base = src.read()  # (C, h, w) int16, small
        profile = src.profile.copy()
        band_tags = [{k: v for k, v in src.tags(i + 1).items()
                      if not k.startswith("STATISTICS_")} for i in range(src.count)]
        descriptions = src.descriptions
        nodata = src.nodata
    c = base.shape[0]
    empty_band = (base == nodata).all(axis=(1, 2))
    valid = (base[~empty_band] != nodata).all(axis=0)
    blocks = [base[:, r:r + BLOCK, q:q + BLOCK]
              for r in range(0, base.shape[1] - BLOCK + 1, BLOCK)
              for q in range(0, base.shape[2] - BLOCK + 1, BLOCK)
              if valid[r:r + BLOCK, q:q + BLOCK].all()]
    profile.update(height=height, width=width, tiled=True, blockxsize=256, blockysize=256,
                   interleave="pixel", BIGTIFF="IF_SAFER")
    if compress == "none":
        profile.pop("compress", None)
    else:
        profile.update(compress=compress, predictor=2)
    bands = np.linspace(0, 1, c, dtype=np.float32)[:, None, None]
    with rasterio.open(out, "w", **profile) as dst:
        for i, d in enumerate(descriptions):
            if d:
                dst.set_band_description(i + 1, d)
        for i, tags in enumerate(band_tags):
            dst.update_tags(i + 1, **tags)
        for r0 in range(0, height, STRIP):
            h = min(STRIP, height - r0)
            strip = np.empty((c, h, width), np.int16)
            for q0 in range(0, width, BLOCK):
                for b0 in range(0, h, BLOCK):
                    copy = blocks[rng.integers(len(blocks))]
                    if rng.random() < 0.5:
                        copy = copy[:, ::-1]
                    if rng.random() < 0.5:
                        copy = copy[:, :, ::-1]
                    if rng.random() < 0.5:
                        copy = copy.transpose(0, 2, 1)
                    bh, bw = min(BLOCK, h - b0), min(BLOCK, width - q0)
                    gain = 1 + 0.05 * (rng.uniform(-1, 1) + rng.uniform(-1, 1) * bands)
                    noisy = copy[:, :bh, :bw].astype(np.float32) * gain
                    noisy += rng.normal(0, 5, noisy.shape).astype(np.float32)
                    strip[:, b0:b0 + bh, q0:q0 + bw] = np.clip(noisy, -32767, 32767)
            strip[empty_band] = np.int16(nodata)
            dst.write(strip, window=Window(0, r0, width, h))
    return out


def main() -> None:
    """Command line: write ``scene_<N>.tif`` for every size N into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/hsimap-bench"),
                        help="folder to write into (outside the repository)")
    parser.add_argument("--sizes", default="600,1800",
                        help="comma-separated square sizes in pixels")
    parser.add_argument("--compress", default="deflate", choices=["deflate", "lzw", "none"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in args.sizes.split(",")):
        path = make_scene(args.out / f"scene_{size}.tif", height=size, width=size,
                          seed=args.seed, compress=args.compress)
        print(f"{path}  {size}x{size}  {path.stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
