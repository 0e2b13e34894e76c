"""
Reconciling what ClickHouse holds with what the outbox delivered and the source holds.

    held.py      what ClickHouse holds for a chunk of snapshots: one aggregate query per table
    verify.py    a chunk of subjects compared, each given a Verdict (ok, missing rows, ...)
    repair.py    what a verification that found differences does about them
    jobs.py      verifications run by the dump job runner (registered into its table of actions)

Verifications run as jobs (DumpJob.Action.VERIFY) on the dump jobs' code: listed once,
claimed in chunks under leases, resumed after a dead worker, with progress.
"""
