"""Handcrafted slice descriptors as scikit-learn transformers (intensity, HU bands, texture, shape).

``features.union.HandcraftedFeatures`` combines the families; ``features.extraction``
computes them for a whole data set (parallel, cached) or one slice (``slice_features``).
"""
