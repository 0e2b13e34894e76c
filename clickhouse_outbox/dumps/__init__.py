"""
Full dumps in the background: a dump job lists its courses once, then workers claim them
in chunks (leases, as batches are claimed) and take a snapshot of each through the outbox.

`jobs` starts, cancels and reports on jobs; `run` does the work (in a celery task or in a
management command); `ranges` walks the learner tables by key range for a whole-table dump
(nothing listed); `dispatch` hands jobs to celery and picks up the ones a dead worker left;
`initial` is the first backfill after install (`outbox_backfill`).
"""
