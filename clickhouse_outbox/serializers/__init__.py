"""
Serializers turn what a producer read into rows for the destination tables, encoded once
as JSONEachRow lines, compressed into gzip members (`payloads`): the outbox stores those
bytes and the drain sends them unchanged.
"""
