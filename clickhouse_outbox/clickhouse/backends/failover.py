"""
The backend for several replicas of one ClickHouse shard: a request goes to one replica,
and to the next when that one cannot be reached.

Each replica is an HttpBackend with the same credentials and database. A request goes to
the replica that last answered (sticky, so one that is down costs a failed connect once,
not on every request). When that replica is unavailable (`ClickHouseUnavailable`:
connection refused, no connection or no whole answer within the request's deadline, a
connection broken mid-answer, HTTP 502/503/504 from a proxy), the same request, the same
bytes with the same settings, goes to the next replica, and so on; only when every replica
failed is the error raised, naming each one. So a batch spends one attempt on an outage of
every replica, and none while one replica answers. Each replica's request has its own
deadline, so a send takes at most that many deadlines; within a run's time
(`starting_until`), the next replica is not tried once the time is up.

A replica that *answers* with an error (bad data, wrong credentials, a missing table) is
not failed over: another replica of the same cluster would say the same, and the error is
the data's or the configuration's to fix.

A read timeout may come after the replica wrote the rows; the resend to another replica is
still stored once, because replicated tables deduplicate an identical block per shard
(through ZooKeeper, whichever replica took it) and the body and deduplication token never
change. That is why every URL must be a replica of the same shard, with Replicated*MergeTree
tables (`clickhouse_outbox_schema --create --cluster NAME`).
"""

import logging
from contextlib import ExitStack, contextmanager

from clickhouse_outbox.clickhouse.backends.base import Backend
from clickhouse_outbox.clickhouse.errors import ClickHouseUnavailable, OutOfTime

logger = logging.getLogger(__name__)


class FailoverBackend(Backend):
    """Replicas of one shard, tried in turn from the last one that answered (not thread-safe)."""

    def __init__(self, replicas):
        if len(replicas) < 2:
            raise ValueError("FailoverBackend needs at least two replicas")
        self.replicas = list(replicas)
        self.database = self.replicas[0].database
        self.username = self.replicas[0].username
        self._current = 0

    def __repr__(self):
        return (
            f"<FailoverBackend {self.address} current={self.current.address} database={self.database!r} "
            f"user={self.username!r}>"
        )

    @property
    def current(self):
        """The replica the next request goes to first: the last one that answered."""
        return self.replicas[self._current]

    @property
    def address(self):
        return ", ".join(replica.address for replica in self.replicas)

    @contextmanager
    def starting_until(self, when):
        """No request starts after `when`, on any replica: once a replica failed, the next is not tried then."""
        with ExitStack() as stack:
            stack.enter_context(super().starting_until(when))
            for replica in self.replicas:
                stack.enter_context(replica.starting_until(when))
            yield self

    def server_info(self):
        """The current replica's: each replica detects its own, so an insert fits the server it goes to."""
        return self._send(lambda replica: replica.server_info(), "the version query")

    def insert(self, table, payload, *, rows, dedup_token=None, encoding=""):
        return self._send(
            lambda replica: replica.insert(table, payload, rows=rows, dedup_token=dedup_token, encoding=encoding),
            f"the INSERT of {rows} rows into {table.name}",
        )

    def delete(self, table, wanted):
        # A replicated table's mutation goes to every replica through ZooKeeper, from whichever took it.
        return self._send(lambda replica: replica.delete(table, wanted), f"the delete from {table.name}")

    def query(self, sql):
        return self._send(lambda replica: replica.query(sql), "the query")

    def command(self, sql):
        return self._send(lambda replica: replica.command(sql), "the statement")

    def close(self):
        for replica in self.replicas:
            replica.close()

    def _send(self, request, what):
        failures = []
        count = len(self.replicas)
        for step in range(count):
            index = (self._current + step) % count
            replica = self.replicas[index]
            try:
                result = request(replica)
            except OutOfTime:
                if not failures:
                    raise  # nothing was sent: not a failure of any replica
                raise all_failed(failures, what, untried=count - step) from None
            except ClickHouseUnavailable as exc:
                failures.append(exc)
                if step + 1 < count:
                    logger.warning(
                        "clickhouse_outbox: ClickHouse replica %s is unavailable (%s); trying replica %s",
                        replica.address, exc, self.replicas[(index + 1) % count].address,
                    )
                continue
            if index != self._current:
                logger.warning("clickhouse_outbox: ClickHouse replica %s took %s; sending there from now on",
                               replica.address, what)
                self._current = index
            return result
        raise all_failed(failures, what)


def all_failed(failures, what, untried=0):
    """
    One ClickHouseUnavailable naming every replica tried and why it failed (each message
    names its address), and how many were not tried because the drain's time was up.
    """
    statuses = {failure.http_status for failure in failures}
    left = f" ({untried} more not tried: the drain's time was up)" if untried else ""
    return ClickHouseUnavailable(
        f"No ClickHouse replica could take {what}; tried {len(failures)}{left}: "
        + "; ".join(str(failure) for failure in failures),
        http_status=statuses.pop() if len(statuses) == 1 else None,
        retryable=True,
    )
