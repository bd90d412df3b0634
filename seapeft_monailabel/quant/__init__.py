"""CPU serving and INT8: OpenVINO conversion, NNCF post-training quantization, quantization-aware
training, the serving index, the non-inferiority check and the benchmark.

The app calls :func:`export_serving_models` after publishing a trained model; serving reads the export
through :func:`load_predictor` (:mod:`.choose`, the one choice of runtime and precision). Names are imported lazily, so opening a
converted model (:mod:`.index`, :mod:`.runtime`) does not load NNCF.
"""

from importlib import import_module

_EXPORTS = {
    "NonInferiority": "noninferiority", "compare": "noninferiority", "volume_dices": "noninferiority",
    "OpenVINOPredictor": "runtime", "QuantizationError": "runtime", "count_quantized_convolutions": "runtime",
    "export_serving_models": "serving", "read_index": "index",
    "load_predictor": "choose", "PRECISIONS": "choose", "RUNTIMES": "choose",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
