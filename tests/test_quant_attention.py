"""SwinUNETR through the CPU runtime: fused attention in every block, INT8 that leaves attention FP32, and
the per-part window time that shows it.

One small SwinUNETR (feature size 12, random weights, window 64x32x32, the smallest it accepts) is
converted once for the module. Tolerance: OpenVINO FP32 against PyTorch, max |logit difference|
<= 1e-3 * max(1, max |logit|) (float rounding in a different order of operations only).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seapeft_monailabel.models import NetworkSpec, build_network
from seapeft_monailabel.quant import graph
from seapeft_monailabel.quant.bench import PARTS, time_by_part
from seapeft_monailabel.quant.convert import FUSED_ATTENTION_FLAG, to_openvino
from seapeft_monailabel.quant.ptq import quantize_ptq
from seapeft_monailabel.quant.runtime import OpenVINOPredictor

ROI = (64, 32, 32)
SPEC = NetworkSpec(name="swinunetr", out_channels=3, feature_size=12)
#: Ops a quantized activation passes through unchanged on its way to the op that uses it (layout only).
LAYOUT_TYPES = ("Reshape", "Transpose", "Gather", "Squeeze", "Unsqueeze", "Concat", "Split", "VariadicSplit",
                "StridedSlice", "Slice", "Pad", "Roll")
#: Ops that read only an activation's shape.
SHAPE_READERS = ("ShapeOf",)


@pytest.fixture(scope="module")
def converted():
    torch.manual_seed(0)
    network = build_network(SPEC).eval()
    return network, to_openvino(network, SPEC.in_channels, ROI)


def _attention_blocks(network) -> int:
    return sum(isinstance(getattr(m, FUSED_ATTENTION_FLAG, None), bool) for m in network.modules())


def test_every_window_attention_converts_to_fused_attention(converted):
    network, model = converted
    types = [op.get_type_name() for op in model.get_ordered_ops()]
    assert types.count("ScaledDotProductAttention") == _attention_blocks(network) == 8  # 4 stages x 2 blocks
    assert graph.activation_matmuls(model) == []  # no score matmul left outside the fused op
    assert not any(getattr(m, FUSED_ATTENTION_FLAG, False) for m in network.modules())  # caller's network unchanged


@torch.no_grad()
def test_fused_attention_agrees_with_pytorch(converted):
    network, model = converted
    torch.manual_seed(1)
    x = torch.rand(1, SPEC.in_channels, *ROI)
    reference = network(x)
    got = OpenVINOPredictor(model, threads=2)(x)
    assert (got - reference).abs().max() <= 1e-3 * max(1.0, float(reference.abs().max()))


def test_int8_quantizes_only_inputs_of_convolutions_and_weighted_matmuls(converted):
    """No quantized attention input or score, no quantized residual sum (attention stays FP32 by design)."""
    _, model = converted
    rng = np.random.default_rng(0)
    quantized = quantize_ptq(model, [rng.random((1, 1, *ROI), dtype=np.float32) for _ in range(2)])
    reached = []
    for op in quantized.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize" or op.input(0).get_source_output().get_node().get_type_name() == "Constant":
            continue
        stack = [t.get_node() for out in op.outputs() for t in out.get_target_inputs()]
        while stack:  # follow shape-only ops to the op that consumes the quantized activation
            node = stack.pop()
            if node.get_type_name() in LAYOUT_TYPES:
                stack.extend(t.get_node() for out in node.outputs() for t in out.get_target_inputs())
            elif node.get_type_name() not in SHAPE_READERS:
                reached.append(node.get_type_name())
    assert reached and set(reached) <= set(graph.WEIGHTED_TYPES), sorted(set(reached))


def test_window_time_by_part_finds_the_fused_attention(converted):
    _, model = converted
    parts = time_by_part(model, threads=2, runs=1)
    assert tuple(parts) == PARTS
    assert parts["attention"] > 0 and parts["convolutions and linear layers"] > 0 and parts["normalisations"] > 0
