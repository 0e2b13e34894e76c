"""The celery tasks: the periodic drain, run in this process and by real celery processes."""
