"""Run an exported classifier with ONNX Runtime: no Keras, no torch.

``OnnxClassifier`` loads a file written by ``ichkit.deep.export.export_onnx`` (or its int8
version from ``quantize_dynamic_int8``). It is meant for the project's own exports,
kept on the server: an ONNX file is a program, so never load one a user uploaded::

    classifier = OnnxClassifier("runs/mobilenetv2.onnx", n_threads=1)
    probabilities = classifier.predict_proba(images)  # (n, 224, 224, 3) in [0, 1] -> (n,)
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np

__all__ = ["OnnxClassifier"]

_DEFAULT_PROVIDERS = ("CPUExecutionProvider",)


class OnnxClassifier:
    """A slice classifier exported to ONNX, run by ``onnxruntime.InferenceSession``.

    Parameters
    ----------
    path : str or Path
        An ONNX file written by ``export_onnx`` or ``quantize_dynamic_int8``.
    providers : sequence of str or None, default=None
        ONNX Runtime execution providers in order of preference; None uses
        ``("CPUExecutionProvider",)``. ``onnxruntime.get_available_providers()``
        lists those of this installation.
    n_threads : int or None, default=None
        Threads used inside one operator (ONNX Runtime's ``intra_op_num_threads``).
        None lets ONNX Runtime choose (one per physical core); 1 suits a web server
        that answers several requests at once.

    Attributes
    ----------
    path : Path
        The file loaded.
    session : onnxruntime.InferenceSession
        The session that runs the model.
    input_name : str
        Name of the model's input (``"image"`` for ichkit's classifiers).
    input_shape : tuple
        Shape of the input, batch axis first; None for a dynamic dimension (the batch).
    output_name : str
        Name of the first output (``"hemorrhage"`` for ichkit's classifiers).
    providers : list of str
        The providers the session uses.
    metadata : dict of str to str
        Custom metadata of the file (``ichkit.model_name`` for ``export_onnx``'s files).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable ONNX model, a provider is not available, or
        ``n_threads`` is not a positive int.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: list[str] | tuple[str, ...] | None = None,
        n_threads: int | None = None,
    ) -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"ONNX model '{self.path}' for OnnxClassifier does not exist"
                f"{' (it is a folder)' if self.path.is_dir() else ''}. Export one with "
                "ichkit.deep.export.export_onnx(model, path, input_shape=...)."
            )
        providers = list(_DEFAULT_PROVIDERS if providers is None else providers)
        available = onnxruntime.get_available_providers()
        missing = [name for name in providers if name not in available]
        if missing or not providers:
            raise ValueError(
                f"The 'providers' parameter of OnnxClassifier must name providers available "
                f"in this onnxruntime installation: {available}. Got {providers}."
            )
        if n_threads is not None and (
            isinstance(n_threads, bool)
            or not isinstance(n_threads, numbers.Integral)
            or n_threads < 1
        ):
            raise ValueError(
                "The 'n_threads' parameter of OnnxClassifier must be None or an int >= 1. "
                f"Got {n_threads!r}."
            )
        options = onnxruntime.SessionOptions()
        if n_threads is not None:
            options.intra_op_num_threads = int(n_threads)
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=providers
            )
        except Exception as error:  # onnxruntime raises its own, unexported, error types
            raise ValueError(
                f"Cannot load '{self.path}' as an ONNX model: {error}. Re-export it with "
                "ichkit.deep.export.export_onnx."
            ) from error
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_shape = tuple(
            size if isinstance(size, int) else None for size in model_input.shape
        )
        self.output_name = self.session.get_outputs()[0].name
        self.providers = self.session.get_providers()
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __repr__(self) -> str:
        return f"OnnxClassifier('{self.path}', input_shape={self.input_shape})"

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probability of the first output (any hemorrhage) for each image.

        Parameters
        ----------
        images : array-like of shape (n, height, width, channels)
            Float in [0, 1], prepared as for the Keras model that was exported
            (same size, windows and channel order). Cast to float32.

        Returns
        -------
        ndarray of shape (n,), float32
            The first column of the first output. Unlike scikit-learn's
            ``predict_proba`` this is one column, not one per class.

        Raises
        ------
        ValueError
            If ``images`` does not match the model's input shape.
        """
        images = np.ascontiguousarray(images, dtype=np.float32)
        expected = self.input_shape
        if images.ndim != len(expected) or any(
            want is not None and want != got
            for want, got in zip(expected, images.shape, strict=True)
        ):
            shown = ", ".join("n" if size is None else str(size) for size in expected)
            raise ValueError(
                f"The 'images' parameter of OnnxClassifier.predict_proba must have shape "
                f"({shown}) for '{self.path}'. Got {images.shape}. Resize the slices to the "
                "exported input size; add a batch axis to one image: images[np.newaxis]."
            )
        return self.predict_outputs(images)[:, 0]

    def predict_outputs(self, images: np.ndarray) -> np.ndarray:
        """Every output column for each image: (n, n_outputs) float32 probabilities (any
        hemorrhage, then the subtypes where the model was trained on them). ``images``
        as for ``predict_proba``."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        outputs = self.session.run([self.output_name], {self.input_name: images})[0]
        return np.asarray(outputs, dtype=np.float32).reshape(len(images), -1)
