"""
The ClickHouse backend a configuration asks for, chosen by the scheme of its URL.

    http://host:8123, https://host:8443   a ClickHouse server (HttpBackend)
    chdb:///absolute/path                 an embedded chdb store (ChdbBackend)
    "urls": several http(s) URLs          replicas of one shard (FailoverBackend)

Backends are reused per thread and per configuration, so an HTTP backend keeps its
kept-alive connection and what it detected about the server; `reset_backends()` drops them.
"""

import hashlib
import os
import secrets
import threading
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from clickhouse_outbox import conf

SETTING_NAME = "EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG"
HTTP_SCHEMES = ("http", "https")
CHDB_SCHEME = "chdb"
# insert_quorum_timeout as a share of timeout_secs: the server gives up waiting for the
# replicas, and says so, before our read timeout would leave the outcome unknown.
QUORUM_TIMEOUT_SHARE = 0.75

_local = threading.local()
_generation_lock = threading.Lock()
_generation = 0
# Hashes the password in cache keys; random per process so a key reveals nothing.
_key_salt = secrets.token_bytes(16)


def get_backend(config=None):
    """The backend for `config` (default: EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG), reused in this thread."""
    config = conf.backend_config() if config is None else dict(config)
    cache = _thread_cache()
    key = cache_key(config)
    backend = cache.get(key)
    if backend is None:
        backend = cache[key] = build_backend(config)
    return backend


def reset_backends():
    """Close this thread's backends and make every other thread build new ones on next use."""
    global _generation
    with _generation_lock:
        _generation += 1
    _close_all(getattr(_local, "backends", {}))
    _local.backends = {}
    _local.generation = _generation


def build_backend(config):
    """A new backend for `config`; ImproperlyConfigured (saying how to fix it) if it cannot be one."""
    kind, options = validate_config(config)
    if kind == "http":
        from clickhouse_outbox.clickhouse.backends.http import HttpBackend

        return HttpBackend(**options)
    if kind == "failover":
        from clickhouse_outbox.clickhouse.backends.failover import FailoverBackend
        from clickhouse_outbox.clickhouse.backends.http import HttpBackend

        urls = options.pop("urls")
        return FailoverBackend([HttpBackend(url, **options) for url in urls])
    # Imported here: chdb is an optional dependency.
    from clickhouse_outbox.clickhouse.backends.chdb import ChdbBackend

    return ChdbBackend(**options)


def validate_config(config):
    """
    ("http" | "failover" | "chdb", the backend's keyword arguments) for `config`, or
    ImproperlyConfigured saying how to fix it. Builds nothing and imports no driver: usable
    by system checks.
    """
    entries = configured_urls(config)
    checked = [(label, *_checked_url(label, url)) for label, url in entries]
    database = config.get("database")
    if not isinstance(database, str) or not database:
        raise ImproperlyConfigured(f"{SETTING_NAME}['database'] must name the destination database, e.g. 'event_sink'")
    on_insert = insert_settings(config)
    if len(checked) > 1:
        options = [_http_options(label, parts, url, config) for label, url, parts in checked]
        common = {name: value for name, value in options[0].items() if name != "url"}
        return "failover", dict(common, urls=[option["url"] for option in options], insert_settings=on_insert)
    label, url, parts = checked[0]
    if parts.scheme.lower() in HTTP_SCHEMES:
        return "http", dict(_http_options(label, parts, url, config), insert_settings=on_insert)
    if on_insert:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['insert_quorum'] needs ClickHouse servers with replicated tables; the embedded "
            "engine has no replicas: remove the key"
        )
    return "chdb", _chdb_options(label, parts, database)


def configured_urls(config):
    """
    [(label, url)]: the one `url`, or each entry of `urls` (a list, or a comma-separated
    string as Tutor and environment variables give). ImproperlyConfigured when `urls` is
    malformed, lists a server twice, holds a chdb URL, or disagrees with `url`. Each URL
    itself is checked by validate_config; messages never repeat a URL (it may hold a password).
    """
    urls = config.get("urls")
    url = config.get("url")
    if isinstance(url, str) and not url.strip():
        url = None
    if urls is None:
        if not isinstance(url, str):
            raise ImproperlyConfigured(f"{SETTING_NAME}['url'] must be a URL such as http://clickhouse:8123")
        return [(f"{SETTING_NAME}['url']", url.strip())]
    if isinstance(urls, str):
        urls = urls.split(",") if urls.strip() else []
    elif not isinstance(urls, (list, tuple)):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['urls'] must be a list of URLs or a comma-separated string of them, not "
            f"{type(urls).__name__}"
        )
    if not urls:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['urls'] is empty: list the HTTP interfaces of the replicas, e.g. "
            "[\"http://clickhouse-1:8123\", \"http://clickhouse-2:8123\"]"
        )
    entries = []
    for index, entry in enumerate(urls):
        label = f"{SETTING_NAME}['urls'][{index}]"
        if not isinstance(entry, str) or not entry.strip():
            raise ImproperlyConfigured(f"{label} is empty or not a string: each entry must be a URL such as "
                                       "http://clickhouse-1:8123")
        entry = entry.strip()
        if urlsplit(entry).scheme.lower() == CHDB_SCHEME:
            raise ImproperlyConfigured(
                f"{label} is a chdb URL: the embedded engine has no replicas; set it as {SETTING_NAME}['url'] alone"
            )
        entries.append((label, entry))
    seen = {}
    for label, entry in entries:
        first = seen.setdefault(_same_server(entry), label)
        if first != label:
            raise ImproperlyConfigured(f"{label} names the same server as {first}: list each replica once")
    if url is not None and (not isinstance(url, str) or _same_server(url) not in seen):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['url'] and ['urls'] disagree: the url is not one of the urls. Remove 'url' (or make "
            "it one of 'urls')"
        )
    return entries


