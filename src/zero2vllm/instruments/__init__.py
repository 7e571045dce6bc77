"""Instruments: the serving benchmark, compare, the KV profiler, the HTTP client, the
naive week-2 API and the Prometheus helpers."""
