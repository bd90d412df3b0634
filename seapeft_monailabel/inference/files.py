"""An image file in, a label file out: on the image's own grid, in its format, written atomically.

The image goes through the library's evaluation chain (``data.eval_transforms``: load, channel first,
RAS, the model's spacing if it has one, percentile intensity scaling), the :class:`.predictor.Predictor`
answers the whole volume, and MONAI's ``Invertd`` brings the logits back through the chain's
orientation and spacing (bilinear), as the app's infer task does, before the argmax; no resampling is
written here. MONAI's ``SaveImage`` writes the class map (uint8) with the image's affine: NIfTI in,
NIfTI out; NRRD in, NRRD out; MetaImage in, ``.mha`` out (:func:`..data.volumes.output_extension`).
The file is written into a staging folder beside its destination and moved into place with
``os.replace``, so an interrupted prediction leaves no half-written file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd, SaveImage

from ..atomic import staged_folder
from ..data.transforms import eval_transforms
from ..data.volumes import load_volume_pair, output_extension, split_volume_name
from .predictor import Predictor


def output_path(image: str | Path, out_dir: str | Path) -> Path:
    """Where the prediction of ``image`` goes: ``out_dir/<image id><the format's extension>``."""
    image = Path(image)
    split = split_volume_name(image.name)
    return Path(out_dir) / f"{split[0] if split else image.name}{output_extension(image)}"


def predict_image(predictor: Predictor, image: str | Path) -> MetaTensor:
    """Class map ``(1, X, Y, Z)`` uint8 of an image file on its own grid (a MetaTensor with its affine).

    Raises:
        ValueError / FileNotFoundError: naming the file, when it is missing, unreadable or not 3D.
    """
    load_volume_pair(image)
    chain = eval_transforms(predictor.info.get("spacing"), with_label=False)
    data = chain({"image": str(image)})
    data["pred"] = predictor.logits(data["image"])
    logits = Invertd(keys="pred", transform=chain, orig_keys="image", nearest_interp=False)(data)["pred"]
    classes = torch.as_tensor(logits).argmax(0, keepdim=True).to(torch.uint8)
    return MetaTensor(classes, meta=dict(logits.meta))


def predict_file(predictor: Predictor, image: str | Path, out_dir: str | Path) -> Path:
    """Predict ``image`` and write its label file at :func:`output_path` (atomically); returns that path.

    Raises:
        ValueError: naming the file, for an unreadable or unsupported image, or an output that would
            replace the image itself.
    """
    image, target = Path(image), output_path(image, out_dir)
    if target.resolve() == image.resolve():
        raise ValueError(f"{image}: the prediction would replace the image; give another --out folder")
    classes = predict_image(predictor, image)
    ext = output_extension(image)
    writer = SaveImage(output_ext=ext, output_dtype=np.uint8, resample=False, separate_folder=False,
                       print_log=False)
    with staged_folder(target.parent) as staging:
        writer(classes, filename=str(staging / target.name[: -len(ext)]))
    return target
