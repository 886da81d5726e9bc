"""Running comparisons: the model registry, one object per model family, ``RunFolder``,
config presets, the runner, statistics, tables and reports.

``ichkit.experiments.registry`` resolves every model name;
``ichkit.experiments.families`` fits and serves each family's models;
``ichkit.experiments.run_folder.RunFolder`` names every file of a run;
``ichkit.experiments.runner.run_experiment`` is ``ichkit run``;
``ichkit.experiments.trained_run.TrainedRun`` applies a finished run's models, as
``ichkit.experiments.external`` does for ``ichkit evaluate`` and ``ichkit predict``.
"""
