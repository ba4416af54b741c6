"""The benchmark suite of issue 4: `python bench/run.py` (see bench/README.md)."""
