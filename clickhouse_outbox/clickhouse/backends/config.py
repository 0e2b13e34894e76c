"""
EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, parsed in one place: the backend is built from what
`parse` returns and the system checks report the problems it finds, so a check never passes
what a drain refuses, nor the reverse.

A message names the key at fault (EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG['urls'][1]), never
a URL or a credential: a URL may hold a password. Imports no driver and builds nothing.
"""

import ipaddress
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from clickhouse_outbox.settings.table import BACKEND_SETTING as SETTING_NAME
from clickhouse_outbox.settings.table import DEFAULT_BACKEND_CONFIG, Problem, is_number

HTTP_SCHEMES = ("http", "https")
CHDB_SCHEME = "chdb"
TIMEOUT_KEYS = ("timeout_secs", "connect_timeout_secs")
# insert_quorum_timeout as a share of timeout_secs: the server gives up waiting for the
# replicas, and says so, before our read timeout would leave the outcome unknown.
QUORUM_TIMEOUT_SHARE = 0.75
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
PORT = re.compile(r"[0-9]{1,5}\Z")

E_SCHEME = "clickhouse_outbox.E001"
E_CREDENTIALS_IN_URL = "clickhouse_outbox.E002"
E_CHDB_PATH = "clickhouse_outbox.E003"
E_DATABASE = "clickhouse_outbox.E004"
E_TIMEOUT = "clickhouse_outbox.E005"
E_URL = "clickhouse_outbox.E006"
E_URLS = "clickhouse_outbox.E007"
E_QUORUM = "clickhouse_outbox.E008"
E_CREDENTIALS = "clickhouse_outbox.E009"
W_PASSWORD = "clickhouse_outbox.W009"
E_LEASE = "clickhouse_outbox.E011"


@dataclass(frozen=True)
class BackendConfig:
    """
    A valid configuration: `kind` "http" (one server), "failover" (the replicas of one shard,
    `urls`) or "chdb" (an embedded store at `path`).
    """

    kind: str
    database: str
    urls: tuple = ()
    path: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    timeout_secs: float = DEFAULT_BACKEND_CONFIG["timeout_secs"]
    connect_timeout_secs: float = DEFAULT_BACKEND_CONFIG["connect_timeout_secs"]
    insert_quorum: int = None

    @property
    def insert_settings(self):
        """
        The settings every INSERT carries: with `insert_quorum` N, ClickHouse answers only once
        N replicas have the rows, and gives up waiting (an error, retried) before our read
        timeout, so the answer is the server's rather than a timeout.
        """
        if self.insert_quorum is None:
            return {}
        timeout_ms = max(1, int(self.timeout_secs * 1000 * QUORUM_TIMEOUT_SHARE))
        return {"insert_quorum": str(self.insert_quorum), "insert_quorum_timeout": str(timeout_ms)}

    def http_options(self):
        """HttpBackend's keyword arguments, but the URL."""
        return {
            "username": self.username,
            "password": self.password,
            "database": self.database,
            "timeout_secs": self.timeout_secs,
            "connect_timeout_secs": self.connect_timeout_secs,
            "insert_settings": self.insert_settings,
        }


def parse(config):
    """
    (BackendConfig, problems) for `config`, a dict with the keys the event-sink plugins use
    (timeouts default when missing); the BackendConfig is None when a problem is an error.
    Every problem is reported, not only the first.
    """
    if not isinstance(config, dict):
        return None, [Problem(E_URL, f"{SETTING_NAME} must be a dict, not {type(config).__name__}.",
                              'Write {"url": "http://clickhouse:8123", "username": ..., "password": ..., '
                              '"database": "event_sink"}.')]
    problems = []
    servers = [server for label, url in configured_urls(config, problems) if (server := _server(label, url, problems))]
    database = config.get("database")
    if not isinstance(database, str) or not IDENTIFIER.match(database):
        problems.append(Problem(E_DATABASE, f"{SETTING_NAME}['database'] must be a plain ClickHouse database name.",
                                "Letters, digits and underscores, not starting with a digit, e.g. event_sink."))
    timeouts = {key: _seconds(config, key, problems) for key in TIMEOUT_KEYS}
    quorum = _insert_quorum(config, problems)
    username, password = _credentials(config, problems)
    if servers and servers[0][0] == CHDB_SCHEME and quorum is not None:
        problems.append(Problem(
            E_URL,
            f"{SETTING_NAME}['insert_quorum'] needs ClickHouse servers with replicated tables; the embedded engine "
            "has no replicas.",
            "Remove the key.",
        ))
    if any(not problem.is_warning for problem in problems):
        return None, problems
    scheme, value = servers[0]
    common = {"database": database, "username": username, "password": password, **timeouts, "insert_quorum": quorum}
    if scheme == CHDB_SCHEME:
        return BackendConfig("chdb", path=value, **common), problems
    urls = tuple(url for _, url in servers)
    return BackendConfig("failover" if len(urls) > 1 else "http", urls=urls, **common), problems


