"""Post-training INT8 quantization of an OpenVINO model with NNCF, on patches of labelled volumes.

What stays FP32 (NNCF ignored scope), and why:

- attention-score matmuls (``q k^T`` and ``attn v``, both operands activations), fused attention and
  softmax: quantizing them costs time and accuracy (reference/int8_cpu_measured.md);
- normalisations (InstanceNorm, LayerNorm: OpenVINO ``MVN``): their inputs have a wide range;
- elementwise ``Add`` and ``Multiply`` (residual sums, biases, the attention scale and score biases):
  INT8 pays off in the weighted ops; NNCF would otherwise put quantize/dequantize pairs on both
  inputs of every residual sum and, in SwinUNETR's shifted blocks, on the attention scores themselves,
  elementwise work over whole feature maps that costs more than INT8 saves (docs/BENCHMARKS.md, INT8
  section). Only the inputs of convolutions and weighted matmuls are quantized, which is also where
  :mod:`.qat` places its fake quantization;
- units left unmerged (adapters with a non-linearity, ops under ``peft_units``): a handful of
  parameters that carry the adaptation, cheap to keep exact;
- optionally the first and last convolutions (the 1-channel input and the logits), see
  :func:`quantize_ptq`; the caller tries both and keeps what the Dice says.

Weights are quantized symmetrically per output channel, activations symmetrically per tensor
(NNCF's ``PERFORMANCE`` preset). The ``MIXED`` preset (asymmetric activations) leaves every transposed
convolution FP32 in OpenVINO's CPU plugin (measured on MONAI UNet: 15 of 18 convolutions INT8 against
18 of 18), which costs the UNet decoder its speed-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import nncf
import numpy as np
import openvino as ov

from ..data.transforms import train_transforms
from . import graph

#: Op types always kept FP32.
KEEP_FP32_TYPES = graph.NORM_TYPES + ("Softmax", "ScaledDotProductAttention", "Add", "Multiply")
#: Ops of units left unmerged (their module path contains the registry's unit container).
UNMERGED_PATTERN = r".*\.peft_units\..*"


def calibration_patches(datalist: Sequence[dict], roi_size: Sequence[int], count: int, spacing=None,
                        seed: int = 0) -> list[np.ndarray]:
    """``count`` patches ``(1, C, *roi_size)`` float32, drawn from the labelled volumes in turn.

    Patches are centred on foreground and background equally often (MONAI ``RandCropByPosNegLabeld``),
    after the same preprocessing as training and inference, without augmentation.
    """
    items = [dict(i) for i in datalist if i.get("label")]
    if not items:
        raise ValueError("calibration needs at least one labelled volume ({'image': ..., 'label': ...})")
    per_volume = max(1, -(-count // len(items)))
    chain = train_transforms(roi_size, spacing, num_samples=per_volume, augment=False, seed=seed)
    patches: list[np.ndarray] = []
    for item in items:
        for sample in chain(item):
            patches.append(sample["image"][None].numpy().astype(np.float32))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(patches))[:count]
    return [patches[k] for k in sorted(order)]


def ignored_scope(model: ov.Model, keep_ends_fp32: bool) -> nncf.IgnoredScope:
    """The ops NNCF must leave FP32 in ``model`` (see the module docstring)."""
    names = graph.activation_matmuls(model)
    if keep_ends_fp32:
        first, last = graph.end_convolutions(model)
        names += first + last
    return nncf.IgnoredScope(names=sorted(set(names)), types=list(KEEP_FP32_TYPES),
                             patterns=[UNMERGED_PATTERN], validate=False)


def quantize_ptq(model: ov.Model, patches: Sequence[np.ndarray], keep_ends_fp32: bool = False,
                 progress: Callable[[str, int, int, dict], None] | None = None) -> ov.Model:
    """INT8 model from an FP32 ``model`` (input ``(1, C, *roi)``) and calibration ``patches``.

    Returns a new ``openvino.Model`` with the same input and output; ``model`` is left unchanged.
    """
    if not patches:
        raise ValueError("post-training quantization needs at least one calibration patch")
    if progress:
        progress("ptq", 0, 1, {"ends": "fp32" if keep_ends_fp32 else "int8", "patches": len(patches)})
    nncf_logger = logging.getLogger("nncf")
    level = nncf_logger.level
    nncf_logger.setLevel(logging.WARNING)  # NNCF lists every op it leaves unquantized at INFO
    try:
        quantized = nncf.quantize(model.clone(), nncf.Dataset(list(patches)),
                                  preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(patches),
                                  ignored_scope=ignored_scope(model, keep_ends_fp32))
    finally:
        nncf_logger.setLevel(level)
    if progress:
        progress("ptq", 1, 1, {"ends": "fp32" if keep_ends_fp32 else "int8"})
    return quantized
