"""How fast are the handcrafted features? Slices per second on 2 cores, and against pyradiomics.

On the same slices, in the same run, at 256x256 and 512x512:

1. the full feature set, ``ichkit.features.union.HandcraftedFeatures()`` with its default
   families, brain mask included (``transform``);
2. our GLCM + first-order subset, ``GLCMFeatures`` + ``FirstOrderFeatures`` with the
   brain mask given;
3. pyradiomics' first-order + GLCM: ``RadiomicsFeatureExtractor(force2D=True)`` with
   only those two classes enabled, image and mask as SimpleITK images, the same masks,
   and ours' 32 grey levels and distances 1, 2 and 4 (``binCount=32``,
   ``distances=[1, 2, 4]``).

"2 cores" is joblib with ``n_jobs=2`` over equal chunks of slices (one per worker),
for ours and for pyradiomics alike: the same 2-way parallelism, timed around the
whole ``Parallel`` call, dispatch included. The slices reach the workers as memory
maps, as joblib's own large arrays do, but saved once rather than on every call.
pyradiomics' workers turn their chunk into SimpleITK images first (well under 1% of
its time), ours read theirs into memory first; ours go over their chunk
``SUBSET_PASSES`` times, so that both runs last long enough for joblib's dispatch not
to count. The "1 core" columns time each over all the slices, one after the other,
in this process (milliseconds per slice), on in-memory arrays for ours and SimpleITK
images for pyradiomics, both made before the clock starts.
Every timing follows a warm-up run (imports, worker start-up, cached kernel
transforms) and keeps the best of ``--repeats`` runs of ``time.perf_counter``; the
runs being compared take turns, so that load from elsewhere on the machine falls on
both alike. The ratio is pyradiomics' time over ours.

Then come each texture family's milliseconds per slice on one core (brain mask
excluded) and the Gabor bank by FFT against scikit-image's ``filters.gabor`` (one
spatial convolution per filter). Slices are real (``../shared/data/ct-ich-dev``,
brought to Hounsfield units with ``scans.to_hounsfield`` and resized with
``scans.Resize``) or, when that folder is absent, phantom slices. Results print as
Markdown. Timings share the machine with whatever else runs on it: run it on an idle
one.

bench
-----
pyradiomics is a benchmark-only dependency (not in ``setup.cfg``). PyPI has no wheel
of it for Python 3.11, so pip builds the 3.1.0 source: its build needs versioneer and
compiles a C extension against the venv's numpy 2, hence no build isolation. It
brings SimpleITK (and reports its version as v3.0.1, a versioneer quirk)::

    .venv/bin/pip install versioneer wheel
    .venv/bin/pip install --no-build-isolation pyradiomics

Run from the repository root (about three minutes on 2 cores)::

    .venv/bin/python benchmarks/features_bench.py
    .venv/bin/python benchmarks/features_bench.py --data ../shared/data/ct-ich-dev \\
        --slices 96 --sizes 256 512 --n-jobs 2 --repeats 3

Without pyradiomics the script says so and times ours only.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from ichkit import scans
from ichkit.features.brain import brain_mask
from ichkit.features.gabor import GaborFeatures
from ichkit.features.glcm import GLCMFeatures
from ichkit.features.hog import HOGFeatures
from ichkit.features.intensity import FirstOrderFeatures
from ichkit.features.lbp import LBPFeatures
from ichkit.features.union import HandcraftedFeatures

DEFAULT_DATA = "../shared/data/ct-ich-dev"
#: Slices whose brain has fewer pixels are left out of the comparison with
#: pyradiomics, which rejects empty and tiny masks.
MIN_BRAIN_PIXELS = 64
PYRADIOMICS_INSTALL = (
    ".venv/bin/pip install versioneer wheel && "
    ".venv/bin/pip install --no-build-isolation pyradiomics"
)
#: On 2 cores our subset goes over its slices this many times per run, so that the
#: run (about 0.5 s at 256x256) outlasts joblib's dispatch (about 10 ms a call) as
#: pyradiomics' single pass does.
SUBSET_PASSES = 8
#: pyradiomics settings that match ours: 32 grey levels, distances 1, 2 and 4.
PYRADIOMICS_SETTINGS = {
    "force2D": True,
    "binCount": 32,
    "distances": [1, 2, 4],
    "additionalInfo": False,
}


# --------------------------------------------------------------------------- slices


def load_slices(data: str, n_slices: int, size: int) -> tuple[np.ndarray, str]:
    """``n_slices`` evenly spaced slices in Hounsfield units, resized to ``size``."""
    resize = scans.Resize(size)
    if Path(data).is_dir():
        dataset = scans.load(data, verify=False)
        positions = np.linspace(0, len(dataset) - 1, min(n_slices, len(dataset))).astype(int)
        slices = [resize(scans.to_hounsfield(dataset.read(int(i)))) for i in positions]
        return np.stack(slices).astype(np.float32), f"{data} ({len(dataset)} slices)"
    from ichkit.scans.phantom import make_phantom_scans

    n_scans = max(1, -(-n_slices // 24))
    phantoms = make_phantom_scans(n_scans, seed=0, size=size, n_slices=24)
    stack = np.concatenate([phantom.hu for phantom in phantoms])[:n_slices]
    return stack.astype(np.float32), f"phantom slices ({data} not found)"


def chunks(n_items: int, n_chunks: int) -> list[slice]:
    """``n_chunks`` consecutive, nearly equal slices of ``range(n_items)``."""
    bounds = np.linspace(0, n_items, min(n_chunks, n_items) + 1).astype(int)
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


def interleaved_best(runs: dict, repeats: int) -> dict[str, float]:
    """Seconds of the fastest of ``repeats`` calls of each run, after a warm-up call.

    The runs take turns, so that load from elsewhere on the machine falls on all of
    them alike.
    """
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, math.inf)
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def per_slice_best(runs: dict, n_slices: int, repeats: int) -> dict[str, float]:
    """Milliseconds per slice: the mean over slices of each run's fastest call on it.

    ``runs`` maps names to ``run(index)``; they take turns slice by slice, after a
    warm-up call on slice 0.
    """
    for run in runs.values():
        run(0)
    best = {name: np.full(n_slices, math.inf) for name in runs}
    for _ in range(repeats):
        for index in range(n_slices):
            for name, run in runs.items():
                start = time.perf_counter()
                run(index)
                best[name][index] = min(best[name][index], time.perf_counter() - start)
    return {name: float(times.mean() * 1000) for name, times in best.items()}


def on_chunks(parallel: Parallel, task, arrays: tuple, n_jobs: int):
    """A run of ``task(*chunk_of_arrays)`` over ``n_jobs`` equal chunks in ``parallel``."""
    parts = chunks(len(arrays[0]), n_jobs)
    return lambda: parallel(delayed(task)(*(array[part] for array in arrays)) for part in parts)


# --------------------------------------------------------------------------- ours


def subset_features(extractors, images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """GLCM + first-order features of slices whose brain masks are given."""
    return np.stack(
        [
            np.concatenate([extractor._features(image, mask) for extractor in extractors])
            for image, mask in zip(images, masks, strict=True)
        ]
    )


def subset_passes(extractors, images: np.ndarray, masks: np.ndarray) -> list[np.ndarray]:
    """``SUBSET_PASSES`` passes of ``subset_features`` over a worker's chunk, read into
    memory once first, as pyradiomics' workers build their SimpleITK images first:
    both time features, not memory-map reads."""
    images, masks = np.array(images), np.array(masks)
    return [subset_features(extractors, images, masks) for _ in range(SUBSET_PASSES)]


def family_times(X: np.ndarray, masks: np.ndarray, repeats: int) -> dict[str, float]:
    """Milliseconds per slice of each family on one core, brain mask excluded."""
    extractors = [
        GLCMFeatures(),
        LBPFeatures(),
        HOGFeatures(),
        GaborFeatures(),
        FirstOrderFeatures(),
    ]
    runs = {}
    for extractor in extractors:
        extractor.fit(X[:1])
        name = f"{type(extractor).__name__} ({len(extractor.get_feature_names_out())})"
        runs[name] = lambda index, extractor=extractor: extractor._features(X[index], masks[index])
    runs["brain_mask (not a family)"] = lambda index: brain_mask(X[index])
    return per_slice_best(runs, len(X), repeats)


def gabor_reference(X: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """Milliseconds per slice of ``GaborFeatures`` and of scikit-image's ``gabor``, same bank."""
    from skimage.filters import gabor

    extractor = GaborFeatures().fit(X[:1])
    lower = extractor.window_center - extractor.window_width / 2

    def spatial(index: int) -> None:
        image, mask = X[index], masks[index]
        windowed = np.clip((image - lower) / extractor.window_width, 0, 1)
        windowed = np.where(mask, windowed - windowed[mask].mean(), 0)
        for frequency in extractor.frequencies:
            for orientation in extractor.orientations:
                real, imaginary = gabor(
                    windowed, frequency, theta=np.deg2rad(orientation), mode="constant"
                )
                magnitude = np.hypot(real, imaginary)[mask]
                _ = magnitude.mean(), magnitude.std()

    ours = per_slice_best(
        {"fft": lambda index: extractor._features(X[index], masks[index])}, len(X), 3
    )["fft"]
    start = time.perf_counter()
    for index in range(len(X)):
        spatial(index)
    return ours, (time.perf_counter() - start) * 1000 / len(X)


