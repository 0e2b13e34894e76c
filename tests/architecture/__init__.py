"""The shape of the code: which module may import which (docs/architecture.rst)."""
