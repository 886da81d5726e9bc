"""Where a run's parallel work goes: joblib's local processes, or a Dask cluster.

Every data-parallel step of ``ichkit run`` goes through joblib: reading, preparing and
describing slices (``ichkit.features.extraction``), hyperparameter searches
(``GridSearchCV``), and the per-model evaluation. Inside ``compute_backend("dask")``,
``joblib.parallel_config(backend="dask")`` sends all of it to a Dask cluster: the one
at ``scheduler``, or a ``distributed.LocalCluster`` on loopback. Dask's own scheduler
does the work; nothing here schedules anything. XGBoost then trains with
``xgboost.dask`` on the same cluster (``ichkit.classical.dask_xgboost``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["compute_backend", "n_jobs_for"]


@contextlib.contextmanager
def compute_backend(
    backend: str = "loky", *, scheduler: str | None = None, n_workers: int | None = None
) -> Iterator[object | None]:
    """Run the enclosed joblib work on ``backend``; yields the Dask client or None.

    Parameters
    ----------
    backend : {"loky", "dask"}, default="loky"
        ``loky``: local processes, joblib's default. ``dask``: a Dask cluster.
    scheduler : str, default=None
        Address of a running Dask scheduler (``tcp://host:8786``). None starts a
        ``LocalCluster`` of ``n_workers`` single-threaded worker processes on
        127.0.0.1, closed on exit.
    n_workers : int, default=None
        Workers of that local cluster; None: 2.
    """
    if backend == "loky":
        yield None
        return
    if backend != "dask":
        raise ValueError(f"backend must be 'loky' or 'dask'. Got {backend!r}.")
    import joblib

    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise ImportError(
            "The dask backend needs Dask's distributed scheduler: pip install 'ichkit[dask]'."
        ) from error

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=n_workers or 2, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None,
                )
            )  # fmt: skip
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(scheduler))
        stack.enter_context(joblib.parallel_config(backend="dask", client=client))
        # Dask's own context: inside it, ``Client.current(allow_global=False)`` is this
        # client (what ``classical.dask_xgboost`` trains on), not whichever client Dask
        # would call the default.
        stack.enter_context(client.as_current())
        yield client


def n_jobs_for(backend: str, n_jobs: int) -> int:
    """joblib's ``n_jobs`` for a backend: every Dask worker (-1), or ``n_jobs`` locally."""
    return -1 if backend == "dask" else n_jobs
