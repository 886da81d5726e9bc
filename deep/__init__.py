"""Keras CNN heads, slice-sequence models, Grad-CAM and ONNX inference.

Model code uses Keras 3 and ``keras.ops`` only, so it runs on any backend. Where
``KERAS_BACKEND`` is not set, torch is used (the CPU build this project installs).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

__all__ = [
    "OnnxClassifier",
    "build_classifier",
    "export_onnx",
    "grad_cam",
    "keep_quantized_if_close",
    "overlay",
    "quantize_dynamic_int8",
    "save_overlay",
]


def __getattr__(name):
    """Public names, imported on first use: ``import deep`` must not load Keras or torch."""
    homes = {
        "OnnxClassifier": "ichkit.deep.inference",
        "build_classifier": "ichkit.deep.backbones",
        "export_onnx": "ichkit.deep.export",
        "grad_cam": "ichkit.deep.gradcam",
        "keep_quantized_if_close": "ichkit.deep.export",
        "overlay": "ichkit.deep.gradcam",
        "quantize_dynamic_int8": "ichkit.deep.export",
        "save_overlay": "ichkit.deep.gradcam",
    }
    if name not in homes:
        raise AttributeError(f"module 'deep' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(homes[name]), name)
