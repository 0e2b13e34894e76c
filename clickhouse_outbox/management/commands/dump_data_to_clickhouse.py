"""
manage.py dump_data_to_clickhouse --object MODEL: platform-plugin-aspects' full dump of one
model, through the outbox; `--object` repeated dumps several models in one job (with --drain,
one model's rows are sent while the next is read).

It takes the peer's options (--object, --ids, --ids_to_skip, --force, --limit, --start_pk,
--batch_size, --sleep_time) so existing scripts still run, but instead of posting batches
straight to ClickHouse (and losing them when ClickHouse is down) it runs a dump job that
queues a snapshot of each object; the drain delivers them, with retries.
"""

import argparse

from django.core.management.base import CommandError

from clickhouse_outbox.management.dumping import add_drain_arguments, queue_and_drain, run_in_foreground, start_or_join
from clickhouse_outbox.management.options import positive_int
from clickhouse_outbox.management.output import OutboxCommand
from clickhouse_outbox.models import DumpJob
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.outbox.deletes import RETIREMENT_PEER_MODEL
from clickhouse_outbox.sources.base import SubjectSourceError
from clickhouse_outbox.text import plural

OLD_CONNECTION_OPTIONS = ("url", "username", "password", "database", "timeout_secs")


def objects():
    """{the peer's --object name: producer}: its model names (course_overviews for courses)."""
    return {producer.peer_model: producer for producer in registry.all_producers() if producer.peer_model}


class Command(OutboxCommand):
    help = (
        "Queue a snapshot of every object of one model (--object: "
        f"{', '.join(sorted(objects()))}; repeated, of several models in one job), or of --ids, as a dump job "
        "that prints its progress and that celery "
        "workers resume if this command is stopped; the drain sends the rows. The options of "
        "platform-plugin-aspects' command of the same name are kept: --force is always on (every object is "
        "queued), --sleep_time is not needed (the drain paces the sends). With --drain, this process also sends "
        "the rows as they are queued and waits for the last. Exit status: 0 when every object was queued (and "
        "with --drain, delivered), 1 otherwise."
    )
    origin = "dump_data_to_clickhouse"

    def add_arguments(self, parser):
        parser.add_argument("--object", required=True, action="append", metavar="MODEL",
                            help="The model to dump, e.g. user_profile; repeat it to dump several in one job "
                                 "(--ids, --ids_to_skip, --start_pk and --limit take one).")
        parser.add_argument("--ids", nargs="*", default=None, metavar="ID",
                            help="Only these objects (primary keys; course keys for course_overviews).")
        parser.add_argument("--ids_to_skip", "--ids-to-skip", nargs="*", default=(), metavar="ID",
                            help="Leave these objects out.")
        parser.add_argument("--start_pk", "--start-pk", type=int, default=None, metavar="PK",
                            help="Only objects whose primary key is greater than PK.")
        parser.add_argument("--limit", type=positive_int, default=None, metavar="N", help="At most N objects.")
        parser.add_argument("--force", action="store_true", help="Accepted for compatibility: every object is queued.")
        parser.add_argument("--batch_size", "--batch-size", type=positive_int, default=None, metavar="N",
                            help="Objects this process reads and queues at a time (default: the producer's chunk).")
        parser.add_argument("--sleep_time", "--sleep-time", type=int, default=None, help=argparse.SUPPRESS)
        add_drain_arguments(parser)
        for name in OLD_CONNECTION_OPTIONS:
            parser.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        moved = [name for name in OLD_CONNECTION_OPTIONS if options[name]]
        if moved:
            raise CommandError(
                f"--{', --'.join(moved)}: the connection now comes only from EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG; "
                "remove these options."
            )
        if options["limit"] and options["force"]:
            # The peer refuses it too: a repeated run would dump the same objects every time.
            raise CommandError("--limit cannot be used with --force.")
        chosen = list(dict.fromkeys(self.producer(name) for name in options["object"]))
        if len(chosen) > 1 and narrowed(options):
            raise CommandError("--ids, --ids_to_skip, --start_pk and --limit apply to one --object; give only one.")
        for producer in chosen:
            if not producer.enabled:
                self.stderr.write(
                    f"The {producer.name} producer is off, so changes to {producer.noun[1]} are not queued; this "
                    f"dump queues them once (turn it on with CLICKHOUSE_OUTBOX_{producer.name.upper()}_ENABLED = "
                    "True).",
                    style_func=self.style.WARNING,
                )
        scope, job_args = self.scope(chosen[0], options)
        job = start_or_join(self, scope, producers=[producer.name for producer in chosen], **job_args)
        queue_and_drain(self, options, lambda: run_in_foreground(self, job, chunk_size=options["batch_size"]))

    def producer(self, name):
        if name == RETIREMENT_PEER_MODEL:
            raise CommandError(
                "auth_user is the retirement sink: a retirement is not dumped, its deletes are queued when a user is "
                "retired (see the docs: how-tos, Retire a learner)."
            )
        producer = objects().get(name)
        if producer is None:
            raise CommandError(f"Unknown --object {name!r}; choose one of: {', '.join(sorted(objects()))}.")
        return producer

    def scope(self, producer, options):
        if not narrowed(options):
            return DumpJob.Scope.ALL, {}
        try:
            skip = {producer.parse_subject(value) for value in options["ids_to_skip"]}
            if options["ids"] is not None:
                chosen = [producer.parse_subject(value) for value in options["ids"]]
            else:
                chosen = producer.all_subjects()
        except (ValueError, SubjectSourceError) as exc:
            raise CommandError(str(exc)) from None
        if options["start_pk"] is not None:
            try:
                chosen = [subject for subject in chosen if int(subject) > options["start_pk"]]
            except ValueError:
                raise CommandError(f"--start_pk needs numeric ids; {producer.noun[1]} have keys") from None
        subjects = [subject for subject in chosen if subject not in skip][: options["limit"]]
        if not subjects:
            raise CommandError(f"No {producer.noun[0]} is left to dump once --ids_to_skip, --start_pk and --limit "
                               "are applied.")
        self.stdout.write(f"Dumping {plural(len(subjects), *producer.noun)}.")
        return DumpJob.Scope.SELECTED, {"subjects": [(producer.name, subject) for subject in subjects]}


def narrowed(options):
    """Whether the options pick some objects of the model rather than all."""
    return bool(options["ids"] is not None or options["ids_to_skip"] or options["start_pk"] is not None
                or options["limit"])