def insert_quorum(config):
    """`insert_quorum` of `config`: None (not set) or a number of replicas, at least 2."""
    quorum = config.get("insert_quorum")
    if quorum is not None and (not isinstance(quorum, int) or isinstance(quorum, bool) or quorum < 2):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['insert_quorum'] must be a whole number of replicas, at least 2, not {quorum!r}; "
            "leave it out to have the first replica's answer acknowledge an insert"
        )
    return quorum


def insert_settings(config):
    """
    The settings every INSERT carries for `config`: with `insert_quorum` N, ClickHouse answers
    only once N replicas have the rows, and gives up waiting (an error, retried) before our
    read timeout, so the answer is the server's rather than a timeout.
    """
    quorum = insert_quorum(config)
    if quorum is None:
        return {}
    timeout_ms = max(1, int(_positive_number(config, "timeout_secs") * 1000 * QUORUM_TIMEOUT_SHARE))
    return {"insert_quorum": str(quorum), "insert_quorum_timeout": str(timeout_ms)}


def request_deadline_secs(config):
    """
    The longest one request to a server may take, whatever the server does (see http.py):
    connect_timeout_secs + timeout_secs. A send tries each replica in turn, so a lease must
    outlast this times the replicas (system check E011).
    """
    return _positive_number(config, "connect_timeout_secs") + _positive_number(config, "timeout_secs")


def cache_key(config):
    """A hashable key for `config` in which the password appears only as a salted hash."""
    items = []
    for name, value in sorted(config.items()):
        if name == "password":
            value = hashlib.blake2b(str(value or "").encode("utf-8"), key=_key_salt, digest_size=16).hexdigest()
        items.append((name, repr(value)))
    return tuple(items)


def _checked_url(label, url):
    """(url, its parts), or ImproperlyConfigured naming `label` (never repeating the URL)."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        # Never repeat the URL: it holds a password.
        raise ImproperlyConfigured(
            f"{label} must not contain credentials: remove 'user:password@' from it and set "
            f"{SETTING_NAME}['username'] and ['password'] instead"
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{label} must not have a query string or fragment: settings and credentials have their own keys"
        )
    if parts.scheme.lower() not in (*HTTP_SCHEMES, CHDB_SCHEME):
        raise ImproperlyConfigured(
            f"{label} has the unsupported scheme {parts.scheme + ':' if parts.scheme else '(none)'}; "
            "use http://host:8123 or https://host:8443 for a ClickHouse server, or chdb:///absolute/path for an "
            "embedded store"
        )
    return url, parts


def _same_server(url):
    """What makes two URLs the same server: scheme, host and port, whatever the case or trailing slash."""
    parts = urlsplit(url.strip())
    return (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"))


def _http_options(label, parts, url, config):
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port == -1 or port == 0:
        raise ImproperlyConfigured(f"{label} has an invalid port: use e.g. http://host:8123")
    if not parts.hostname:
        raise ImproperlyConfigured(f"{label} needs a host name, e.g. http://clickhouse:8123")
    return {
        "url": url,
        "username": config.get("username") or "",
        "password": config.get("password") or "",
        "database": config["database"],
        "timeout_secs": _positive_number(config, "timeout_secs"),
        "connect_timeout_secs": _positive_number(config, "connect_timeout_secs"),
    }


def _chdb_options(label, parts, database):
    if parts.netloc or not os.path.isabs(parts.path):
        raise ImproperlyConfigured(
            f"{label} for chdb needs an absolute path after three slashes, e.g. "
            "chdb:///var/lib/clickhouse_outbox/chdb (chdb://relative/path is not supported)"
        )
    return {"path": unquote(parts.path), "database": database}


def _positive_number(config, name):
    value = config.get(name, conf.DEFAULT_BACKEND_CONFIG[name])
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ImproperlyConfigured(f"{SETTING_NAME}[{name!r}] must be a number of seconds above 0, not {value!r}")
    return number


def _thread_cache():
    if getattr(_local, "generation", None) != _generation:
        _close_all(getattr(_local, "backends", {}))
        _local.backends = {}
        _local.generation = _generation
    return _local.backends


def _close_all(backends):
    for backend in backends.values():
        backend.close()
