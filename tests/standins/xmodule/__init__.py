"""
Stand-in for edx-platform's `xmodule` package (edx-platform is not installable here).

Importable only while tests/plugin/test_wiring.py's `xmodule_standin` fixture has put
tests/standins on sys.path.
"""
