"""One module per paper: the pure functions its notebook calls and its tests check.

Every paper module offers the same small API, so that adding a paper means adding one module
(copy ``TEMPLATE.md`` beside this file) and one notebook, and nothing else:

=====================================  ======================================================
``specs(setup) -> {name: ModelSpec}``  every model the notebook trains, as plain data
``train(setup, device, cache_dir,      :func:`fkdlib.zoo.train_seeds` of those specs (or of
names=None, log, seeds=None)           ``names``), once per training seed, cached in the
-> {name: [model per seed]}``          model zoo
``evaluate(models, setup, device)``    :func:`fkdlib.evaluation.benchmark.evaluate_seeds`
                                       (or the paper's own evaluation, e.g. CIFAR logits)
table functions ``-> DataFrame``       ours beside the paper's stored tables
                                       (:mod:`fkdlib.report.references`)
``claims(...) -> list[Claim]``         the paper's claims, declared once
                                       (:class:`fkdlib.report.claims.Claim`)
``check_claims(...) -> DataFrame``     :func:`fkdlib.report.claims.evaluate_claims` of those
                                       claims with :func:`fkdlib.report.evidence.face_tests`
                                       plus the paper's own tests (seeds and identities
                                       resampled; ``unhealthy`` models not assessed)
=====================================  ======================================================

``setup`` is the face benchmark (:func:`fkdlib.evaluation.benchmark.face_benchmark`) or the
paper's own study object (SRRL's :class:`~fkdlib.experiments.srrl.SRRLStudy`). Figures use
the helpers of :mod:`fkdlib.report.figures` with the paper's colour map.
Nothing below this package imports it (``tests/test_layering.py``); the first and last cells
every notebook shares are :mod:`fkdlib.notebook`.
"""
