"""The phantom: a synthetic head CT with all five hemorrhage subtypes, and its writers.

``make_phantom_scan`` draws one head (``drawing.py``); ``write_phantom`` writes a data
set of them in the layouts real head CT arrives in (``writers.py``): PNG with a label
CSV, DICOM series, NIfTI (nnU-Net) and PhysioNet CT-ICH.
"""

from ichkit.scans.phantom.drawing import (
    CRANIAL_HEIGHT_MM,
    FIELD_OF_VIEW_MM,
    MIN_LABEL_PIXELS,
    PhantomScan,
    make_phantom_scan,
    make_phantom_scans,
)
from ichkit.scans.phantom.writers import PHANTOM_FORMATS, write_phantom

__all__ = [
    "CRANIAL_HEIGHT_MM",
    "FIELD_OF_VIEW_MM",
    "MIN_LABEL_PIXELS",
    "PHANTOM_FORMATS",
    "PhantomScan",
    "make_phantom_scan",
    "make_phantom_scans",
    "write_phantom",
]
