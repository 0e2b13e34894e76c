"""
A standalone Django project that runs clickhouse_outbox without edx-platform.

Its settings come from the environment (see settings.py); its course source is a folder of
OLX exports. `make demo` and the test suite use it.
"""

from .celery import app as celery_app

__all__ = ("celery_app",)
