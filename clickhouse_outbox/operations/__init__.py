"""
What operators see of the outbox and do to it, apart from the pipeline that delivers it:
`status` (the health report of `outbox_status` and `outbox_drain`), `delivery` (where a
snapshot's rows are, for the admin and the verification) and `requeue` (retrying batches,
taking failed snapshots again, dismissing unknown subjects).
"""
