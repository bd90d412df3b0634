"""Segment images with a model: one label file per image, on the image's own grid and in its format.

Runs the predictor the app serves (sliding window at the model's patch size, Gaussian blending):
OpenVINO when the model was exported (`seapeft quantize` writes serving.json beside model.pt) and the
model runs on the CPU or INT8 is asked for, else PyTorch; what answers, and why when it is not what was
asked for, is printed. NIfTI in gives NIfTI out, NRRD gives NRRD, MetaImage gives .mha; each file is
named by the image's id and written atomically (an interrupted run leaves no half-written file).
Example:
  seapeft predict --model sample-data/base_model/model.pt --images sample-data --out runs/predictions
"""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ..data.volumes import FORMATS, find_volumes
from ..quant.choose import PRECISIONS, RUNTIMES, load_predictor
from ..inference.files import predict_file


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="a seapeft model file (base model or a run's model.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help=f"one image ({FORMATS})")
    source.add_argument("--images", help="a folder of images (its labels/ sub-folder is not read)")
    parser.add_argument("--out", required=True, help="folder for the label files (named by the images' ids)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 (default) or int8 (OpenVINO)")
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES,
                        help="auto (default: OpenVINO when exported and on the CPU or for INT8), torch or openvino")
    parser.add_argument("--device", default="auto", help="PyTorch's device: cpu, cuda, cuda:1 or auto (default)")
    parser.add_argument("--threads", type=int, help="OpenVINO CPU threads (default: all cores)")


def _images(args) -> list[Path]:
    if args.image:
        return [Path(args.image)]
    folder = Path(args.images)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: image folder not found")
    images = list(find_volumes(folder).values())
    if not images:
        raise ValueError(f"{folder}: no images ({FORMATS})")
    return images


def run(args) -> int:
    model = Path(args.model)
    if not model.is_file():
        raise FileNotFoundError(f"{model}: model file not found")
    images = _images(args)
    predictor = load_predictor(model, args.precision, args.runtime, device=args.device, threads=args.threads)
    answering = predictor.describe()
    print(f"{model}: {answering['runtime']} {answering['precision']} answers, window "
          f"{'x'.join(map(str, answering['roi_size']))}" + (f" ({predictor.note})" if predictor.note else ""))
    if args.image:
        print(f"wrote {predict_file(predictor, images[0], args.out)}")
        return 0
    failed = []
    for image in tqdm(images, desc="predict", unit="image"):
        try:
            written = predict_file(predictor, image, args.out)
        except (ValueError, FileNotFoundError) as err:
            failed.append(str(err))
            tqdm.write(f"seapeft predict: skipped: {err}")
            continue
        tqdm.write(f"wrote {written}")
    if failed:
        raise ValueError(f"{len(failed)} of {len(images)} images could not be segmented: {'; '.join(failed)}")
    return 0
