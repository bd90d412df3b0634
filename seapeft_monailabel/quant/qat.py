"""Quantization-aware training, the second stage when post-training INT8 loses too much Dice.

Follows AdaLoRA-QAT: the adaptation is frozen (rank masks and singular values, and every other unit,
are already folded into the merged weights, which stay fixed), fake quantization is inserted exactly
where the INT8 model will quantize (weights of every Conv3d, ConvTranspose3d and Linear, symmetric per
output channel; their inputs, symmetric per tensor), and a few steps at a very low learning rate
train the quantization ranges (LSQ-style learned step sizes) and the biases on the
labelled volumes. The network is then converted with the learned ranges: PyTorch's
``fake_quantize_per_channel_affine`` / ``fake_quantize_per_tensor_affine`` become OpenVINO
``FakeQuantize`` ops, which the CPU plugin runs as INT8 convolutions.

Why our own fake quantization rather than NNCF's PyTorch QAT: NNCF's PyTorch quantizers compile a C++
extension on first use (minutes on two cores, and a 60 s time-out that fails on a busy machine), and
its placement would have to be re-derived from PyTorch node names; here the placement is stated in a
few lines, units left unmerged are simply not wrapped (they stay FP32), and the exported ranges are
exactly the trained ones. Everything uses core ATen ops, nothing deprecated.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import openvino as ov
import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from torch import nn

from ..data.transforms import train_transforms
from .convert import to_openvino

_WRAPPED = (nn.Conv3d, nn.ConvTranspose3d, nn.Linear)
_UNMERGED = "peft_units"


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


class ActivationQuantizer(nn.Module):
    """Symmetric per-tensor 8-bit fake quantization with a learned step size (LSQ), as NNCF's default preset.

    ``y = clamp(round(x / s), lo, hi) * s`` with ``[lo, hi] = [0, 255]`` for inputs that were
    non-negative during calibration and ``[-128, 127]`` otherwise; ``s`` starts at max|x| / hi.
    After :meth:`freeze` it is ``torch.fake_quantize_per_tensor_affine`` (zero point 0) with the learned scale.
    """

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.export: float | None = None
        self.observing = False
        self.levels = (0, 255)
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self.low = torch.minimum(self.low, x.detach().min())
            self.high = torch.maximum(self.high, x.detach().max())
            return x
        lo, hi = self.levels
        if self.export is not None:
            return torch.fake_quantize_per_tensor_affine(x, self.export, 0, lo, hi)
        scale = self.scale.abs().clamp_min(1e-8)
        return torch.clamp(_round_ste(x / scale), lo, hi) * scale

    def freeze(self) -> None:
        """Switch to the ATen op with the learned scale (what OpenVINO converts to ``FakeQuantize``)."""
        self.export = float(self.scale.detach().abs().clamp_min(1e-8))

    @torch.no_grad()
    def init_from_observed(self) -> None:
        self.levels = (-128, 127) if float(self.low) < 0 else (0, 255)
        bound = max(abs(float(self.low)), abs(float(self.high)), 1e-8)
        self.scale.fill_(bound / self.levels[1])


class WeightQuantizer(nn.Module):
    """Symmetric per-output-channel INT8 fake quantization (levels -127..127) with learned step sizes."""

    def __init__(self, weight: torch.Tensor, axis: int):
        super().__init__()
        self.axis = axis
        dims = [d for d in range(weight.dim()) if d != axis]
        self.scale = nn.Parameter(weight.detach().abs().amax(dim=dims).clamp_min(1e-8) / 127.0)
        self.export = False

    def freeze(self) -> None:
        """Switch to the ATen op with the learned scales."""
        self.export = True

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = self.scale.abs().clamp_min(1e-8)
        if self.export:
            zeros = torch.zeros_like(scale, dtype=torch.int32)
            return torch.fake_quantize_per_channel_affine(w, scale.detach(), zeros, self.axis, -127, 127)
        shape = [1] * w.dim()
        shape[self.axis] = -1
        s = scale.view(shape)
        return torch.clamp(_round_ste(w / s), -127, 127) * s


class FakeQuantized(nn.Module):
    """A Conv3d, ConvTranspose3d or Linear whose input and weight are fake-quantized."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.input_quantizer = ActivationQuantizer()
        self.weight_quantizer = WeightQuantizer(module.weight, axis=1 if isinstance(module, nn.ConvTranspose3d) else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quantizer(x)
        if self.input_quantizer.observing:
            return self.module(x)
        m, w = self.module, self.weight_quantizer(self.module.weight)
        if isinstance(m, nn.Linear):
            return nn.functional.linear(x, w, m.bias)
        if isinstance(m, nn.Conv3d):
            return m._conv_forward(x, w, m.bias)
        return nn.functional.conv_transpose3d(x, w, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation)


def insert_fake_quant(network: nn.Module, keep_fp32: Iterable[str] = ()) -> list[str]:
    """Wrap, in place, every Conv3d, ConvTranspose3d and Linear of ``network`` in :class:`FakeQuantized`,
    except the module paths in ``keep_fp32`` and units left unmerged. Returns the wrapped paths."""
    keep = set(keep_fp32)
    targets = [name for name, m in network.named_modules()
               if isinstance(m, _WRAPPED) and name not in keep and _UNMERGED not in name.split(".")]
    for name in targets:
        parent_path, _, attr = name.rpartition(".")
        parent = network.get_submodule(parent_path) if parent_path else network
        setattr(parent, attr, FakeQuantized(getattr(parent, attr)))
    return targets


def _quantizers(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, (ActivationQuantizer, WeightQuantizer))]


