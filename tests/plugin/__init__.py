"""The Open edX plugin wiring (apps.py, settings, the receivers connected)."""
