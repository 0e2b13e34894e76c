"""Stand-in for edx-platform's `xmodule.modulestore` package (see ../../README.txt)."""
