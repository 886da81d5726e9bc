"""Per-image export windows from a label CSV (``window_center``, ``window_width``)."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ichkit import scans
from ichkit.scans import to_hounsfield


def _write_png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)


def test_each_image_maps_back_with_its_own_window(tmp_path):
    for name in ("a", "b", "c"):
        _write_png(tmp_path / f"{name}.png", value=128)
    (tmp_path / "labels.csv").write_text(
        "id,hemorrhage,window_center,window_width\na,1,40,80\nb,0,30,150\nc,0,,\n"
    )
    dataset = scans.load(tmp_path)
    windows = {
        path.rsplit("/", 1)[-1]: dataset.read(index).window
        for index, path in enumerate(dataset.table["path"])
    }
    assert windows == {"a.png": (40.0, 80.0), "b.png": (30.0, 150.0), "c.png": None}
    # Grey 128 of 255 is just above the middle of each image's own window.
    middle = [float(to_hounsfield(dataset.read(i)).mean()) for i in range(2)]
    np.testing.assert_allclose(middle, [40 + 80 / 510, 30 + 150 / 510], atol=1e-3)


@pytest.mark.parametrize(
    ("center", "width", "reason"),
    [
        ("40", "0", "'window_width' must be > 0; got '0'"),
        ("40", "-80", "'window_width' must be > 0"),
        ("abc", "80", "'window_center' must be a number; got 'abc'"),
        ("inf", "80", "'window_center' must be finite"),
        ("40", "-inf", "'window_width' must be finite"),
        ("40", "", "'window_center' is given but 'window_width' is empty"),
    ],
)
def test_an_invalid_window_skips_that_file_with_the_reason(tmp_path, center, width, reason):
    _write_png(tmp_path / "good.png")
    _write_png(tmp_path / "bad.png")
    (tmp_path / "labels.csv").write_text(
        f"id,label,window_center,window_width\ngood,0,40,80\nbad,1,{center},{width}\n"
    )
    with pytest.warns(UserWarning, match="Skipped 1 of 2"):
        dataset = scans.load(tmp_path)
    assert [path.rsplit("/", 1)[-1] for path in dataset.table["path"]] == ["good.png"]
    (skipped,) = dataset.skipped
    assert skipped.path.endswith("bad.png")
    assert reason in skipped.reason and "line 3 of labels.csv" in skipped.reason


def test_rsna_course_slices_carry_the_window_of_labels_csv(shared_data):
    root = shared_data / "rsna-course-dev"
    dataset = scans.load(root, verify=False)
    expected = pd.read_csv(root / "labels.csv").set_index("id")
    table = dataset.table.assign(id=dataset.table["path"].str.rsplit("/", n=1).str[-1].str[:-4])
    merged = table.merge(
        expected[["window_center", "window_width"]], left_on="id", right_index=True,
        suffixes=("", "_csv"), validate="one_to_one",
    )  # fmt: skip
    assert len(merged) == len(expected)
    np.testing.assert_array_equal(merged["window_center"], merged["window_center_csv"])
    np.testing.assert_array_equal(merged["window_width"], merged["window_width_csv"])
    # Windows differ from image to image (30-47 / 80-150 in most): one assumed window is wrong.
    assert merged["window_center"].nunique() > 1 and merged["window_width"].nunique() > 1
    for index in (0, int(np.flatnonzero(merged["window_width"] != 80)[0])):
        row = merged.iloc[index]
        image = dataset.read(index)
        assert image.window == (row["window_center_csv"], row["window_width_csv"])
        hounsfield = to_hounsfield(image)
        inside = (image.pixels > 0) & (image.pixels < image.max_value)
        low = row["window_center_csv"] - row["window_width_csv"] / 2
        assert (
            low <= hounsfield[inside].min()
            and hounsfield[inside].max() <= low + row["window_width_csv"]
        )


def test_ctich_keeps_its_documented_window(shared_data):
    dataset = scans.load(shared_data / "ct-ich-dev", verify=False)
    assert dataset.read(0).window == (40.0, 120.0)
