"""Running a search: the loop (``search``), data and splits, evaluation, data-parallel ranks,
the checkpoint and the reports a run writes."""
