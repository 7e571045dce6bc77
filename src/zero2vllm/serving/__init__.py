"""Serving: the naive week-2 API (naive.py) and the Prometheus metrics it exposes (metrics.py).

Nothing here imports torch or flask at import time; `naive.create_app` does.
"""
