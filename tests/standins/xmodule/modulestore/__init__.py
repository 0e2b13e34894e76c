"""Stand-in for edx-platform's `xmodule.modulestore` (see tests/standins/xmodule/__init__.py)."""
