"""The brain mask: soft tissue inside the skull, clear of bone."""

import numpy as np
import pytest
from scipy import ndimage

from ichkit import scans
from ichkit.features.brain import brain_mask


def _head(size=128, lesion=False):
    rows, columns = np.mgrid[:size, :size]
    radius = np.hypot(rows - size / 2, columns - size / 2)
    image = np.full((size, size), -1000.0, np.float32)
    image[radius < 0.42 * size] = 40.0  # scalp
    image[radius < 0.40 * size] = 1200.0  # skull
    image[radius < 0.35 * size] = 35.0  # brain
    image[(rows > size - 8) & (abs(columns - size / 2) < size / 3)] = 300.0  # table
    if lesion:
        image[(radius < 0.35 * size) & (columns < size * 0.25)] = 70.0
    return image, radius


def test_brain_is_inside_the_skull_and_clear_of_it():
    image, radius = _head()
    mask = brain_mask(image)
    assert mask[radius < 0.30 * 128].all()
    assert not mask[radius >= 0.35 * 128].any()  # no bone, scalp or table
    touching_bone = ndimage.binary_dilation(image > 100)
    assert not (mask & touching_bone).any()  # clear of partial volume with bone


def test_blood_against_the_skull_stays_in_the_brain():
    image, radius = _head(lesion=True)
    mask = brain_mask(image)
    assert mask[(image == 70.0) & (radius < 0.35 * 128 - 3)].all()


def test_without_bone_all_soft_tissue_counts():
    image = np.full((64, 64), -1000.0, np.float32)
    image[16:48, 16:48] = 30.0
    assert brain_mask(image).sum() == 32 * 32


def test_face_tissue_outside_the_skull_ring_is_dropped():
    image, radius = _head(size=128)
    rows, columns = np.mgrid[:128, :128]
    # Skull base: facial bones in front of the skull put the face's soft tissue
    # inside the bones' convex hull, but it is not walled in by the skull.
    face = (rows < 14) & (abs(columns - 64) < 30)
    image[face] = 45.0
    image[(rows < 4) & (abs(columns - 64) < 30)] = 1200.0
    mask = brain_mask(image)
    assert mask[radius < 0.30 * 128].mean() > 0.95
    assert not mask[face].any()


def test_empty_slice_gives_an_empty_mask():
    assert not brain_mask(np.full((32, 32), -1000.0, np.float32)).any()


def test_real_slices_have_a_brain(shared_data):
    dataset = scans.load(shared_data / "ct-ich-dev")
    middle = dataset.table.groupby("patient_id")["slice_index"].transform("max") // 2
    for index in np.flatnonzero(dataset.table["slice_index"] == middle)[:5]:
        hounsfield = scans.Resize(256)(scans.to_hounsfield(dataset.read(int(index))))
        fraction = brain_mask(hounsfield).mean()
        assert 0.15 < fraction < 0.7, (index, fraction)


@pytest.mark.parametrize("seed", range(5))
def test_convex_hull_from_row_ends_is_the_hull_of_every_pixel(seed):
    """The hull is taken over each row's first and last pixel only; it must be the
    polygon Qhull gives over every pixel of the mask (blobs, a ring with a gap, dots)."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull

    from ichkit.features.brain import _convex_hull

    rng = np.random.default_rng(seed)
    mask = np.zeros((96, 80), dtype=bool)
    rows, columns = np.ogrid[:96, :80]
    for _ in range(4):
        centre, radius = rng.uniform(10, 70, 2), rng.uniform(3, 12)
        mask |= (rows - centre[0]) ** 2 + (columns - centre[1]) ** 2 < radius**2
    mask[rng.integers(0, 96, 6), rng.integers(0, 80, 6)] = True
    points = np.argwhere(mask)
    corners = points[ConvexHull(points).vertices]
    canvas = Image.new("1", (80, 96), 0)
    ImageDraw.Draw(canvas).polygon([(int(c), int(r)) for r, c in corners], fill=1, outline=1)
    np.testing.assert_array_equal(_convex_hull(mask), np.asarray(canvas, dtype=bool) | mask)
