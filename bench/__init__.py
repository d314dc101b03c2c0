"""Benchmarks that print cdrecon's figures beside a reference: `python -m bench.<name>`."""