@torch.no_grad()
def calibrate(network: nn.Module, patches: Sequence[np.ndarray]) -> None:
    """Initialise every activation range from the min and max over ``patches`` ``(1, C, *roi)``."""
    acts = [m for m in network.modules() if isinstance(m, ActivationQuantizer)]
    for m in acts:
        m.observing = True
    try:
        for patch in patches:
            network(torch.from_numpy(patch))
    finally:
        for m in acts:
            m.observing = False
    for m in acts:
        m.init_from_observed()


def quantization_aware_training(network: nn.Module, in_channels: int, datalist: Sequence[dict],
                                roi_size: Sequence[int], patches: Sequence[np.ndarray], keep_fp32: Iterable[str] = (), steps: int = 60,
                                lr: float = 1e-5, spacing=None, seed: int = 0,
                                progress: Callable[[str, int, int, dict], None] | None = None) -> ov.Model:
    """Fine-tune fake-quantization ranges and biases of a copy of the merged ``network``, convert it to INT8.

    Args:
        network: the merged FP32 network (left unchanged); in_channels: its input channels C.
        datalist: labelled volumes ``{"image", "label"}`` for training patches of ``roi_size``.
        patches: calibration patches ``(1, C, *roi_size)`` that initialise the activation ranges.
        keep_fp32: module paths left unquantized (e.g. the first and last convolutions).
        steps: optimisation steps, one patch each; lr: Adam learning rate (very low: only ranges and
            biases move, and the few labelled volumes must not be over-fitted).

    Returns:
        The INT8 ``openvino.Model`` (input ``(1, C, *roi_size)``) with the learned ranges.
    """
    torch.manual_seed(seed)
    qnet = copy.deepcopy(network).cpu().eval()
    for p in qnet.parameters():
        p.requires_grad_(False)
    wrapped = insert_fake_quant(qnet, keep_fp32)
    if not wrapped:
        raise ValueError("quantization-aware training found no Conv3d, ConvTranspose3d or Linear to quantize")
    calibrate(qnet, patches)
    trainable = [p for m in _quantizers(qnet) for p in m.parameters()]
    trainable += [m.module.bias for m in qnet.modules() if isinstance(m, FakeQuantized) and m.module.bias is not None]
    for p in trainable:
        p.requires_grad_(True)
    items = [dict(i) for i in datalist if i.get("label")]
    loader = DataLoader(Dataset(items, train_transforms(roi_size, spacing, num_samples=1, seed=seed)),
                        batch_size=1, shuffle=True, num_workers=0)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.Adam(trainable, lr=lr)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    for step in range(1, steps + 1):
        batch = next(batches)
        loss = loss_fn(qnet(batch["image"]), batch["label"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress:
            progress("qat", step, steps, {"loss": loss.item()})
    for m in _quantizers(qnet):
        m.freeze()
    return to_openvino(qnet, in_channels, roi_size)