# --------------------------------------------------------------------------- pyradiomics


def pyradiomics_missing() -> str | None:
    """Why pyradiomics cannot be used here, or None."""
    try:
        import SimpleITK  # noqa: F401
        from radiomics import featureextractor  # noqa: F401
    except ImportError as error:
        return (
            f"pyradiomics is not installed ({error}), so only ours was timed. "
            f"Install it with: {PYRADIOMICS_INSTALL}"
        )
    return None


def pyradiomics_extractor():
    """pyradiomics' first-order + GLCM extractor with settings that match ours."""
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    extractor = featureextractor.RadiomicsFeatureExtractor(**PYRADIOMICS_SETTINGS)
    extractor.disableAllFeatures()
    extractor.enableFeatureClassByName("firstorder")
    extractor.enableFeatureClassByName("glcm")
    return extractor


def to_simpleitk(images: np.ndarray, masks: np.ndarray) -> list:
    """One (image, mask) pair of one-slice SimpleITK volumes per slice."""
    import SimpleITK as sitk

    return [
        (
            sitk.GetImageFromArray(image[np.newaxis].astype(np.float32)),
            sitk.GetImageFromArray(mask[np.newaxis].astype(np.uint8)),
        )
        for image, mask in zip(images, masks, strict=True)
    ]


