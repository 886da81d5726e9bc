"""The pictures of an answer as base64 PNG: the slice, its Grad-CAM overlay, the slice plot."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

__all__ = ["overlay_png", "slice_plot_png", "slice_png"]


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _brain_window(image: np.ndarray) -> np.ndarray:
    """The brain window of the slice itself in a model input: the first channel of its
    three-window stack, the middle stack of a 2.5-D input (neighbours below and above)."""
    return image[..., (image.shape[-1] // 3 // 2) * 3] if image.ndim == 3 else image


def slice_png(image: np.ndarray) -> str:
    """A model input in [0, 1], shown in its brain window."""
    return _png(np.rint(np.clip(_brain_window(image), 0, 1) * 255).astype(np.uint8))


def overlay_png(image: np.ndarray, heatmap: np.ndarray) -> str:
    """Grad-CAM ``heatmap`` over the brain window of ``image`` (``ichkit.deep.gradcam.overlay``)."""
    from ichkit.deep.gradcam import overlay

    return _png(overlay(np.clip(_brain_window(image), 0, 1), heatmap, alpha=0.4))


def slice_plot_png(
    probability: np.ndarray, threshold: float, marked: list[int], *, title: str
) -> str:
    """Probability of each slice in scan order, the slice threshold, the slices marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure on the Agg canvas, as experiments.report draws: no pyplot, no global backend.
    figure = Figure(figsize=(7, 2.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = np.arange(len(probability))
    axes.plot(positions, probability, marker="o", markersize=3, color="#1f4e79")
    axes.axhline(threshold, color="#b22222", linestyle="--", label=f"threshold {threshold:.2f}")
    axes.scatter(
        marked,
        probability[marked],
        s=60,
        facecolors="none",
        edgecolors="#e07b00",
        label="look at first",
        zorder=3,
    )
    axes.set(xlabel="slice (scan order)", ylabel="probability", ylim=(-0.02, 1.02), title=title)
    axes.legend(loc="upper right", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
