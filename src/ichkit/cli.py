"""The ``ichkit`` command: ``data inspect``, ``phantom``, ``run``, ``list-models``,
``list-configs``, ``serve``, ``evaluate``, ``predict``. It sits above every other
package (the import contracts say so): it only parses arguments and calls them."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ichkit`` command line; returns the exit status."""
    parser = _build_parser()
    arguments = parser.parse_args(argv)
    if not hasattr(arguments, "handler"):
        parser.print_help()
        return 2
    try:
        return arguments.handler(arguments)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        # Bad input (ScanReadError and DatasetError are ValueErrors): a message, not a trace.
        print(f"ichkit: error: {error}", file=sys.stderr)
        return 2


def _build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(
        prog="ichkit",
        description="Intracranial hemorrhage detection on head CT: data, baselines, comparison.",
    )
    parser.add_argument("--version", action="version", version=f"ichkit {version('ichkit')}")
    commands = parser.add_subparsers(title="commands")

    data = commands.add_parser("data", help="work with data sets").add_subparsers(title="data")
    inspect = data.add_parser("inspect", help="load a data set and report what it holds")
    inspect.add_argument("path", help="data set folder (or one DICOM/NIfTI file)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.add_argument(
        "--plausibility",
        action="store_true",
        help="flag slices and scans that do not look like head CT (reads every slice)",
    )
    _add_data_options(inspect)
    inspect.add_argument("--strict", action="store_true", help="stop at the first bad file")
    inspect.add_argument(
        "--duplicates",
        action="store_true",
        help="split by patient (70/15/15) and report near-identical slices across parts",
    )
    inspect.add_argument("--seed", type=int, default=0, help="seed of that split")
    inspect.set_defaults(handler=_inspect)

    run = commands.add_parser("run", help="train and compare models on a data set")
    run.add_argument("config", help="a preset (quick, paper: see list-configs) or a YAML file")
    run.add_argument("--data", required=True, help="data set folder (any layout ichkit.load reads)")
    run.add_argument("--out", required=True, help="run folder to write (resumed if it exists)")
    run.add_argument("--cv", type=int, help="K patient-grouped folds instead of one split")
    run.add_argument("--models", help="comma-separated model names (see ichkit list-models)")
    run.add_argument(
        "--targets",
        help="comma-separated targets: any, then subtypes (epidural, subdural, subarachnoid, "
        "intraparenchymal, intraventricular); default: the config's (any)",
    )
    run.add_argument(
        "--backend", choices=("loky", "dask"), help="parallel work: local processes or Dask"
    )
    run.add_argument("--scheduler", help="Dask scheduler address; none: a local cluster")
    run.add_argument("--workers", type=int, help="workers of the local Dask cluster")
    _add_data_options(run)
    run.add_argument(
        "--one-slice-per-patient",
        action="store_true",
        default=None,
        help="loose images without patient ids: state that each is a different person",
    )
    run.set_defaults(handler=_run)

    listing = commands.add_parser("list-models", help="the model names configs and --models take")
    listing.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'mob*'")
    listing.add_argument("--configs", action="store_true", help="list the config presets instead")
    listing.set_defaults(handler=_list_models)

    presets = commands.add_parser("list-configs", help="the config presets 'ichkit run' takes")
    presets.set_defaults(handler=_list_configs)

    serve = commands.add_parser("serve", help="web app and JSON API over a finished run's models")
    serve.add_argument("run_dir", nargs="?", help="a folder written by 'ichkit run'")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    serve.add_argument("--max-upload-mb", type=float, default=200, help="largest upload, MB")
    serve.add_argument("--threads", type=int, default=8, help="requests answered at once")
    serve.add_argument("--no-onnx", action="store_true", help="predict with Keras, not ONNX")
    serve.add_argument(
        "--channel-timeout",
        type=int,
        metavar="S",
        help="close a connection idle this many seconds, no request in progress (default 30)",
    )
    serve.add_argument(
        "--connection-limit",
        type=int,
        metavar="N",
        help="connections held open at once; more wait in the backlog (default 400)",
    )
    serve.set_defaults(handler=_serve)

    evaluate = commands.add_parser(
        "evaluate", help="external validation: a finished run's models on another labelled data set"
    )
    evaluate.add_argument("run_dir", help="a folder written by 'ichkit run'")
    evaluate.add_argument("--data", required=True, help="labelled data set (any layout)")
    evaluate.add_argument("--out", required=True, help="new folder for the results")
    predict = commands.add_parser(
        "predict", help="a finished run's probabilities and verdicts for every slice and scan"
    )
    predict.add_argument("run_dir", help="a folder written by 'ichkit run'")
    predict.add_argument("path", help="slices or scans, labelled or not (any layout)")
    predict.add_argument("--out", required=True, help="CSV file to write")
    predict.add_argument(
        "--model", help="a model of the run, or 'all' (default: its best that reads the data)"
    )
    for external in (evaluate, predict):
        _add_data_options(external)
        external.add_argument("--no-onnx", action="store_true", help="CNNs with Keras, not ONNX")
    evaluate.add_argument(
        "--one-slice-per-patient",
        action="store_true",
        help="loose images without patient ids: each image is a different patient",
    )
    evaluate.set_defaults(handler=_evaluate)
    predict.set_defaults(handler=_predict)

    phantom = commands.add_parser("phantom", help="write a synthetic head CT data set")
    phantom.add_argument("out", help="folder to create")
    phantom.add_argument("--scans", type=int, default=8, help="number of scans (patients)")
    phantom.add_argument("--seed", type=int, default=0, help="random seed")
    phantom.add_argument(
        "--format", default="png", choices=("png", "dicom", "nifti", "ctich"), help="layout"
    )
    phantom.add_argument("--size", type=int, default=128, help="slice width and height, pixels")
    phantom.add_argument("--slices", type=int, default=24, help="slices per scan")
    phantom.set_defaults(handler=_phantom)
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    """How a data set is read: the same options for every command that reads one."""
    parser.add_argument("--kind", help="layout: ctich, nifti, dicom, csv or folders")
    parser.add_argument("--labels", help="label CSV, when not labels.csv in the folder")
    parser.add_argument(
        "--patient-pattern", help="regex with a group 'patient' finding loose images' patient"
    )
    parser.add_argument(
        "--class-names",
        type=_class_names,
        help="extra class folder names and labels, e.g. 'bleed=1,clear=0'",
    )


