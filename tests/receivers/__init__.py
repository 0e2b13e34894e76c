"""The openedx-events receivers (receivers.py)."""
