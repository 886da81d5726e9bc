"""Handcrafted slice descriptors as scikit-learn transformers (intensity, HU bands, texture, shape).

Built in issue 3; empty until then.
"""
