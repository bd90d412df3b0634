"""Write phantom volumes of a site as a MONAI Label datastore (images, labels under labels/final).

Example (reproduces sample-data/):  seapeft generate --site target --count 8 --seed 2025 --out sample-data
"""

from __future__ import annotations

from ..data.datastore import write_sample_data


def add_arguments(parser) -> None:
    parser.add_argument("--site", default="target", help="source, target or target_ct (default target)")
    parser.add_argument("--count", type=int, default=8, help="number of subjects")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--unlabelled", type=int, default=2, help="how many of the last subjects get no label")
    parser.add_argument("--out", required=True, help="output folder")


def run(args) -> int:
    written = write_sample_data(args.out, site=args.site, n=args.count, seed=args.seed, n_unlabelled=args.unlabelled)
    print(f"wrote {args.count} {args.site} volumes ({len(written)} labelled) to {args.out}")
    return 0
