"""
Everything that talks to ClickHouse: the destination tables, their schema, and the backends.
"""
