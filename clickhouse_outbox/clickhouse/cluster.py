"""
The contract's tables checked on every replica of a ClickHouse cluster.

`clickhouse_outbox_schema --create --cluster NAME` sends the DDL to one replica, ON CLUSTER,
and ClickHouse runs it on every replica; but a check on one replica proves nothing about
the others (a replica added later, a table created by hand with another ZooKeeper path).
So `--check --cluster NAME` lists the replicas from `system.clusters` and checks each one
over HTTP, with the configured credentials and database.

ClickHouse names a replica in `system.clusters` by host and *tcp* port; the plugin speaks
HTTP. Which configured URL is which replica is read from the replica itself: each replicated
table registers its replica in ZooKeeper with its `tcp_port` (the `host` node under its
`replica_path`), which `system.zookeeper` shows. A replica that no configured URL reaches is
checked at its host on the HTTP port of the configured URLs (production clusters use one
HTTP port everywhere); several replicas on one machine (127.0.0.1/localhost, as in the
tests) have HTTP ports of their own, so each must be listed in the configuration's `urls`.

Beyond the single-server check, replicas must agree with each other: each table's replicas
must share one ZooKeeper path (else they do not replicate, and a resent batch is only
deduplicated on the replica that took it first) under distinct replica names, and the
configured URLs must all be replicas of one shard (deduplication is per shard).
"""

from dataclasses import dataclass
from urllib.parse import urlsplit

from clickhouse_outbox.clickhouse.backends.base import qualified_name, quote_string
from clickhouse_outbox.clickhouse.errors import ClickHouseError
from clickhouse_outbox.clickhouse.schema import check_schema
from clickhouse_outbox.clickhouse.tables import all_tables

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost", "localhost.localdomain"})


@dataclass(frozen=True)
class Member:
    """A replica of the cluster as `system.clusters` lists it."""

    shard: int
    replica: int
    host: str
    address: str
    tcp_port: int

    @property
    def on_loopback(self):
        return is_loopback(self.host) or is_loopback(self.address)

    def label(self, cluster):
        return f"replica {self.replica} of shard {self.shard} of cluster {cluster} ({self.host}:{self.tcp_port} tcp)"


@dataclass
class ReplicaCheck:
    """One replica checked over HTTP: its backend, which member it is (None: not known), what differs."""

    backend: object
    member: Member | None
    problems: list
    replicas: dict  # table name -> (zookeeper_path, replica_name, is_readonly)

    def label(self, cluster):
        where = f"at {self.backend.url.rstrip('/')}"
        return f"{self.member.label(cluster)} {where}" if self.member else f"the server {where}"


def is_loopback(host):
    host = (host or "").strip("[]").lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def http_replicas(backend):
    """The HTTP backends a configured backend talks to: each replica of a FailoverBackend, or itself."""
    replicas = getattr(backend, "replicas", None)
    return list(replicas) if replicas else [backend]


def cluster_members(backend, cluster):
    """[Member] of `cluster` as the server behind `backend` knows it; [] when it does not know the cluster."""
    rows = backend.query(
        "SELECT shard_num, replica_num, host_name, host_address, port FROM system.clusters "
        f"WHERE cluster = {quote_string(cluster)} ORDER BY shard_num, replica_num"
    )
    return [
        Member(
            shard=int(row["shard_num"]),
            replica=int(row["replica_num"]),
            host=row["host_name"],
            address=row["host_address"],
            tcp_port=int(row["port"]),
        )
        for row in rows
    ]


def replicated_tables(backend):
    """{table: (zookeeper_path, replica_name, is_readonly)} for the replicated tables of the backend's database."""
    rows = backend.query(
        "SELECT table, zookeeper_path, replica_name, is_readonly FROM system.replicas "
        f"WHERE database = {quote_string(backend.database)}"
    )
    return {row["table"]: (row["zookeeper_path"], row["replica_name"], bool(int(row["is_readonly"]))) for row in rows}


def registered_endpoint(backend, replicas):
    """
    (interserver host, tcp port) the server behind `backend` registered in ZooKeeper for one of
    its replicated tables, or None (no replicated table yet, or ZooKeeper unreadable).
    """
    for zookeeper_path, replica_name, _ in replicas.values():
        path = f"{zookeeper_path.rstrip('/')}/replicas/{replica_name}"
        try:
            rows = backend.query(
                f"SELECT value FROM system.zookeeper WHERE path = {quote_string(path)} AND name = 'host'"
            )
        except ClickHouseError:
            continue
        if not rows:
            continue
        fields = dict(
            line.split(": ", 1) for line in rows[0]["value"].splitlines() if ": " in line
        )
        if fields.get("tcp_port", "").isdigit():
            return fields.get("host", ""), int(fields["tcp_port"])
    return None


def identify(backend, endpoint, members):
    """The Member that `backend` (whose ZooKeeper registration is `endpoint`) is, or None."""
    if endpoint is None:
        return None
    registered_host, tcp_port = endpoint
    same_port = [member for member in members if member.tcp_port == tcp_port]
    names = {backend.host.lower(), registered_host.lower()}
    for member in same_port:
        if {member.host.lower(), member.address.lower()} & names:
            return member
        if member.on_loopback and (is_loopback(backend.host) or is_loopback(registered_host)):
            return member
    return same_port[0] if len(same_port) == 1 else None