def configured_urls(config, problems):
    """
    [(label, url)]: the one `url`, or each entry of `urls` (a list, or a comma-separated
    string as Tutor and environment variables give); [] with a problem added when `urls` is
    malformed, lists a server twice, holds a chdb URL, or disagrees with `url`. Each URL
    itself is checked by `_server`.
    """
    urls = config.get("urls")
    url = config.get("url")
    if urls is None:
        label = f"{SETTING_NAME}['url']"
        if not isinstance(url, str) or not url.strip():
            what = "missing" if url is None else "empty" if isinstance(url, str) else "not a string"
            problems.append(Problem(E_SCHEME, f"{label} is {what}: it must be a URL.",
                                    "Use the address of ClickHouse's HTTP interface, e.g. http://clickhouse:8123."))
            return []
        return [(label, url.strip())]
    if isinstance(url, str) and not url.strip():
        url = None

    def malformed(message):
        problems.append(Problem(E_URLS, message, "Give one server as 'url', or the replicas of one shard as 'urls' "
                                                 "(a list, or a comma-separated string of http(s) URLs)."))
        return []

    if isinstance(urls, str):
        urls = urls.split(",") if urls.strip() else []
    elif not isinstance(urls, (list, tuple)):
        return malformed(f"{SETTING_NAME}['urls'] must be a list of URLs or a comma-separated string of them, not "
                         f"{type(urls).__name__}.")
    if not urls:
        return malformed(f"{SETTING_NAME}['urls'] is empty: list the HTTP interfaces of the replicas.")
    entries = []
    for index, entry in enumerate(urls):
        label = f"{SETTING_NAME}['urls'][{index}]"
        if not isinstance(entry, str) or not entry.strip():
            return malformed(f"{label} is empty or not a string: each entry must be a URL such as "
                             "http://clickhouse-1:8123.")
        entry = entry.strip()
        if _scheme(entry) == CHDB_SCHEME:
            return malformed(f"{label} is a chdb URL: the embedded engine has no replicas; set it as "
                             f"{SETTING_NAME}['url'] alone.")
        entries.append((label, entry))
    seen = {}
    for label, entry in entries:
        first = seen.setdefault(_same_server(entry), label)
        if first != label:
            return malformed(f"{label} names the same server as {first}: list each replica once.")
    if url is not None and (not isinstance(url, str) or _same_server(url) not in seen):
        return malformed(f"{SETTING_NAME}['url'] and ['urls'] disagree: the url is not one of the urls. Remove "
                         "'url' (or make it one of 'urls').")
    return entries


def lease_problems(backend_config, lease_secs):
    """E011 when a lease would end before a send that tries every replica in turn times out."""
    replicas = max(1, len(backend_config.urls))
    if lease_secs > replicas * (backend_config.timeout_secs + backend_config.connect_timeout_secs):
        return []
    return [Problem(
        E_LEASE,
        "CLICKHOUSE_OUTBOX_LEASE_SECS must be longer than the deadline of one ClickHouse request "
        "(connect_timeout_secs + timeout_secs)"
        + (f", times the {replicas} replicas a send may try in turn." if replicas > 1 else "."),
        "A request never takes longer than its deadline, whatever the server does; with a shorter lease a slow "
        "but live send loses its batch to another drainer. Raise the lease.",
    )]


def _server(label, url, problems):
    """(scheme, the URL or, for chdb, the store's path), or None with the URL's problems added."""
    if any(char.isspace() or _has_control_character(char) for char in url):
        problems.append(Problem(E_URL, f"{label} contains white space or control characters.",
                                "Write the URL alone, e.g. http://clickhouse:8123."))
        return None
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. http://[::1 (an unclosed bracket)
        problems.append(Problem(E_URL, f"{label} is not a URL that can be parsed.",
                                "Write http://host:8123; an IPv6 address goes in brackets: http://[::1]:8123."))
        return None
    scheme = parts.scheme.lower()
    before = len(problems)
    if scheme not in (*HTTP_SCHEMES, CHDB_SCHEME):
        problems.append(Problem(
            E_SCHEME, f"{label} has {_shown_scheme(scheme)}: it must start with http://, https:// or chdb:///.",
            "Use the address of ClickHouse's HTTP interface, e.g. http://clickhouse:8123.",
        ))
    if "@" in parts.netloc:
        problems.append(Problem(E_CREDENTIALS_IN_URL, f"{label} must not contain credentials.",
                                "Remove them from the URL and set the 'username' and 'password' keys instead."))
    if len(problems) > before:
        return None
    if parts.query or parts.fragment:
        problems.append(Problem(E_URL, f"{label} must not have a query string or fragment.",
                                "Settings and credentials have their own keys."))
        return None
    if scheme == CHDB_SCHEME:
        if parts.netloc or not os.path.isabs(parts.path):
            problems.append(Problem(E_CHDB_PATH, f"{label} must name an absolute path for the embedded engine.",
                                    "Write chdb:///absolute/path/to/store (three slashes); chdb://relative/path is "
                                    "not supported."))
            return None
        return scheme, unquote(parts.path)
    problem = _host_problem(label, parts.netloc)
    if problem:
        problems.append(problem)
        return None
    return scheme, url


