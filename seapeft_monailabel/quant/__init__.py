"""CPU serving and INT8: OpenVINO conversion, NNCF post-training quantization, quantization-aware
training, the sliding-window predictor, the non-inferiority check and the benchmark.

The app calls :func:`export_serving_models` after publishing a trained model and
:func:`load_serving_model` in its infer task.
"""

from .noninferiority import NonInferiority, compare, volume_dices
from .runtime import OpenVINOPredictor, QuantizationError, count_quantized_convolutions
from .serving import ServingModel, export_serving_models, load_serving_model

__all__ = ["NonInferiority", "OpenVINOPredictor", "QuantizationError", "ServingModel", "compare",
           "count_quantized_convolutions", "export_serving_models", "load_serving_model", "volume_dices"]
