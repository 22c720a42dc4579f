"""The registry of the classic hyperspectral benchmark scenes: names, classes, sources.

The benchmark scenes (Indian Pines, Pavia, Salinas, KSC, Botswana) are distributed as MATLAB
files holding a ``(rows, cols, bands)`` array and a ``(rows, cols)`` ground-truth map with
class ids (0 = unlabelled; -1 in the 8-bit Indian Pines copy), without any georeference.
Each entry here is data with its source; :mod:`hsimap.matconvert` turns such a pair into a
GeoTIFF and a GeoPackage.

Sources of the registry: class names and per-class pixel counts as published with the
scenes by the Grupo de Inteligencia Computacional (UPV/EHU) "Hyperspectral Remote Sensing
Scenes" page; the counts were re-checked against the ground-truth files described in
``/work/shared/data/README.md`` (whose sha256 sums are recorded below). Cube sha256 sums are
``None`` where no verified sum was at hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hsimap.classes import ClassTable
from hsimap.errors import LabelError

NOMINAL_GEOREFERENCE_NOTE = (
    "nominal georeference, not real coordinates: the source .mat file has no georeference; "
    "hsimap placed the image in the site's UTM zone with the published pixel size and a "
    "rounded origin near the site so GIS software can display it. Do not overlay it with "
    "real geodata."
)
GEOREFERENCE_TAG = "HSIMAP_GEOREFERENCE"
# Custom (unregistered) scenes: an arbitrary place in UTM 31N, clearly not a real location.
CUSTOM_EPSG = 32631
CUSTOM_ORIGIN = (500_000.0, 1_000_000.0)


@dataclass(frozen=True)
class BenchmarkClass:
    """One ground-truth class: id in the GT map, published name, labelled pixels."""

    value: int
    name: str
    pixels: int | None = None


@dataclass(frozen=True)
class BenchmarkDataset:
    """A benchmark scene as distributed in MATLAB files.

    Attributes
    ----------
    name
        Short identifier (``salinas_a``), used for output file names.
    title
        Human-readable name.
    cube_file, gt_file
        Usual file names of the cube and ground-truth ``.mat`` files.
    cube_key, gt_key
        Variable names inside those files.
    shape
        ``(rows, cols)`` of the scene.
    bands
        Number of bands in the cube file.
    sensor
        Instrument.
    gsd
        Ground sampling distance in metres (as published).
    location
        Where the scene was acquired.
    classes
        Ground-truth classes (ids as in the GT file).
    cube_sha256, gt_sha256
        sha256 of the usual distributed files, ``None`` where not verified.
    nominal_epsg, nominal_origin
        UTM zone and upper-left corner ``(x, y)`` in metres used for the nominal
        georeference (NOT the real position of the scene).
    notes
        Anything worth knowing (band removal, class-id conventions).
    unlabelled
        The ground-truth value that means "no class" (0 in most files); it becomes 0 (no
        polygon) in the outputs, never a class. 0 is unlabelled in every scene.
    source
        Where this copy of the files comes from (repository, commit, licence), if known.
    """

    name: str
    title: str
    cube_file: str
    gt_file: str
    cube_key: str
    gt_key: str
    shape: tuple[int, int]
    bands: int
    sensor: str
    gsd: float
    location: str
    classes: tuple[BenchmarkClass, ...]
    cube_sha256: str | None
    gt_sha256: str | None
    nominal_epsg: int
    nominal_origin: tuple[float, float]
    notes: str = ""
    unlabelled: int = 0
    source: str = ""

    @property
    def class_table(self) -> ClassTable:
        """The classes as an hsimap :class:`~hsimap.classes.ClassTable`."""
        return ClassTable.from_pairs([(c.value, c.name) for c in self.classes])

    @property
    def labelled_pixels(self) -> int | None:
        """Total labelled pixels, when every class count is known."""
        counts = [c.pixels for c in self.classes]
        return None if any(n is None for n in counts) else sum(n or 0 for n in counts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name, "title": self.title, "cube_file": self.cube_file,
            "gt_file": self.gt_file, "cube_key": self.cube_key, "gt_key": self.gt_key,
            "shape": list(self.shape), "size": {"width": self.shape[1], "height": self.shape[0]},
            "bands": self.bands, "sensor": self.sensor,
            "gsd_m": self.gsd, "location": self.location,
            "classes": [{"value": c.value, "name": c.name, "pixels": c.pixels}
                        for c in self.classes],
            "cube_sha256": self.cube_sha256, "gt_sha256": self.gt_sha256,
            "nominal_epsg": self.nominal_epsg, "nominal_origin": list(self.nominal_origin),
            "notes": self.notes, "unlabelled_value": self.unlabelled, "source": self.source,
        }


def _classes(names: Sequence[str], pixels: Sequence[int], values: Sequence[int] | None = None,
             ) -> tuple[BenchmarkClass, ...]:
    ids = list(values) if values is not None else list(range(1, len(names) + 1))
    return tuple(BenchmarkClass(v, n, p) for v, n, p in zip(ids, names, pixels, strict=True))


_SALINAS_NAMES = (
    "Brocoli_green_weeds_1", "Brocoli_green_weeds_2", "Fallow", "Fallow_rough_plow",
    "Fallow_smooth", "Stubble", "Celery", "Grapes_untrained", "Soil_vinyard_develop",
    "Corn_senesced_green_weeds", "Lettuce_romaine_4wk", "Lettuce_romaine_5wk",
    "Lettuce_romaine_6wk", "Lettuce_romaine_7wk", "Vinyard_untrained",
    "Vinyard_vertical_trellis",
)
_SALINAS_PIXELS = (2009, 3726, 1976, 1394, 2678, 3959, 3579, 11271, 6203, 3278, 1068, 1927,
                   916, 1070, 7268, 1807)
_SALINAS_A_IDS = (1, 10, 11, 12, 13, 14)
# The SSGA copy of Indian Pines numbers the classes alphabetically; EHU ids for reference.
_IP8_CLASSES = (  # (name, pixels in Label_M_IP_16.mat, EHU id)
    ("Alfalfa", 54, 1), ("Buildings-Grass-Trees-Drives", 380, 15), ("Corn", 234, 4),
    ("Corn-mintill", 834, 3), ("Corn-notill", 1434, 2), ("Grass-pasture-mowed", 26, 7),
    ("Grass-pasture", 497, 5), ("Grass-trees", 747, 6), ("Hay-windrowed", 489, 8),
    ("Oats", 20, 9), ("Soybean-clean", 614, 12), ("Soybean-mintill", 2468, 11),
    ("Soybean-notill", 968, 10), ("Stone-Steel-Towers", 95, 16), ("Wheat", 212, 13),
    ("Woods", 1294, 14),
)

DATASETS: tuple[BenchmarkDataset, ...] = (
    BenchmarkDataset(
        name="indian_pines", title="Indian Pines (corrected)",
        cube_file="Indian_pines_corrected.mat", gt_file="Indian_pines_gt.mat",
        cube_key="indian_pines_corrected", gt_key="indian_pines_gt",
        shape=(145, 145), bands=200, sensor="AVIRIS", gsd=20.0,
        location="Indian Pines test site, north-western Indiana, USA",
        classes=_classes(
            ("Alfalfa", "Corn-notill", "Corn-mintill", "Corn", "Grass-pasture", "Grass-trees",
             "Grass-pasture-mowed", "Hay-windrowed", "Oats", "Soybean-notill", "Soybean-mintill",
             "Soybean-clean", "Wheat", "Woods", "Buildings-Grass-Trees-Drives",
             "Stone-Steel-Towers"),
            (46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265, 386, 93)),
        cube_sha256=None,
        gt_sha256="65c4687a8ab04f6da4789799bc3bc4f6e88bccac3ed6a2e6ae367e5e6b9e429c",
        nominal_epsg=32616, nominal_origin=(500_000.0, 4_480_000.0),
        notes="220 AVIRIS bands minus 20 water-absorption bands (104-108, 150-163, 220).",
    ),
    BenchmarkDataset(
        name="indian_pines_8bit", title="Indian Pines (200 bands, 8-bit per band, SSGA copy)",
        cube_file="IP_200_M.mat", gt_file="Label_M_IP_16.mat",
        cube_key="data_M", gt_key="label_M",
        shape=(145, 145), bands=200, sensor="AVIRIS", gsd=20.0,
        location="Indian Pines test site, north-western Indiana, USA",
        classes=_classes([c[0] for c in _IP8_CLASSES], [c[1] for c in _IP8_CLASSES]),
        cube_sha256="8bfb849c31ce3697b5317447064a17f146ae93f1849c07b7e9e5bbd79966315e",
        gt_sha256="aa0181d0aaa534a153eb1aaecac3e61a926bb21c017f9a837cc1f763bfa1cfec",
        nominal_epsg=32616, nominal_origin=(500_000.0, 4_480_000.0),
        notes="The usual 200 corrected bands, but each band stretched to 0..255 on its own "
              "and stored as uint8 by the maker of this copy (radiance not recoverable; "
              "spectral shape known only up to a per-band gain and offset). Ground truth: "
              "-1 = unlabelled, classes numbered alphabetically (not the EHU ids; EHU id of "
              "classes 1..16: " + ", ".join(str(c[2]) for c in _IP8_CLASSES) + "), 10,366 "
              "labelled pixels (EHU copy: 10,249, same fields with slightly different edges).",
        unlabelled=-1,
        source="GitHub hszhaohs/SSGA (Zhao et al., IEEE TGRS 59(11), 2021), data/IP_200_M.mat "
               "and data/Label_M_IP_16.mat at commit "
               "f334299d149650303d8f22746bbbeebd819fc8f0, MIT licence; the scene is the "
               "public Purdue/AVIRIS Indian Pines data set (cite Baumgardner, Biehl and "
               "Landgrebe, 2015, Purdue University Research Repository).",
    ),
    BenchmarkDataset(
        name="pavia_university", title="Pavia University",
        cube_file="PaviaU.mat", gt_file="PaviaU_gt.mat", cube_key="paviaU", gt_key="paviaU_gt",
        shape=(610, 340), bands=103, sensor="ROSIS-03", gsd=1.3,
        location="University of Pavia, Italy",
        classes=_classes(
            ("Asphalt", "Meadows", "Gravel", "Trees", "Painted metal sheets", "Bare Soil",
             "Bitumen", "Self-Blocking Bricks", "Shadows"),
            (6631, 18649, 2099, 3064, 1345, 5029, 1330, 3682, 947)),
        cube_sha256=None,
        gt_sha256="23f6a426928f9b32984adffe659e29f554f9fb6c93b5a107528d308d5087a829",
        nominal_epsg=32632, nominal_origin=(510_000.0, 5_000_000.0),
        notes="115 ROSIS bands minus 12 noisy bands.",
    ),
    BenchmarkDataset(
        name="pavia_centre", title="Pavia Centre",
        cube_file="Pavia.mat", gt_file="Pavia_gt.mat", cube_key="pavia", gt_key="pavia_gt",
        shape=(1096, 715), bands=102, sensor="ROSIS-03", gsd=1.3,
        location="Pavia city centre, Italy",
        classes=_classes(
            ("Water", "Trees", "Asphalt", "Self-Blocking Bricks", "Bitumen", "Tiles", "Shadows",
             "Meadows", "Bare Soil"),
            (65971, 7598, 3090, 2685, 6584, 9248, 7287, 42826, 2863)),
        cube_sha256=None,
        gt_sha256="7eb54ab81b404dd3ae572e6d0ec211595029e5a847bec2cfb8f9e72d07066b69",
        nominal_epsg=32632, nominal_origin=(510_000.0, 5_010_000.0),
        notes="Columns without information removed by the distributor (715 of 1096 kept).",
    ),
    BenchmarkDataset(
        name="salinas", title="Salinas (corrected)",
        cube_file="Salinas_corrected.mat", gt_file="Salinas_gt.mat",
        cube_key="salinas_corrected", gt_key="salinas_gt",
        shape=(512, 217), bands=204, sensor="AVIRIS", gsd=3.7,
        location="Salinas Valley, California, USA",
        classes=_classes(_SALINAS_NAMES, _SALINAS_PIXELS),
        cube_sha256=None,
        gt_sha256="ecfab4d31ef5553f097943235d8ea502038eb4a2067b2ad10b33e37c949955e2",
        nominal_epsg=32610, nominal_origin=(620_000.0, 4_060_000.0),
        notes="224 AVIRIS bands minus 20 water-absorption bands (108-112, 154-167, 224).",
    ),
    BenchmarkDataset(
        name="salinas_a", title="Salinas-A (corrected)",
        cube_file="SalinasA_corrected.mat", gt_file="SalinasA_gt.mat",
        cube_key="salinasA_corrected", gt_key="salinasA_gt",
        shape=(83, 86), bands=204, sensor="AVIRIS", gsd=3.7,
        location="Salinas Valley, California, USA (sub-scene of Salinas)",
        classes=_classes([_SALINAS_NAMES[i - 1] for i in _SALINAS_A_IDS],
                         (391, 1343, 616, 1525, 674, 799), _SALINAS_A_IDS),
        cube_sha256="d75684ed3ab71a1024cee0f9db9061f50a3523a92ff5edfbbb1eed976b9f1721",
        gt_sha256="17814c1d3296c0e29b27f320f2c4174d2a68adb87e376abe78f02923e2c2e454",
        nominal_epsg=32610, nominal_origin=(620_000.0, 4_060_000.0),
        notes="Sub-scene of Salinas; the ground truth keeps the global Salinas class ids "
              "1, 10, 11, 12, 13, 14.",
    ),
    BenchmarkDataset(
        name="ksc", title="Kennedy Space Center (KSC)",
        cube_file="KSC.mat", gt_file="KSC_gt.mat", cube_key="KSC", gt_key="KSC_gt",
        shape=(512, 614), bands=176, sensor="AVIRIS", gsd=18.0,
        location="Kennedy Space Center, Florida, USA",
        classes=_classes(
            ("Scrub", "Willow swamp", "Cabbage palm hammock", "Cabbage palm/oak hammock",
             "Slash pine", "Oak/broadleaf hammock", "Hardwood swamp", "Graminoid marsh",
             "Spartina marsh", "Cattail marsh", "Salt marsh", "Mud flats", "Water"),
            (761, 243, 256, 252, 161, 229, 105, 431, 520, 404, 419, 503, 927)),
        cube_sha256=None,
        gt_sha256="a1d6ab9293691006bd4d9742d1a1e1c141b1aaa5fbc5fa128b33c1d09038510b",
        nominal_epsg=32617, nominal_origin=(530_000.0, 3_160_000.0),
        notes="224 AVIRIS bands minus water-absorption and low-SNR bands.",
    ),
    BenchmarkDataset(
        name="botswana", title="Botswana",
        cube_file="Botswana.mat", gt_file="Botswana_gt.mat", cube_key="Botswana",
        gt_key="Botswana_gt", shape=(1476, 256), bands=145, sensor="EO-1 Hyperion", gsd=30.0,
        location="Okavango Delta, Botswana",
        classes=_classes(
            ("Water", "Hippo grass", "Floodplain grasses 1", "Floodplain grasses 2", "Reeds",
             "Riparian", "Firescar", "Island interior", "Acacia woodlands", "Acacia shrublands",
             "Acacia grasslands", "Short mopane", "Mixed mopane", "Exposed soils"),
            (270, 101, 251, 215, 269, 269, 259, 203, 314, 248, 305, 181, 268, 95)),
        cube_sha256=None,
        gt_sha256="668394905e10e629c16584bfd02b0f533b96d6ba18a63274a94ff3a77126a887",
        nominal_epsg=32734, nominal_origin=(710_000.0, 7_840_000.0),
        notes="242 Hyperion bands minus uncalibrated and noisy bands.",
    ),
)


def get_dataset(name: str) -> BenchmarkDataset:
    """The registry entry called ``name`` (case-insensitive)."""
    for ds in DATASETS:
        if ds.name == name.lower():
            return ds
    raise LabelError(f"unknown benchmark dataset {name!r}",
                     fix=f"known: {', '.join(d.name for d in DATASETS)}")
