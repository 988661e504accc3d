"""Monitoring stage: tracking, people counting and compliance alerts, hooks, the review queue, and the
:class:`~maskdetect.monitor.monitor.Monitor` that combines them per frame."""
