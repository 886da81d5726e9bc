"""Keras CNN heads, slice-sequence models, Grad-CAM and ONNX inference.

Model code uses Keras 3 and ``keras.ops`` only, so it runs on any backend. Where
``KERAS_BACKEND`` is not set, torch is used (the CPU build this project installs).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")
