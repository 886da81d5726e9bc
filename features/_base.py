"""The shared base of the image feature extractors."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ichkit.features.brain import brain_mask
from ichkit.scans.validation import check_params


class SliceFeatures(TransformerMixin, BaseEstimator):
    """Features computed slice by slice from a stack of slices in Hounsfield units.

    ``X`` is an array of shape ``(n_slices, height, width)`` in Hounsfield units
    (grey exports mapped with ``scans.to_hounsfield``), the output one row of
    ``n_features`` per slice, named by ``get_feature_names_out``. The extractors
    learn nothing from data: ``fit`` only checks parameters, so they are safe in any
    cross-validation. Subclasses implement ``_names()`` and ``_features(image, mask)``
    where ``mask`` is the slice's ``brain_mask`` (``HandcraftedFeatures`` computes
    that mask once for all families), and ``_prepare()`` for checks beyond their
    ``_constraints`` table.
    """

    _constraints: dict = {}

    def fit(self, X, y=None):
        """Check parameters and input; learns nothing from the data.

        Parameters
        ----------
        X : array-like of shape (n_slices, height, width)
            Slices in Hounsfield units.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        check_params(self)
        self._prepare()
        _check_slices(X, type(self).__name__)
        self.feature_names_out_ = np.asarray(self._names(), dtype=object)
        return self

    def transform(self, X) -> np.ndarray:
        """Features of every slice, shape ``(n_slices, n_features)``."""
        check_is_fitted(self)
        slices = _check_slices(X, type(self).__name__)
        return np.stack([self._features(image, brain_mask(image)) for image in slices])

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names such as ``glcm_contrast_d1_a0``."""
        check_is_fitted(self)
        return self.feature_names_out_

    def _prepare(self) -> None:
        """Checks the ``_constraints`` table cannot express, and derived settings
        (filter kernels); called by ``fit``."""

    def _names(self) -> list[str]:
        raise NotImplementedError

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _check_slices(X, owner: str) -> np.ndarray:
    """``X`` as float32 (n_slices, height, width), with a message that says how to fix it."""
    slices = np.asarray(X, dtype=np.float32)
    if slices.ndim != 3 or 0 in slices.shape:
        raise ValueError(
            f"{owner} needs a stack of 2-D slices of shape (n_slices, height, width) in "
            f"Hounsfield units; got shape {slices.shape}. Stack slices of one size, e.g. "
            "with scans.Resize, and map grey images with scans.to_hounsfield."
        )
    if not np.isfinite(slices).all():
        raise ValueError(f"{owner} got NaN or infinite pixels; fill them first (air: -1024).")
    return slices