def check_replica(backend, cluster, members, tables, member=None):
    """Check one server; `member`: the replica it was reached as (at that member's own host), if any."""
    try:
        problems = check_schema(backend, cluster=cluster, tables=tables)
        replicas = replicated_tables(backend)
        member = identify(backend, registered_endpoint(backend, replicas), members) or member
    except ClickHouseError as exc:
        return ReplicaCheck(backend, member, [f"could not be checked: {exc}"], {})
    return ReplicaCheck(backend, member, problems, replicas)


def sibling_backend(backend, host):
    """An HttpBackend like `backend` (scheme, HTTP port, credentials, database, timeouts) on another host."""
    from clickhouse_outbox.clickhouse.backends.http import HttpBackend

    parts = urlsplit(backend.url)
    netloc = f"[{host}]" if ":" in host else host
    return HttpBackend(
        f"{parts.scheme}://{netloc}:{backend.port}",
        username=backend.username,
        password=backend._password,  # noqa: SLF001 (the same credentials, never shown)
        database=backend.database,
        timeout_secs=backend.timeout_secs,
        connect_timeout_secs=backend.connect_timeout_secs,
    )


def check_cluster_schema(backend, cluster, tables=None):
    """
    Check the contract's tables on every replica of `cluster`: (lines saying which replicas were
    checked, problems). Each problem names the replica it was found on; [] problems: all agree.
    `backend` is the configured one (an HttpBackend, or a FailoverBackend over several URLs).
    """
    tables = all_tables() if tables is None else tables
    configured = http_replicas(backend)
    if not all(hasattr(replica, "url") for replica in configured):
        return [], [f"--cluster {cluster} needs a ClickHouse server over HTTP, not an embedded chdb store"]
    members, asked = None, []
    for replica in configured:
        try:
            members = cluster_members(replica, cluster)
            break
        except ClickHouseError as exc:
            asked.append(f"{replica.url.rstrip('/')}: {exc}")
    if members is None:
        return [], [f"No configured server answered to list cluster {cluster}: " + "; ".join(asked)]
    if not members:
        return [], [
            f"Cluster {cluster} is not defined on the server at {configured[0].url.rstrip('/')} "
            "(system.clusters has no such cluster: check remote_servers in its configuration)"
        ]

    checks = [check_replica(replica, cluster, members, tables) for replica in configured]
    extra = []
    try:
        for member in members:
            if any(check.member == member for check in checks):
                continue
            if member.on_loopback:
                continue  # its HTTP port is its own, unknown here: reported below as not checked
            sibling = sibling_backend(configured[0], member.host)
            extra.append(sibling)
            checks.append(check_replica(sibling, cluster, members, tables, member=member))
    finally:
        for sibling in extra:
            sibling.close()

    problems = []
    for check in checks:
        problems.extend(f"{check.label(cluster)}: {problem}" for problem in check.problems)
        if check.member is None and not check.problems:
            problems.append(
                f"{check.label(cluster)}: is not a replica of cluster {cluster} as far as ZooKeeper says "
                f"(its tables are not registered under any of {', '.join(m.host + ':' + str(m.tcp_port) for m in members)})"
            )
    reached = {check.member for check in checks if check.member is not None}
    for member in members:
        if member not in reached:
            problems.append(
                f"{member.label(cluster)}: not checked: no configured URL reaches it. Replicas on one host have "
                "HTTP ports of their own: list each one's URL in EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG['urls']"
            )
    shards = sorted({check.member.shard for check in checks[: len(configured)] if check.member is not None})
    if len(shards) > 1:
        problems.append(
            f"The configured URLs reach replicas of different shards ({', '.join(map(str, shards))}) of cluster "
            f"{cluster}: a batch resent to another shard is not deduplicated. List the replicas of one shard only"
        )
    problems.extend(_agreement_problems(checks, cluster, tables))
    checked = [check.label(cluster) for check in checks]
    return checked, problems


def _agreement_problems(checks, cluster, tables):
    """Replicas of one shard must share each table's ZooKeeper path, under distinct replica names."""
    problems = []
    by_shard = {}
    for check in checks:
        if check.member is not None:
            by_shard.setdefault(check.member.shard, []).append(check)
    for check in checks:
        for table, (_, _, readonly) in sorted(check.replicas.items()):
            if readonly and table in {t.name for t in tables}:
                problems.append(
                    f"{check.label(cluster)}: {qualified_name(check.backend.database, table)} is read-only (the "
                    "replica lost its ZooKeeper session): inserts through it fail until it reconnects"
                )
    for shard_checks in by_shard.values():
        for table in tables:
            present = [(check, check.replicas[table.name]) for check in shard_checks if table.name in check.replicas]
            paths = {replica[0] for _, replica in present}
            name = qualified_name(shard_checks[0].backend.database, table.name)
            if len(paths) > 1:
                listed = "; ".join(f"{check.label(cluster)} uses {replica[0]}" for check, replica in present)
                problems.append(
                    f"{name}: the replicas do not share one ZooKeeper path, so they do not replicate to each other "
                    f"(and a resent batch is deduplicated only where it first landed): {listed}"
                )
            names = [replica[1] for _, replica in present]
            for replica_name in sorted({n for n in names if names.count(n) > 1}):
                holders = ", ".join(check.label(cluster) for check, replica in present if replica[1] == replica_name)
                problems.append(
                    f"{name}: several replicas call themselves {replica_name!r} (the {{replica}} macro must differ): "
                    f"{holders}"
                )
    return problems
