"""Many cameras, one site: ``watch`` (N live cameras in one process, one model), its web dashboard, and
``batch`` (every video of an archive, on local processes or Ray). Above :mod:`maskdetect.infer` and
:mod:`maskdetect.monitor`: each camera composes one :func:`maskdetect.infer.loop.run_loop` per recording segment;
there is no second frame loop."""
