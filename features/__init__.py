"""Handcrafted slice descriptors as scikit-learn transformers (intensity, HU bands, texture, shape).

``ichkit.features.union.HandcraftedFeatures`` combines the families; ``ichkit.features.extraction``
computes them for a whole data set (parallel, cached) or one slice (``slice_features``).
"""
