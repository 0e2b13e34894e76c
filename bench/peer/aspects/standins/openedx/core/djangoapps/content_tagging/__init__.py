"""Stand-in for edx-platform's `openedx.core.djangoapps.content_tagging` (its api module only)."""
