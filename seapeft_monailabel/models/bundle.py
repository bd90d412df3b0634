"""A plain network as a MONAI bundle, for MONAI Deploy, the MONAI Model Zoo tools and anything that reads bundles.

The folder written by :func:`write_monai_bundle`::

    configs/metadata.json    MONAI's bundle metadata: versions, labels (``channel_def``), input and output format
    configs/inference.json   network_def (MONAI's own UNet or SwinUNETR), this project's preprocessing, the
                             sliding window the model was trained with, and an evaluator that writes NIfTI labels
    models/model.pt          the state dict (tensors only: it loads with ``torch.load(weights_only=True)``)

Run it with MONAI alone: ``python -m monai.bundle run --config_file <b>/configs/inference.json
--bundle_root <b> --dataset_dir <images> --output_dir <labels>``. The preprocessing is the library's
evaluation chain (RAS, the model's spacing when it has one, the 0.5..99.5 percentiles to [0, 1]), the
window blends with a Gaussian at overlap 0.25, and the logits are inverted onto the image's grid before the
argmax, so the bundle answers as ``seapeft predict`` does.

Only what MONAI's constructors can express is accepted: norms that merging gave an affine (SSF) become
``["instance", {"affine": true}]`` (the other norms get the identity affine), and a tensor the plain network
has no place for (a bias merged onto a convolution built without one) is an error naming it, as is any
difference between the bundle's network and the given one on a test input.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic import staged_folder
from ..data.transforms import INTENSITY_PERCENTILES
from .factory import NetworkSpec

BUNDLE_CONFIGS = ("configs/metadata.json", "configs/inference.json")
BUNDLE_WEIGHTS = "models/model.pt"
#: Largest |difference| of logits allowed between the bundle's network and the network it was made from.
MAX_LOGIT_DIFFERENCE = 1e-4
_IMAGE_PATTERNS = ("*.nii.gz", "*.nii", "*.nrrd", "*.mha", "*.mhd")
_NORMS = (nn.InstanceNorm3d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


class BundleExportError(ValueError):
    """A network that a MONAI bundle cannot hold exactly; the message names the tensors or the difference."""


def network_def(spec: NetworkSpec, affine_norms: bool = False) -> dict:
    """The bundle's ``network_def``: MONAI's constructor of ``spec``'s network (as :func:`.build_network`
    builds it), with affine instance norms when ``affine_norms``."""
    norm = ["instance", {"affine": True}] if affine_norms else "instance"
    if spec.name == "swinunetr":
        return {"_target_": "SwinUNETR", "spatial_dims": 3, "in_channels": spec.in_channels,
                "out_channels": spec.out_channels, "feature_size": spec.feature_size, "use_v2": spec.use_v2,
                "norm_name": norm}
    return {"_target_": "UNet", "spatial_dims": 3, "in_channels": spec.in_channels, "out_channels": spec.out_channels,
            "channels": list(spec.channels), "strides": list(spec.strides), "num_res_units": spec.num_res_units,
            "norm": norm}


def _has_norm_affine(network: nn.Module) -> bool:
    return any(isinstance(m, nn.InstanceNorm3d) and m.affine for m in network.modules())


def _build(definition: dict) -> nn.Module:
    """The network of a ``network_def``, built the way ``monai.bundle`` builds it."""
    from monai.bundle import ConfigParser

    return ConfigParser({"network_def": definition}).get_parsed_content("network_def")


def bundle_state_dict(network: nn.Module, definition: dict) -> dict[str, torch.Tensor]:
    """``network``'s tensors as the state dict of ``definition``'s network: norm affines the merge did not
    create filled with the identity (weight 1, bias 0).

    Raises:
        BundleExportError: ``network`` holds tensors the bundle's network has no place for, or lacks others.
    """
    target = _build(definition)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in network.state_dict().items()}
    modules = dict(target.named_modules())
    for key, value in target.state_dict().items():
        path, _, attr = key.rpartition(".")
        if key not in state and isinstance(modules.get(path), _NORMS) and attr in ("weight", "bias"):
            state[key] = torch.ones_like(value) if attr == "weight" else torch.zeros_like(value)
    expected = set(target.state_dict())
    extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
    if extra or missing:
        raise BundleExportError(f"the network does not fit MONAI's {definition['_target_']} "
                                f"({', '.join(filter(None, [extra and f'no place for {extra[:5]}', missing and f'lacks {missing[:5]}']))}); "
                                f"only networks MONAI's constructor can build are exported as bundles")
    return state


def _check_same_answer(network: nn.Module, definition: dict, state: dict, roi_size) -> float:
    """Largest |logit difference| between ``network`` and the bundle's network on one seeded window."""
    target = _build(definition)
    target.load_state_dict(state, strict=True)
    x = torch.rand(1, definition["in_channels"], *roi_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (target.eval()(x) - network.eval()(x)).abs().max().item()
    if not difference <= MAX_LOGIT_DIFFERENCE:
        raise BundleExportError(f"the bundle's {definition['_target_']} answers differently from the model "
                                f"(largest logit difference {difference:.3g} > {MAX_LOGIT_DIFFERENCE})")
    return difference


def inference_config(definition: dict, roi_size, spacing) -> dict:
    """``configs/inference.json``: images of ``dataset_dir`` in, one ``<id>_seg.nii.gz`` label each in ``output_dir``."""
    keys = "image"
    preprocessing = [{"_target_": "LoadImaged", "keys": keys, "image_only": True},
                     {"_target_": "EnsureChannelFirstd", "keys": keys},
                     {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS"}]
    if spacing:
        preprocessing.append({"_target_": "Spacingd", "keys": keys, "pixdim": [float(s) for s in spacing],
                              "mode": "bilinear"})
    lo, hi = INTENSITY_PERCENTILES
    preprocessing.append({"_target_": "ScaleIntensityRangePercentilesd", "keys": keys, "lower": lo, "upper": hi,
                          "b_min": 0.0, "b_max": 1.0, "clip": True})
    patterns = ", ".join(repr(p) for p in _IMAGE_PATTERNS)
    return {
        "imports": ["$import glob", "$import os", "$import numpy"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/data'",
        "datalist": f"$sorted(set(sum([glob.glob(os.path.join(@dataset_dir, p)) for p in ({patterns})], [])))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": definition,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(roi_size), "sw_batch_size": 1,
                    "overlap": 0.25, "mode": "gaussian"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
             "output_dtype": "$numpy.uint8", "resample": False, "separate_folder": False, "print_log": False}]},
        "handlers": [{"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                      "load_dict": {"model": "@network"}, "strict": True, "map_location": "@device"}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": False},
        "initialize": ["$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }


def bundle_metadata(spec: NetworkSpec, labels: dict[str, int], roi_size, spacing, description: str,
                    provenance: dict) -> dict:
    """``configs/metadata.json`` in MONAI's bundle metadata layout; ``provenance`` goes under ``seapeft``."""
    import monai

    channels = {str(index): name for name, index in sorted(labels.items(), key=lambda kv: kv[1])}
    return {
        "version": "1.0.0",
        "changelog": {"1.0.0": "exported by seapeft adapters export --bundle"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {},
        "name": f"seapeft {spec.name} segmentation",
        "task": "3D segmentation of " + ", ".join(n for n in channels.values() if n != "background"),
        "description": description,
        "authors": "seapeft-monailabel",
        "copyright": "the site that trained it",
        "data_type": "nifti, nrrd, metaimage",
        "image_classes": f"{spec.in_channels} channel image, intensities scaled from their "
                         f"{INTENSITY_PERCENTILES[0]}..{INTENSITY_PERCENTILES[1]} percentiles to [0, 1]",
        "label_classes": ", ".join(f"{i}: {n}" for i, n in channels.items()),
        "pred_classes": ", ".join(f"{i}: {n}" for i, n in channels.items()),
        "intended_use": "research; validate on the site's own volumes before any clinical use",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": "CT or MR",
                                 "num_channels": spec.in_channels, "spatial_shape": list(roi_size), "dtype": "float32",
                                 "value_range": [0, 1], "is_patch_data": True,
                                 "channel_def": {str(c): "image" for c in range(spec.in_channels)}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": len(labels),
                                 "spatial_shape": list(roi_size), "dtype": "float32", "value_range": [],
                                 "is_patch_data": True, "channel_def": channels}},
        },
        "seapeft": {**provenance, "spacing": list(spacing) if spacing else None,
                    "exported_on": f"{platform.system()} {platform.machine()}, python {platform.python_version()}"},
    }


def write_monai_bundle(folder: str | Path, network: nn.Module, spec: NetworkSpec, labels: dict[str, int],
                       roi_size, spacing=None, description: str = "", provenance: dict | None = None) -> dict:
    """Write ``network`` (a plain MONAI network of ``spec``, every unit merged) as a MONAI bundle in ``folder``.

    The bundle appears whole (built in a staging folder beside it, then moved in) or not at all.

    Args:
        network: maps ``(B, C_in, *roi_size)`` to ``(B, len(labels), *roi_size)`` logits.
        roi_size: the sliding window (the patch size the model was trained with).
        spacing: resampling in mm, or None (each image's own spacing).
        provenance: plain values recorded under ``seapeft`` in metadata.json (base SHA-256, units, run).

    Returns:
        ``{"folder", "files": {relative path: bytes}, "max_logit_difference"}``.

    Raises:
        BundleExportError: the network is not expressible as MONAI's constructor builds it, or
            ``folder`` exists and is not empty.
    """
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BundleExportError(f"{folder}: exists and is not an empty folder; give a new bundle folder")
    definition = network_def(spec, affine_norms=_has_norm_affine(network))
    state = bundle_state_dict(network, definition)
    difference = _check_same_answer(network, definition, state, roi_size)
    documents = {"configs/inference.json": inference_config(definition, roi_size, spacing),
                 "configs/metadata.json": bundle_metadata(spec, labels, roi_size, spacing, description,
                                                          provenance or {})}
    with staged_folder(folder.parent) as staging:
        built = staging / folder.name
        for name, document in documents.items():
            (built / name).parent.mkdir(parents=True, exist_ok=True)
            (built / name).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        (built / BUNDLE_WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, built / BUNDLE_WEIGHTS)
        if folder.is_dir():
            folder.rmdir()  # empty (checked above): the staged bundle takes its place
    files = {name: (folder / name).stat().st_size for name in (*BUNDLE_CONFIGS, BUNDLE_WEIGHTS)}
    return {"folder": str(folder), "files": files, "max_logit_difference": difference}