def _data_options(arguments: argparse.Namespace) -> dict:
    """The options ``_add_data_options`` added, as ``scans.load`` takes them."""
    return {
        "kind": arguments.kind,
        "labels": arguments.labels,
        "patient_pattern": arguments.patient_pattern,
        "class_names": arguments.class_names,
    }


def _class_names(text: str) -> dict[str, int]:
    names = {}
    for item in text.split(","):
        name, _, label = item.partition("=")
        if label.strip() not in ("0", "1") or not name.strip():
            raise argparse.ArgumentTypeError(
                f"class names are FOLDER=0 or FOLDER=1, comma-separated; got {item!r}"
            )
        names[name.strip()] = int(label)
    return names


def _inspect(arguments: argparse.Namespace) -> int:
    import warnings

    from ichkit import scans
    from ichkit.scans.inspect import format_inspection, inspect

    with warnings.catch_warnings():
        # The summary lists every skipped file; the loader's warning would repeat it.
        warnings.simplefilter("ignore", UserWarning)
        dataset = scans.load(
            arguments.path,
            kind=arguments.kind,
            labels=arguments.labels,
            strict=arguments.strict,
            patient_pattern=arguments.patient_pattern,
            class_names=arguments.class_names,
        )
    summary = inspect(
        dataset,
        duplicates=arguments.duplicates,
        random_state=arguments.seed,
        plausibility=arguments.plausibility,
    )
    print(json.dumps(summary, indent=2) if arguments.json else format_inspection(summary))
    return 0


def _phantom(arguments: argparse.Namespace) -> int:
    from ichkit.scans.phantom import write_phantom

    out = write_phantom(
        arguments.out,
        arguments.scans,
        seed=arguments.seed,
        format=arguments.format,
        size=arguments.size,
        n_slices=arguments.slices,
    )
    print(f"Wrote {arguments.scans} phantom scans ({arguments.format}) to {out}")
    return 0


