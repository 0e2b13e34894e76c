"""Plugin settings for edx-platform, applied by the plugin system (see apps.py)."""
