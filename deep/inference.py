"""Run an exported classifier with ONNX Runtime or OpenVINO: no Keras, no torch.

``OnnxClassifier`` loads a file written by ``ichkit.deep.export.export_onnx`` (or its int8
version from ``quantize_static_int8`` or ``quantize_dynamic_int8``). It is meant for the
project's own exports, kept on the server: an ONNX file is a program, so never load one a
user uploaded::

    classifier = OnnxClassifier("runs/mobilenetv2.onnx", n_threads=1)
    probabilities = classifier.predict_proba(images)  # (n, 224, 224, 3) in [0, 1] -> (n,)
    OnnxClassifier("runs/mobilenetv2.int8.onnx", engine="openvino")  # the same file, OpenVINO
"""

from __future__ import annotations

import importlib.util
import numbers
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["ENGINES", "OnnxClassifier", "available_engines", "median_latency_ms"]

_DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
#: The engines that run an ONNX file. OpenVINO reads the same file (QDQ int8 included)
#: and is an optional install (``pip install openvino``).
ENGINES = ("onnxruntime", "openvino")


class OnnxClassifier:
    """A slice classifier exported to ONNX, run by ONNX Runtime or OpenVINO.

    Parameters
    ----------
    path : str or Path
        An ONNX file written by ``export_onnx``, ``quantize_static_int8`` or
        ``quantize_dynamic_int8``.
    providers : sequence of str or None, default=None
        ONNX Runtime execution providers in order of preference; None uses
        ``("CPUExecutionProvider",)``. ``onnxruntime.get_available_providers()``
        lists those of this installation. Ignored by OpenVINO (it runs on the CPU).
    n_threads : int or None, default=None
        Threads used inside one operator (ONNX Runtime's ``intra_op_num_threads``,
        OpenVINO's ``INFERENCE_NUM_THREADS``). None lets the engine choose (one per
        core); 1 suits a web server that answers several requests at once.
    engine : {"onnxruntime", "openvino"}, default="onnxruntime"
        What runs the file. OpenVINO compiles it for this CPU (``PERFORMANCE_HINT``
        ``LATENCY``); on CPUs with bfloat16 units it runs the float parts of a model
        in bfloat16, so its outputs differ from ONNX Runtime's in the third decimal.

    Attributes
    ----------
    path : Path
        The file loaded.
    engine : str
        The engine that runs the model.
    session : onnxruntime.InferenceSession or openvino.CompiledModel
        What runs the model.
    input_name : str
        Name of the model's input (``"image"`` for ichkit's classifiers).
    input_shape : tuple
        Shape of the input, batch axis first; None for a dynamic dimension (the batch).
    output_name : str
        Name of the first output (``"hemorrhage"`` for ichkit's classifiers).
    providers : list of str
        The providers the session uses (``["openvino"]`` for OpenVINO).
    metadata : dict of str to str
        Custom metadata of the file (``ichkit.model_name`` for ``export_onnx``'s files).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable ONNX model, a provider is not available, the
        engine is unknown, or ``n_threads`` is not a positive int.
    ImportError
        If ``engine="openvino"`` and OpenVINO is not installed.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: list[str] | tuple[str, ...] | None = None,
        n_threads: int | None = None,
        engine: str = "onnxruntime",
    ) -> None:
        import onnxruntime

        if engine not in ENGINES:
            raise ValueError(
                f"The 'engine' parameter of OnnxClassifier must be one of {ENGINES}. "
                f"Got {engine!r}."
            )
        self.path, self.engine = Path(path), engine
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
            # The ONNX Runtime session also reads the file's names, shapes and metadata
            # for OpenVINO, so both engines check and describe the file the same way.
            session = onnxruntime.InferenceSession(
                str(self.path), sess_options=options, providers=providers
            )
        except Exception as error:  # onnxruntime raises its own, unexported, error types
            raise ValueError(
                f"Cannot load '{self.path}' as an ONNX model: {error}. Re-export it with "
                "ichkit.deep.export.export_onnx."
            ) from error
        model_input = session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_shape = tuple(
            size if isinstance(size, int) else None for size in model_input.shape
        )
        self.output_name = session.get_outputs()[0].name
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        if engine == "onnxruntime":
            self.session, self.providers = session, session.get_providers()
        else:
            self.session, self.providers = _openvino_model(self.path, n_threads), ["openvino"]

    def __repr__(self) -> str:
        return (
            f"OnnxClassifier('{self.path}', input_shape={self.input_shape}, engine='{self.engine}')"
        )

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
        if self.engine == "openvino":
            # A request a call: OpenVINO's requests are not shared between threads, and the
            # web app predicts from several.
            outputs = self.session.create_infer_request().infer({0: images})[0]
        else:
            outputs = self.session.run([self.output_name], {self.input_name: images})[0]
        return np.asarray(outputs, dtype=np.float32).reshape(len(images), -1)


def _openvino_model(path: Path, n_threads: int | None):
    """The ONNX file compiled by OpenVINO for this CPU, tuned for one request at a time."""
    try:
        import openvino
    except ImportError as error:
        raise ImportError(
            f"OnnxClassifier('{path}', engine='openvino') needs OpenVINO: pip install openvino"
        ) from error
    settings = {"PERFORMANCE_HINT": "LATENCY"}
    if n_threads is not None:
        settings["INFERENCE_NUM_THREADS"] = int(n_threads)
    return openvino.Core().compile_model(str(path), "CPU", settings)


def available_engines() -> tuple[str, ...]:
    """The ``ENGINES`` installed here (ONNX Runtime always; OpenVINO where installed)."""
    return tuple(name for name in ENGINES if importlib.util.find_spec(name) is not None)


def median_latency_ms(predict: Callable[[np.ndarray], object], images: np.ndarray,
                      repeats: int = 15) -> float:  # fmt: skip
    """Median wall time of ``predict(images)`` in milliseconds over ``repeats`` calls,
    after two warm-up calls (the first call of an engine allocates and compiles).

    The median, not the mean: a call the operating system interrupts is an outlier of
    the machine, not of the model."""
    if repeats < 1:
        raise ValueError(f"median_latency_ms needs repeats >= 1. Got {repeats!r}.")
    for _ in range(2):
        predict(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(images)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)
