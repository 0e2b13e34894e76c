"""edx-platform's `common.djangoapps` package (stand-in)."""
