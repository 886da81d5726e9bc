"""All handcrafted families in one extractor, chosen by name."""

from __future__ import annotations

import importlib

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ichkit.features._base import SliceFeatures, _check_slices
from ichkit.features.brain import brain_mask
from ichkit.scans.validation import unknown_name_message

__all__ = [
    "DEFAULT_FAMILIES",
    "FAMILIES",
    "FAMILY_PREFIXES",
    "FamilySelector",
    "HandcraftedFeatures",
    "make_family",
    "register_feature_family",
]

#: Feature family name -> extractor class ("module:Class"), imported when used.
FAMILIES = {
    "intensity": "ichkit.features.intensity:FirstOrderFeatures",
    "bands": "ichkit.features.intensity:HounsfieldBandFeatures",
    "glcm": "ichkit.features.glcm:GLCMFeatures",
    "lbp": "ichkit.features.lbp:LBPFeatures",
    "hog": "ichkit.features.hog:HOGFeatures",
    "gabor": "ichkit.features.gabor:GaborFeatures",
    "shape": "ichkit.features.shape:HyperdenseShapeFeatures",
}
DEFAULT_FAMILIES = tuple(FAMILIES)
#: How each family's feature names begin.
FAMILY_PREFIXES = {
    "intensity": "firstorder_",
    "bands": "huband_",
    "glcm": "glcm_",
    "lbp": "lbp_",
    "hog": "hog_",
    "gabor": "gabor_",
    "shape": "shape_",
}


def register_feature_family(
    name: str, extractor: str | type, *, prefix: str, overwrite: bool = False
) -> None:
    """Add a feature family, so configs (``features: {families: [..., name]}``), the
    classical models' family choice, ``ichkit run`` and ``ichkit serve`` know it.

    Parameters
    ----------
    name : str
        The family's name in configs.
    extractor : str or type
        A ``SliceFeatures`` subclass (``ichkit.features._base``: implement
        ``_features(image, mask)`` and ``get_feature_names_out``), or its
        ``"module:Class"``; a string keeps it importable by ``ichkit serve``.
    prefix : str
        How its feature names begin (``"myfamily_"``): the classical models choose
        families by these prefixes, so it must be unique.
    overwrite : bool, default=False
        Replace a family of the same name (refused otherwise).
    """
    if name in FAMILIES and not overwrite:
        raise ValueError(
            f"A feature family named '{name}' is already registered; pass overwrite=True "
            "to replace it."
        )
    clashes = [other for other, known in FAMILY_PREFIXES.items() if other != name
               and (known.startswith(prefix) or prefix.startswith(known))]  # fmt: skip
    if clashes:
        raise ValueError(
            f"The 'prefix' parameter of register_feature_family must not overlap another "
            f"family's feature names ({clashes[0]}: '{FAMILY_PREFIXES[clashes[0]]}'). "
            f"Got {prefix!r}."
        )
    FAMILIES[name] = extractor
    FAMILY_PREFIXES[name] = prefix


def make_family(name: str, **params) -> SliceFeatures:
    """The extractor of one family (``glcm``, ``lbp``, ...) with its parameters."""
    if name not in FAMILIES:
        raise ValueError(unknown_name_message("feature family", name, FAMILIES))
    extractor = FAMILIES[name]
    if isinstance(extractor, str):
        module, cls = extractor.split(":")
        extractor = getattr(importlib.import_module(module), cls)
    return extractor(**params)


class HandcraftedFeatures(SliceFeatures):
    """Every chosen feature family side by side, with one brain mask per slice.

    Parameters
    ----------
    families : sequence of str, default=DEFAULT_FAMILIES
        Families from ``FAMILIES``: intensity, bands, glcm, lbp, hog, gabor, shape.
    params : dict, default=None
        Parameters per family, e.g. ``{"glcm": {"distances": (1, 2)}}``.

    Examples
    --------
    >>> import numpy as np
    >>> slices = np.full((2, 64, 64), -1000.0, dtype=np.float32)
    >>> extractor = HandcraftedFeatures(families=("intensity", "bands")).fit(slices)
    >>> extractor.transform(slices).shape[0]
    2
    """

    def __init__(self, families=DEFAULT_FAMILIES, params=None):
        self.families = families
        self.params = params

    def fit(self, X, y=None):
        """Build and check each family's extractor."""
        if isinstance(self.families, str) or len(self.families) == 0:
            raise ValueError(
                "The 'families' parameter of HandcraftedFeatures must be a non-empty list of "
                f"family names from {', '.join(FAMILIES)}. Got {self.families!r}."
            )
        params = self.params or {}
        unknown = set(params) - set(self.families)
        if unknown:
            raise ValueError(
                f"The 'params' parameter of HandcraftedFeatures names families that are not "
                f"in 'families': {', '.join(sorted(unknown))}."
            )
        _check_slices(X, type(self).__name__)
        self.extractors_ = [
            (name, make_family(name, **params.get(name, {})).fit(X)) for name in self.families
        ]
        self.feature_names_out_ = np.concatenate(
            [extractor.get_feature_names_out() for _, extractor in self.extractors_]
        )
        return self

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [extractor._features(image, mask) for _, extractor in self.extractors_]
        )

    def transform_slice(self, image: np.ndarray) -> np.ndarray:
        """Features of one (height, width) slice in Hounsfield units."""
        check_is_fitted(self)
        return self._features(image, brain_mask(image))


class FamilySelector(TransformerMixin, BaseEstimator):
    """Keep the feature columns of some families, so a search can choose among them.

    Fitted on a DataFrame of named features (as ``extract_features`` returns);
    ``families="all"`` keeps every column.

    Parameters
    ----------
    families : "all" or sequence of str, default="all"
        Family names of ``FAMILY_PREFIXES``.
    """

    def __init__(self, families="all"):
        self.families = families

    def fit(self, X, y=None):
        """Find the columns of the chosen families."""
        names = getattr(X, "columns", None)
        if names is None:
            raise TypeError(
                "FamilySelector needs a DataFrame of named features (extract_features "
                f"returns one); got {type(X).__name__}."
            )
        if self.families == "all":
            self.columns_ = list(names)
            return self
        unknown = [name for name in self.families if name not in FAMILY_PREFIXES]
        if unknown:
            raise ValueError(unknown_name_message("feature family", unknown[0], FAMILY_PREFIXES))
        prefixes = tuple(FAMILY_PREFIXES[name] for name in self.families)
        self.columns_ = [name for name in names if str(name).startswith(prefixes)]
        if not self.columns_:
            raise ValueError(f"No feature columns of the families {list(self.families)}.")
        return self

    def transform(self, X):
        """The chosen columns."""
        check_is_fitted(self)
        return X[self.columns_]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self)
        return np.asarray(self.columns_, dtype=object)