def _run(arguments: argparse.Namespace) -> int:
    from ichkit.experiments.run_folder import RunFolder
    from ichkit.experiments.runner import run_experiment

    models = arguments.models.split(",") if arguments.models else None
    targets = arguments.targets.split(",") if arguments.targets else None
    backend = arguments.backend or ("dask" if arguments.scheduler else None)
    parallel = {"backend": backend, "scheduler": arguments.scheduler,
                "n_workers": arguments.workers}  # fmt: skip
    dataset = {**_data_options(arguments),
               "one_slice_per_patient": arguments.one_slice_per_patient}  # fmt: skip
    run_experiment(arguments.config, arguments.data, arguments.out, cv=arguments.cv,
                   models=models, targets=targets, parallel=parallel, dataset=dataset)  # fmt: skip
    print(RunFolder(arguments.out).report_path("markdown").read_text())
    print(
        f"Results in {arguments.out}: report.html (open it in a browser), model_card.md, "
        "comparison.md and .tex, metrics.csv, summary.csv, plots/, models/"
    )
    return 0


_NO_RUN = """ichkit serve needs a run folder: the models it serves are those a run trained.
Make one (the run takes a few minutes on 2 cores), then serve it:

    ichkit phantom runs/phantom --scans 12
    ichkit run quick --data runs/phantom --out runs/quick
    ichkit serve runs/quick

`make demo` makes runs/demo/run the same way."""


def _serve(arguments: argparse.Namespace) -> int:
    if arguments.run_dir is None:
        print(_NO_RUN, file=sys.stderr)
        return 2
    from ichkit.webapp import serve

    # Unset limits take serve()'s defaults, which ichkit.webapp.app decides and documents.
    limits = {
        name: value
        for name in ("channel_timeout", "connection_limit")
        if (value := getattr(arguments, name)) is not None
    }
    serve(
        arguments.run_dir,
        host=arguments.host,
        port=arguments.port,
        max_upload_mb=arguments.max_upload_mb,
        threads=arguments.threads,
        onnx=not arguments.no_onnx,
        **limits,
    )
    return 0


def _list_models(arguments: argparse.Namespace) -> int:
    if arguments.configs:
        return _list_configs(arguments)
    from ichkit.experiments.registry import list_models, resolve

    for name in list_models(arguments.pattern):
        print(f"{name:12s} {resolve(name).family}")
    return 0


def _list_configs(arguments: argparse.Namespace) -> int:
    from ichkit.experiments.config import list_configs

    for name, description in list_configs().items():
        print(f"{name:8s} {description}")
    return 0


def _evaluate(arguments: argparse.Namespace) -> int:
    from ichkit.experiments.external import evaluate_run
    from ichkit.experiments.run_folder import RunFolder

    evaluate_run(
        arguments.run_dir,
        arguments.data,
        arguments.out,
        **_data_options(arguments),
        one_slice_per_patient=arguments.one_slice_per_patient,
        onnx=not arguments.no_onnx,
    )
    print(RunFolder(arguments.out).report_path("markdown").read_text())
    print(
        f"External validation in {arguments.out}: report.html, comparison.md, metrics.csv, "
        "summary.csv, plots/, predictions/, external.json (the source run and its thresholds)"
    )
    return 0


def _predict(arguments: argparse.Namespace) -> int:
    from ichkit.experiments.external import predict_run, prediction_summary

    predictions = predict_run(
        arguments.run_dir,
        arguments.path,
        arguments.out,
        model=arguments.model,
        **_data_options(arguments),
        onnx=not arguments.no_onnx,
    )
    for line in prediction_summary(predictions):
        print(line)
    for note in predictions.attrs["notes"]:
        print(f"Note: {note}")
    skipped = predictions.attrs["skipped"]
    if skipped:
        print(f"Skipped {len(skipped)} unreadable files or slices (listed beside the CSV):")
        for line in skipped[:10]:
            print(f"  {line}")
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more")
    print(f"Wrote {len(predictions)} rows to {arguments.out}")
    return 0
