"""Merged PyTorch network -> OpenVINO IR at the sliding-window patch size, and compilation in FP32.

The network is converted for one fixed input shape ``(1, C_in, *roi_size)``: sliding-window inference
calls it with exactly that shape (``sw_batch_size=1``). A fixed shape lets OpenVINO pick the fastest
kernels and lets SwinUNETR's shifted-window attention masks fold into constants.

SwinUNETR's window attention is converted through MONAI's own scaled-dot-product-attention path
(``WindowAttention.use_flash_attention``, the same softmax(q k^T * scale + bias) v with the relative
position bias and the shifted-window mask as one additive bias), set on a copy of the network. OpenVINO
turns it into ``ScaledDotProductAttention`` ops that the CPU plugin runs as fused attention in every
block; the default path reshapes the scores around the shifted-window mask, which stops that fusion in
the shifted blocks (their scores then go through separate MatMul, Add and Softmax kernels, the largest
FP32 cost of a window; docs/BENCHMARKS.md, INT8 section).

Compilation always sets ``INFERENCE_PRECISION_HINT`` to ``f32``: on CPUs with BF16 (AVX512_BF16, AMX)
OpenVINO would otherwise run FP32 models, and the FP32 parts of INT8 models, in BF16.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import openvino as ov
import torch
from torch import nn

#: Compile properties used for every model this package runs.
FP32_HINT = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


def input_shape(in_channels: int, roi_size: Sequence[int]) -> tuple[int, ...]:
    """The one input shape the converted model accepts: ``(1, C_in, D, H, W)``."""
    roi = tuple(int(v) for v in roi_size)
    if len(roi) != 3 or min(roi) < 1:
        raise ValueError(f"roi_size must be three positive integers, got {roi_size!r}")
    return (1, int(in_channels), *roi)


#: MONAI attention modules (``WindowAttention``) switch to scaled-dot-product attention with this attribute.
FUSED_ATTENTION_FLAG = "use_flash_attention"


def fused_attention(network: nn.Module) -> nn.Module:
    """``network`` itself when no module has MONAI's attention flag, else a copy with the flag set on all.

    MONAI takes the scaled-dot-product path only without gradients (conversion traces under
    ``torch.no_grad``); the caller's network is left as it was.
    """
    if not any(isinstance(getattr(m, FUSED_ATTENTION_FLAG, None), bool) for m in network.modules()):
        return network
    network = copy.deepcopy(network)
    for module in network.modules():
        if isinstance(getattr(module, FUSED_ATTENTION_FLAG, None), bool):
            setattr(module, FUSED_ATTENTION_FLAG, True)
    return network


@torch.no_grad()
def to_openvino(network: nn.Module, in_channels: int, roi_size: Sequence[int]) -> ov.Model:
    """Convert ``network`` (eval mode, on the CPU, every parameter frozen) for input ``(1, C_in, *roi_size)``.

    Returns an ``openvino.Model`` mapping ``(1, C_in, *roi)`` float32 to logits ``(1, K, *roi)``.
    """
    shape = input_shape(in_channels, roi_size)
    network = fused_attention(network).eval().cpu()
    for p in network.parameters():
        p.requires_grad_(False)
    example = torch.rand(shape)
    try:
        model = ov.convert_model(network, example_input=example, input=[shape])
    except Exception as err:
        raise RuntimeError(f"OpenVINO could not convert {type(network).__name__} at input {shape}: "
                           f"{type(err).__name__}: {str(err).strip().splitlines()[0]}") from err
    model.set_rt_info("f32", ["runtime_options", "INFERENCE_PRECISION_HINT"])
    return model


def save_ir(model: ov.Model, xml_path: str | Path) -> None:
    """Write ``model`` as IR (``.xml`` + ``.bin``) keeping FP32 weights (no FP16 compression)."""
    ov.save_model(model, str(xml_path), compress_to_fp16=False)


def read_ir(xml_path: str | Path) -> ov.Model:
    """Read an IR; a missing or damaged file raises ``ValueError`` naming it."""
    xml_path = Path(xml_path)
    bin_path = xml_path.with_suffix(".bin")
    for path in (xml_path, bin_path):
        if not path.is_file():
            raise ValueError(f"{path}: OpenVINO model file not found")
    try:
        return ov.Core().read_model(str(xml_path), str(bin_path))
    except Exception as err:
        raise ValueError(f"{xml_path}: not a readable OpenVINO model "
                         f"({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None


def compile_model(model: ov.Model, threads: int | None = None) -> ov.CompiledModel:
    """Compile for the CPU with the FP32 precision hint (and ``threads`` inference threads if given)."""
    config = dict(FP32_HINT)
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = ov.Core().compile_model(model, "CPU", config)
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    if hint != ov.Type.f32:
        raise RuntimeError(f"OpenVINO ignored the FP32 precision hint (compiled with {hint})")
    return compiled


def torch_weight_bytes(network: nn.Module) -> int:
    """Bytes of the weights of every Conv3d, ConvTranspose3d and Linear (biases excluded), as in
    :func:`.graph.weight_bytes` for the converted model."""
    kinds = (nn.Conv3d, nn.ConvTranspose3d, nn.Linear)
    return sum(m.weight.numel() * m.weight.element_size() for m in network.modules()
               if isinstance(m, kinds) and m.weight is not None)
