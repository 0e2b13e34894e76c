"""
What a whole-table verification by key range found of a subject it keeps no verdict of.

A verification that walks a learner table by key range (ADR 0017's addendum) writes a
``Verdict`` only for the subjects that are not ok and removes the older verdicts of the keys it
checked: a million ok profiles leave no million rows. A subject of such a producer that has no
verdict, and whose key a verification's cursor has passed, was found ok by that job; the
newest such job says when. The admin reads this instead of "never verified".
"""

from django.db.models import BigIntegerField, Case, OuterRef, Q, Subquery, When
from django.db.models.functions import Cast

from clickhouse_outbox.models import DumpCursor, DumpJob
from clickhouse_outbox.outbox import registry

#: The subject of a whole-table dump's chunk snapshot ("keys 1-20000"), not a row's key.
CHUNK_PREFIX = "keys "


def walked_producers():
    """The producers on whose whole-table verification walks the table by key range."""
    return [producer.name for producer in registry.enabled_producers() if producer.dumps_by_key_range]


def subject_key():
    """
    The primary key a key-range producer's one-row subject names, NULL for any other subject
    (a course key, a tag, a chunk's range): the CASE keeps those away from the cast.
    """
    producers = walked_producers()
    if not producers:
        return Case(default=None, output_field=BigIntegerField())
    one_row = Q(producer__in=producers) & ~Q(subject__startswith=CHUNK_PREFIX)
    return Case(When(one_row, then=Cast("subject", BigIntegerField())), default=None, output_field=BigIntegerField())


def with_range_check(snapshots):
    """
    Annotate each snapshot with the newest verification whose cursor of its producer passed
    its key (`range_job`, `range_checked_at`: the job's end, NULL while it runs); a subject
    with no verdict was found ok by that job.
    """
    passed = cursors_past()
    return snapshots.alias(range_key=subject_key()).annotate(
        range_job=Subquery(passed.values("job_id")[:1]),
        range_checked_at=Subquery(passed.values("job__finished_at")[:1]),
    )


def cursors_past():
    """The verification cursors of the outer snapshot's producer that passed its key, newest job first."""
    return (DumpCursor.objects.filter(job__action=DumpJob.Action.VERIFY, producer=OuterRef("producer"),
                                      last_key__gte=OuterRef("range_key"))
            .order_by("-job_id"))
