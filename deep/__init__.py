"""Keras CNN heads, slice-sequence models, Grad-CAM and ONNX inference.

Built in issue 4; empty until then.
"""
