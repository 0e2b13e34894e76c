"""
Stand-in for edx-platform's `xmodule` package (edx-platform is not installable here).

Importable only while tests/test_plugin.py's `xmodule_standin` fixture has put
tests/standins on sys.path.
"""
