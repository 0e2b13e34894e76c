"""The serializers: rows against the data contract."""
