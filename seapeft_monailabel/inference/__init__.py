"""Whole-volume inference: one predictor for the app, the command line, the benchmarks and explanations.

- :mod:`.window`: :class:`Window`, the sliding window (the model's patch size, overlap 0.25, Gaussian
  blending, one window per call) every whole-volume inference runs through;
- :mod:`.predictor`: :class:`Predictor`, a window function (PyTorch or OpenVINO) with its window and what
  answers (runtime, precision, note); logits, probabilities and class maps of a preprocessed volume;
- :mod:`.trained`: the window and resampling a model was trained with;
- :mod:`.files`: :func:`predict_file`, an image file in, a label file out on the image's own grid and in
  its format.

The one choice of runtime (``torch`` | ``openvino`` | ``auto``) and precision (``fp32`` | ``int8``)
that builds the predictor to serve from a model file is :func:`seapeft_monailabel.quant.load_predictor`.

Dependencies point down: this package uses ``models``, ``peft`` (a run's adapter config) and ``data`` (the preprocessing) only; ``quant``
(the runtime choice, the export and its benchmark), ``evaluate``, ``explain``, the CLI and the app use
it. Names are imported lazily and nothing here imports OpenVINO.
"""

from importlib import import_module

_EXPORTS = {
    "Window": "window", "OVERLAP": "window", "single_torch_thread": "window",
    "Predictor": "predictor", "torch_predictor": "predictor", "openvino_predictor": "predictor",
    "default_roi_size": "trained", "predict_file": "files", "predict_image": "files", "output_path": "files",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
