"""Soft voting and stacking over other models' probabilities on the same fold."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ichkit.experiments.families._base import (
    FoldData,
    FoldFit,
    ModelFamily,
    ServingContext,
    held_out_frame,
    load_trusted_joblib,
)

__all__ = ["EnsembleFamily", "EnsembleFold"]


class EnsembleFamily(ModelFamily):
    """A combiner (``ichkit.ensemble``) learnt from its members' held-out predictions;
    saved with joblib together with its members' names."""

    name = "ensemble"
    suffix = ".joblib"
    reads = "predictions"

    def fit_fold(self, name: str, data: FoldData, config: dict, run) -> FoldFit:
        """Fit the combiner on the training-part rows that every member predicted
        without having fitted them (their held-out files in ``run``).

        With ``ensemble.select`` (the default), the members are first chosen on those
        rows (``ichkit.ensemble.select_members``: the best member, then each addition
        that improves the average's AUC), so an ensemble does not lose to its best
        member by averaging in weak ones; the saved fold names the members kept.

        Stacking's held-out rows are patient-grouped out-of-fold predictions of the
        combiner on those rows; voting fits nothing, so its held-out rows are its
        predictions of the rows themselves."""
        import joblib
        from sklearn.model_selection import cross_val_predict

        from ichkit.classical.tuning import grouped_folds

        fold = data.fold
        held_parts = {m: run.read_held_out(m, fold)["probability"].rename(m) for m in data.members}
        # A member without held-out predictions cannot be weighed (a classical model whose
        # target has too few positive training patients for its inner folds): left out.
        names = [member for member, part in held_parts.items() if not part.empty]
        unweighed = [member for member in data.members if member not in names]
        tests = {member: run.read_fold_predictions(member, fold) for member in names}
        held = pd.concat([held_parts[m] for m in names], axis=1).dropna() if names else None
        if held is None or held.empty:
            raise ValueError(
                f"'{name}' ({data.target}) has no training-part rows that all of its members "
                f"predicted out of sample ({', '.join(data.members)}); cannot fit it."
            )
        test = pd.concat(
            [tests[m].set_index("row")["probability"].rename(m) for m in names], axis=1
        )
        y = data.rows.loc[held.index, "label"].astype(int).to_numpy()  # the fold's target
        groups = data.rows.loc[held.index, "patient_id"].to_numpy()
        selection = "all kept (ensemble.select: false)"
        if config["ensemble"]["select"]:
            from ichkit.ensemble import select_members

            names, selection = select_members(held, y)
            held, test = held[names], test[names]
        if unweighed:
            selection += f"; {', '.join(unweighed)} left out: no held-out predictions"
        combiner, stacked = self.build(name), name != "voting"
        if stacked and np.unique(y).size < 2:
            from ichkit.ensemble import SoftVoting

            warnings.warn(
                f"{name}: the {len(y)} held-out training-part slices its members predicted "
                "hold one class only, so the combiner cannot learn; it averages the members "
                "(soft voting) on this fold.",
                UserWarning,
                stacklevel=2,
            )
            combiner, stacked = SoftVoting(), False
        combiner.fit(held.to_numpy(), y)
        path = run.model_path(name, fold)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"combiner": combiner, "members": names, "selection": selection}, path)
        folds = grouped_folds(y, groups, config["tuning"]["inner_folds"], config["seed"])
        if stacked and folds is not None:
            held_probability = cross_val_predict(
                self.build(name), held.to_numpy(), y, groups=groups, cv=folds,
                method="predict_proba",
            )[:, 1]  # fmt: skip
        else:
            held_probability = combiner.predict_proba(held.to_numpy())[:, 1]
        start = time.perf_counter()
        probability = combiner.predict_proba(test.to_numpy())[:, 1]
        combine_ms = (time.perf_counter() - start) * 1000 / len(test)
        members_ms = sum(float(tests[m]["ms_per_slice"].iloc[0]) for m in names)
        return FoldFit(
            probability,
            members_ms + combine_ms,  # every member, then the combiner (a shared CNN twice)
            held_out_frame(held.index, held_probability, True),
        )

    def members(self, run, name: str, fold: int) -> list[str]:
        """The members a saved fold combines, as its file lists them."""
        return list(load_trusted_joblib(run.model_path(name, fold))["members"])

    def fold_choices(self, run, name: str, fold: int) -> str:
        """How a saved fold's members were chosen (``select_members``' reason)."""
        return load_trusted_joblib(run.model_path(name, fold)).get("selection", "all kept")

    def load_fold(self, name: str, fold: int, context: ServingContext) -> EnsembleFold:
        payload = load_trusted_joblib(context.run.model_path(name, fold))
        members = {member: context.fold_model(member, fold) for member in payload["members"]}
        return EnsembleFold(payload["combiner"], members)

    def reads_scans(self, name: str, members: Sequence[str] = ()) -> bool:
        from ichkit.experiments.registry import family_of

        return any(family_of(member).reads_scans(member) for member in members)

    def heatmap_cnn(self, name, config, members=()):
        from ichkit.experiments.registry import family_of

        for member in members:
            cnn = family_of(member).heatmap_cnn(member, config)
            if cnn is not None:
                return cnn
        return None


class EnsembleFold:
    """A fitted combiner over its members' folds."""

    def __init__(self, combiner, members: dict):
        self.combiner, self.members = combiner, members
        self.engine = "combiner over " + ", ".join(members)

    def probability(self, slices, memo: dict) -> np.ndarray:
        columns = [fold.probability(slices, memo) for fold in self.members.values()]
        return self.combiner.predict_proba(np.column_stack(columns))[:, 1].astype(float)
