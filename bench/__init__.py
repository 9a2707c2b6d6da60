"""The microbenchmark grid: `python -m bench` from the repository, or `nanonorm bench`."""