def _host_problem(label, netloc):
    """What is wrong with an http(s) URL's host and port, or None."""
    host, port = netloc, ""
    if host.startswith("["):
        host, _, port = host[1:].partition("]")
        address_ok = _is_ipv6(host)
        if port and not port.startswith(":"):
            address_ok = False
        port = port[1:]
    else:
        if ":" in host:
            host, _, port = host.rpartition(":")
        address_ok = bool(host) and all(char.isalnum() or char in "._-" for char in host)
    if not host:
        return Problem(E_URL, f"{label} needs a host name.", "Write e.g. http://clickhouse:8123.")
    if not address_ok:
        return Problem(E_URL, f"{label} has an invalid host name.",
                       "Letters, digits, dots and hyphens, or an IP address (IPv6 in brackets: http://[::1]:8123).")
    if port and not (PORT.match(port) and 1 <= int(port) <= 65535):
        return Problem(E_URL, f"{label} has an invalid port.", "A number from 1 to 65535, e.g. http://clickhouse:8123.")
    return None


def _is_ipv6(text):
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _scheme(url):
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:
        return ""


def _shown_scheme(scheme):
    """A scheme as a message shows it (letters, digits, + - . only: nothing of a credential)."""
    return f"an unsupported scheme ({scheme!r})" if scheme else "no scheme"


def _same_server(url):
    """What makes two URLs the same server: scheme, host and port, whatever the case or trailing slash."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip().lower()
    return (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"))


def _seconds(config, key, problems):
    value = config.get(key, DEFAULT_BACKEND_CONFIG[key])
    if is_number(value) and math.isfinite(value) and value > 0:
        return float(value)
    problems.append(Problem(
        E_TIMEOUT, f"{SETTING_NAME}[{key!r}] must be a number of seconds greater than 0.",
        f"Write a number, not a string; the defaults are {DEFAULT_BACKEND_CONFIG['timeout_secs']} (timeout_secs: all "
        f"of a request once connected) and {DEFAULT_BACKEND_CONFIG['connect_timeout_secs']} (connect_timeout_secs).",
    ))
    return None


def _insert_quorum(config, problems):
    quorum = config.get("insert_quorum")
    if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 2):
        problems.append(Problem(
            E_QUORUM,
            f"{SETTING_NAME}['insert_quorum'] must be a whole number of replicas, at least 2, not {quorum!r}.",
            "insert_quorum = 2 acknowledges an insert once two replicas have it; leave it out to have the first "
            "replica's answer acknowledge an insert.",
        ))
        return None
    return quorum


def _credentials(config, problems):
    """
    (username, password). Any password works: it is sent as UTF-8 in HTTP basic authentication,
    so no character is refused; a user name may not hold the colon that separates the two.
    No message shows either, or says where a character is.
    """
    username, password = config.get("username") or "", config.get("password")
    password = "" if password is None else password
    if (not isinstance(username, str) or ":" in username or _has_control_character(username)
            or not _is_unicode(username)):
        problems.append(Problem(
            E_CREDENTIALS, f"{SETTING_NAME}['username'] must be a string without a colon or control characters.",
            "HTTP basic authentication separates the user from the password with a colon; ClickHouse user names "
            "have none.",
        ))
    if not isinstance(password, str):
        problems.append(Problem(
            E_CREDENTIALS, f"{SETTING_NAME}['password'] must be a string, not {type(password).__name__}.",
            "Quote it in YAML (password: \"...\"): a number there would lose leading zeros.",
        ))
    elif not _is_unicode(password):
        problems.append(Problem(
            E_CREDENTIALS, f"{SETTING_NAME}['password'] holds bytes that are not text (not UTF-8).",
            "An environment variable or file read in another encoding gives such bytes: read it as UTF-8.",
        ))
    elif password != password.strip() or _has_control_character(password):
        problems.append(Problem(
            W_PASSWORD,
            f"{SETTING_NAME}['password'] starts or ends with white space, or holds a control character such as a "
            "line break; it is sent exactly as it is.",
            "A password read from a file often keeps the file's final newline: strip it, unless the ClickHouse "
            "user's password has it too.",
        ))
    return username, password


def _is_unicode(text):
    """False for a string holding lone surrogates: undecodable bytes Python kept (os.environ does)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _has_control_character(text):
    return any(unicodedata.category(char) == "Cc" for char in text)
