"""hsimap's command-line interface (installed as ``hsimap.cli``): a thin layer over the library."""
