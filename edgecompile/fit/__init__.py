"""``edgecompile fit``: the most accurate FastGRNN, FastRNN or ERNN that fits a board's flash,
RAM and latency, searched over hidden size, ranks, sparsity, cell (an ERNN's inner steps) and
bits on a Dask cluster.

:mod:`~edgecompile.fit.space` draws the candidates, :mod:`~edgecompile.fit.trial` trains and
scores one, :mod:`~edgecompile.fit.costmodel` predicts its firmware's flash, RAM and cycles,
:mod:`~edgecompile.fit.search` runs the batches and keeps the cache.
"""
