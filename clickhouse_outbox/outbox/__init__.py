"""
The transactional outbox: enqueue (inside the publish), then claim → send → finalise.
"""
