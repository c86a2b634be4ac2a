"""Stage synthesize: write the embedded default data set in ALL-IDB2's layout.

Params: base.seed, synthesize.*. Output: a flat folder of `ImNNN_L.tif` crops (L = 1 blast).
"""

import argparse
from pathlib import Path

from blastcell import params as P
from blastcell import synthetic
from blastcell.data import atomic_dir, write_image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    params = P.load(args.params)
    cfg = params.synthesize
    items = synthetic.dataset(cfg.n_blast, cfg.n_not_blast, cfg.image_size, params.base.seed)
    with atomic_dir(args.output) as tmp:
        for name, _label, image in items:
            write_image(tmp / name, image)
    P.trace("synthesize")


if __name__ == "__main__":
    main()
