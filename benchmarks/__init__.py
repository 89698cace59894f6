"""Scripts that measure speed and quality and print Markdown tables for BENCHMARKS.md.

Each runs from the checkout's root as a module, ``python -m benchmarks.NAME [--help]``, so it imports
this checkout's packages (the working folder comes first on the path) and nothing edits ``sys.path``.
What they share (timing, the machine a figure was measured on, tables) is ``benchmarks.harness``.
"""
