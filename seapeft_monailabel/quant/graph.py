"""Questions about an OpenVINO graph: which ops are convolutions, which matmuls multiply two
activations, which convolutions sit at the ends of the network, and how many bytes the weights take.

All functions take an ``openvino.Model`` (the IR before compilation) and look only at its ops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import openvino as ov

#: OpenVINO op types of the (transposed) convolutions.
CONV_TYPES = ("Convolution", "ConvolutionBackpropData", "GroupConvolution", "GroupConvolutionBackpropData")
#: Ops whose input 1 is a weight when it is computed from constants only.
WEIGHTED_TYPES = CONV_TYPES + ("MatMul",)
#: OpenVINO op types of the normalisations (InstanceNorm, LayerNorm and GroupNorm convert to MVN).
NORM_TYPES = ("MVN", "NormalizeL2", "BatchNormInference", "GroupNormalization")


class _ConstantCache:
    """Memoised "is this output computed from constants only" over one graph."""

    def __init__(self):
        self.known: dict[str, bool] = {}

    def __call__(self, node: ov.Node) -> bool:
        name = node.get_friendly_name()
        if name not in self.known:
            kind = node.get_type_name()
            if kind == "Constant":
                self.known[name] = True
            elif kind == "Parameter" or node.get_input_size() == 0:
                self.known[name] = False
            else:
                self.known[name] = all(self(source) for source in _inputs(node))
        return self.known[name]


def _inputs(node: ov.Node) -> list[ov.Node]:
    return [i.get_source_output().get_node() for i in node.inputs()]


def _consumers(node: ov.Node) -> list[ov.Node]:
    return [t.get_node() for out in node.outputs() for t in out.get_target_inputs()]


def _walk(starts: Iterable[ov.Node], step: Callable[[ov.Node], list[ov.Node]],
          stop: Callable[[ov.Node], bool] = lambda node: False) -> Iterator[ov.Node]:
    """Every node reachable from ``starts`` through ``step`` (inputs or consumers), each once; the walk
    does not go past a node for which ``stop`` is true (that node is still yielded)."""
    seen, stack = set(), list(starts)
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen.add(name)
        yield node
        if not stop(node):
            stack.extend(step(node))


def _constants_under(node: ov.Node) -> Iterable[ov.Node]:
    """Every Constant op in the (constant) subgraph that computes ``node``."""
    return (n for n in _walk([node], _inputs) if n.get_type_name() == "Constant")


def weighted_ops(model: ov.Model) -> list[ov.Node]:
    """Convolutions and matmuls whose input 1 is computed from constants (weights), in graph order."""
    constant = _ConstantCache()
    return [op for op in model.get_ordered_ops()
            if op.get_type_name() in WEIGHTED_TYPES and constant(op.input(1).get_source_output().get_node())]


def activation_matmuls(model: ov.Model) -> list[str]:
    """Names of the MatMuls that multiply two activations (attention scores q k^T and attn v)."""
    constant = _ConstantCache()
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "MatMul"
            and not any(constant(source) for source in _inputs(op))]


def end_convolutions(model: ov.Model) -> tuple[list[str], list[str]]:
    """The first and the last convolutions: those fed by the input, and those feeding the output,
    with no other convolution in between (a residual unit has two of each)."""
    ops = model.get_ordered_ops()
    conv = {op.get_friendly_name() for op in ops if op.get_type_name() in CONV_TYPES}

    def is_conv(node: ov.Node) -> bool:
        return node.get_friendly_name() in conv

    def reach(starts: Iterable[ov.Node], step: Callable[[ov.Node], list[ov.Node]]) -> list[str]:
        return [n.get_friendly_name() for n in _walk(starts, step, stop=is_conv) if is_conv(n)]

    first = reach(model.get_parameters(), _consumers)
    last = reach(model.get_results(), _inputs)
    order = {op.get_friendly_name(): k for k, op in enumerate(ops)}
    return sorted(first, key=order.get), sorted(last, key=order.get)


def weight_bytes(model: ov.Model) -> int:
    """Bytes of the constants feeding the weight input of every convolution and weighted matmul.

    This is what quantization compresses (INT8 weights plus their per-channel scales and zero points).
    Biases, normalisation affines and baked constants such as SwinUNETR's shifted-window attention
    masks are not counted: the file size of a fixed-window SwinUNETR export is dominated by those
    masks and says nothing about weight compression.
    """
    seen: set[str] = set()
    total = 0
    for op in weighted_ops(model):
        for const in _constants_under(op.input(1).get_source_output().get_node()):
            name = const.get_friendly_name()
            if name not in seen:
                seen.add(name)
                total += const.get_byte_size()
    return total


def constant_bytes(model: ov.Model) -> int:
    """Bytes of every constant in the graph (weights, biases, masks, shapes)."""
    return sum(op.get_byte_size() for op in model.get_ordered_ops() if op.get_type_name() == "Constant")


def module_name(op_name: str) -> str | None:
    """The PyTorch module path an op converted from PyTorch came from, or None.

    ``"__module.model.0.conv.unit0.conv/aten::_convolution/Convolution"`` -> ``"model.0.conv.unit0.conv"``.
    """
    head = op_name.split("/", 1)[0]
    return head[len("__module."):] if head.startswith("__module.") else None