def pyradiomics_features(images: np.ndarray, masks: np.ndarray) -> list:
    """pyradiomics' features of a chunk of slices, in a joblib worker."""
    extractor = pyradiomics_extractor()
    return [extractor.execute(image, mask) for image, mask in to_simpleitk(images, masks)]


# --------------------------------------------------------------------------- one size


def memory_mapped(folder: Path, **arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays saved under ``folder`` and opened read-only as memory maps.

    joblib hands a memory map (and any slice of one) to its workers by file name,
    where it would copy a plain array into a new file on every call: 125 MB a run at
    512x512, which would time the copy rather than the features.
    """
    opened = []
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
        opened.append(np.load(folder / f"{name}.npy", mmap_mode="r"))
    return opened


def benchmark_size(
    data: str,
    n_slices: int,
    size: int,
    n_jobs: int,
    repeats: int,
    with_pyradiomics: bool,
    folder: Path,
) -> tuple[dict, dict[str, float], tuple]:
    """One row of the main table, the family times, and the slices for the Gabor check."""
    X, source = load_slices(data, n_slices, size)
    masks = np.stack([brain_mask(image) for image in X])
    with_brain = masks.sum(axis=(1, 2)) >= MIN_BRAIN_PIXELS
    print(f"{size}x{size}: {len(X)} slices from {source}, {with_brain.sum()} with a brain")
    X, brain_X, brain_masks = memory_mapped(
        folder, slices=X, brain_slices=X[with_brain], brain_masks=masks[with_brain]
    )

    extractor = HandcraftedFeatures().fit(X[:1])
    subset = [FirstOrderFeatures().fit(X[:1]), GLCMFeatures().fit(X[:1])]
    with Parallel(n_jobs=n_jobs) as parallel:
        runs = {
            "full": on_chunks(parallel, extractor.transform, (X,), n_jobs),
            "ours": on_chunks(
                parallel,
                lambda images, brains: subset_passes(subset, images, brains),
                (brain_X, brain_masks),
                n_jobs,
            ),
        }
        if with_pyradiomics:
            runs["theirs"] = on_chunks(
                parallel, pyradiomics_features, (brain_X, brain_masks), n_jobs
            )
        parallel_seconds = interleaved_best(runs, repeats)
    # In memory, as pyradiomics' SimpleITK images are, before the clock starts; each
    # goes over every slice in turn, as an extraction does (taking turns slice by
    # slice would time ours on caches that pyradiomics' large arrays have just
    # emptied, which no extraction of a data set meets).
    in_memory = np.array(brain_X), np.array(brain_masks)
    one_core = {"ours": lambda: subset_features(subset, *in_memory)}
    if with_pyradiomics:
        radiomics = pyradiomics_extractor()
        pairs = to_simpleitk(brain_X, brain_masks)
        one_core["theirs"] = lambda: [radiomics.execute(*pair) for pair in pairs]
    one_core_ms = {
        name: seconds * 1000 / len(brain_X)
        for name, seconds in interleaved_best(one_core, repeats).items()
    }

    slices_per_run = {"full": len(X), "ours": SUBSET_PASSES * len(brain_X), "theirs": len(brain_X)}
    rates = {name: slices_per_run[name] / seconds for name, seconds in parallel_seconds.items()}
    row = {
        "size": f"{size}x{size}",
        "slices": f"{len(X)} ({len(brain_X)})",
        "full": f"{rates['full']:.0f}/s ({len(extractor.get_feature_names_out())} features)",
        "ours 2": f"{rates['ours']:.0f}/s",
        "ours 1": f"{one_core_ms['ours']:.2f} ms",
    }
    if with_pyradiomics:
        row["theirs 2"] = f"{rates['theirs']:.1f}/s"
        row["ratio 2"] = f"**{rates['ours'] / rates['theirs']:.0f}x**"
        row["theirs 1"] = f"{one_core_ms['theirs']:.1f} ms"
        row["ratio 1"] = f"{one_core_ms['theirs'] / one_core_ms['ours']:.0f}x"
    else:
        row.update(dict.fromkeys(["theirs 2", "ratio 2", "theirs 1", "ratio 1"], "n/a"))
    return row, family_times(brain_X, brain_masks, repeats), (brain_X, brain_masks)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help=f"data set (default {DEFAULT_DATA})")
    parser.add_argument("--slices", type=int, default=96, help="slices per size (default 96)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib workers (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (3)")
    parser.add_argument(
        "--gabor-slices",
        type=int,
        default=2,
        help="slices for the scikit-image gabor reference at the first size (0 skips it)",
    )
    args = parser.parse_args(argv)

    missing = pyradiomics_missing()
    rows, families, notes = [], {}, []
    if missing:
        notes.append(missing)
    load_before = os.getloadavg()[0]
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as folder:
            row, families[size], (brain_X, brain_masks) = benchmark_size(
                args.data,
                args.slices,
                size,
                args.n_jobs,
                args.repeats,
                missing is None,
                Path(folder),
            )
            brain_X, brain_masks = np.array(brain_X), np.array(brain_masks)
        rows.append(row)
        if size == args.sizes[0] and args.gabor_slices:
            fft_ms, spatial_ms = gabor_reference(
                brain_X[: args.gabor_slices], brain_masks[: args.gabor_slices]
            )
            notes.append(
                f"Gabor bank ({size}x{size}, one core, {args.gabor_slices} slices): FFT "
                f"{fft_ms:.1f} ms per slice, scikit-image `filters.gabor` {spatial_ms:.0f} ms "
                f"per slice, {spatial_ms / fft_ms:.0f} times slower."
            )

    cores = f"{args.n_jobs} cores"
    headers = {
        "size": "size",
        "slices": "slices (with a brain)",
        "full": f"full set, {cores}",
        "ours 2": f"GLCM + first order, ours, {cores}",
        "theirs 2": f"pyradiomics, {cores}",
        "ratio 2": f"ours / pyradiomics, {cores}",
        "ours 1": "ours, 1 core",
        "theirs 1": "pyradiomics, 1 core",
        "ratio 1": "ratio, 1 core",
    }
    print()
    print("| " + " | ".join(headers.values()) + " |")
    print("|" + " --- |" * len(headers))
    for row in rows:
        print("| " + " | ".join(row[key] for key in headers) + " |")
    print()
    sizes = list(families)
    print("| ms per slice, 1 core | " + " | ".join(f"{size}x{size}" for size in sizes) + " |")
    print("|" + " --- |" * (1 + len(sizes)))
    for family in families[sizes[0]]:
        cells = [f"{families[size][family]:.2f}" for size in sizes]
        print(f"| {family} | " + " | ".join(cells) + " |")
    notes.append(
        f"Load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
        f"on {os.cpu_count()} CPUs: anything above 0 is other work sharing the cores."
    )
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
