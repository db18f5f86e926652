"""Training, evaluation and the model registry. Builds on ``features``; never imports ``pipeline``.

- ``settings``: ``ModelSettings`` (the ``models:`` config section);
- ``dataset``: labelled frames from feature tables and labels; ``split``: the time split by scoring time;
- ``train``: native LightGBM (``lgb.train``); ``scoring``: ``ScoringModel`` and its ``ModelCard``;
- ``evaluate``: per-entity metrics at a target FPR; ``baseline``: today's operator rules;
- ``reasons``: reason codes from SHAP contributions; ``plots``: evaluation figures;
- ``tasks``: the spam-SIM and spoof-call tasks end to end on pandas;
- ``registry``: MLflow logging, the ``champion`` alias, ``load_champion`` for the scorers.
"""
