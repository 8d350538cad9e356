"""Benchmarks of what redmodel costs: parsers, mapper overhead, codecs, memory, scaling.

Run ``python -m benchmarks --quick`` (CI: every table in well under a minute) or
``python -m benchmarks --full``. Each section is one module with a ``run(ctx)`` returning a
:class:`benchmarks._common.Section` (Markdown tables and PNG plots); ``__main__`` prints the
machine, runs the sections against one server and writes ``results.md`` and the plots.

Every comparison is measured side by side in one run, samples interleaved (A B A B ...), and
reported as a median and a ratio: the machine is shared and noisy, so absolute numbers are
only indications.
"""
