"""
Helpers for tests and benchmarks: synthetic OLX courses (`generator`).

Nothing here is imported by the plugin at run time.
"""
