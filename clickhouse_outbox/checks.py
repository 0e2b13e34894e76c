"""
Django system checks: a bad configuration stops start-up with a message saying how to fix it.

The rules live with the settings: conf.problems() for the declared settings (settings/table.py)
and config.parse() for EVENT_SINK_CLICKHOUSE_BACKEND_CONFIG, the very function the backend is
built with. Here they only become Django's messages.
"""

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register  # noqa: A004 (Django's check message)
from django.utils.module_loading import import_string

from clickhouse_outbox import conf
from clickhouse_outbox.clickhouse.backends.config import lease_problems, parse

COURSE_SOURCE = "CLICKHOUSE_OUTBOX_COURSE_SOURCE"
OLX_DIR = "CLICKHOUSE_OUTBOX_OLX_DIR"


def valid(*names):
    """Whether these declared settings have valid values (when not, check_outbox_settings says so)."""
    return not any(conf.SETTINGS_BY_NAME[name].problem(conf.get(name)) for name in names)


def messages(problems):
    """Django's check messages for `problems`: an Error each, a Warning for a W id."""
    return [(Warning if problem.is_warning else Error)(problem.message, hint=problem.hint or None, id=problem.id)
            for problem in problems]


@register(Tags.compatibility)
def check_backend_config(app_configs=None, **kwargs):
    return messages(parse(conf.backend_config())[1])


@register(Tags.compatibility)
def check_outbox_settings(app_configs=None, **kwargs):
    problems = conf.problems()
    if not problems:
        backend_config, _ = parse(conf.backend_config())
        if backend_config is not None:
            problems = lease_problems(backend_config, conf.lease_secs())
    return messages(problems)


@register(Tags.compatibility)
def check_course_source(app_configs=None, **kwargs):
    if not valid(COURSE_SOURCE, OLX_DIR):
        return []
    path = conf.course_source_path()
    if path.endswith(".ModulestoreSource"):
        return []  # imports edx-platform lazily, only when a course is read
    try:
        source_class = import_string(path)
    except ImportError as exc:
        return [Error(
            f"CLICKHOUSE_OUTBOX_COURSE_SOURCE {path!r} cannot be imported: {exc}",
            hint="Name a class such as clickhouse_outbox.sources.olx.OlxFolderSource.",
            id="clickhouse_outbox.E020",
        )]
    if source_class.__name__ == "OlxFolderSource" and not conf.olx_dir():
        return [Error(
            "CLICKHOUSE_OUTBOX_OLX_DIR is empty, and the OLX course source needs a folder.",
            hint="Set it to the folder that holds (or will hold) the OLX course exports.",
            id="clickhouse_outbox.E021",
        )]
    return []


@register(Tags.compatibility)
def check_producers(app_configs=None, **kwargs):
    """Each producer's switch, the PII tables, and sinks of platform-plugin-aspects writing the same tables."""
    from clickhouse_outbox.clickhouse.tables import all_tables  # noqa: PLC0415 (checks load before the producers)
    from clickhouse_outbox.outbox import registry  # noqa: PLC0415
    from clickhouse_outbox.outbox.deletes import RETIREMENT, RETIREMENT_PEER_MODEL  # noqa: PLC0415

    errors = []
    for name in (*registry.names(), RETIREMENT):  # the rule conf.producer_switch reads them by
        setting = conf.producer_setting_name(name)
        problem = conf.switch_problem(setting, getattr(settings, setting, None))
        if problem is not None:
            errors += messages([problem])
    pii = getattr(settings, "EVENT_SINK_CLICKHOUSE_PII_MODELS", None)
    if pii is not None and (not isinstance(pii, (list, tuple)) or not all(isinstance(name, str) for name in pii)):
        errors.append(Error(
            f"EVENT_SINK_CLICKHOUSE_PII_MODELS is {pii!r}; it must be a list of table names.",
            hint='platform-plugin-aspects\' default is ["user_profile", "external_id"].',
            id="clickhouse_outbox.E031",
        ))
    else:
        known = {table.name for table in all_tables()} | {RETIREMENT_PEER_MODEL}
        for name in conf.pii_tables():
            if name not in known:
                errors.append(Warning(
                    f"EVENT_SINK_CLICKHOUSE_PII_MODELS names {name!r}, which is not a table the outbox writes.",
                    hint=f"A retirement deletes from the tables it names that are: {', '.join(sorted(known - {RETIREMENT_PEER_MODEL}))}.",
                    id="clickhouse_outbox.W032",
                ))
    peer_installed = apps.is_installed("platform_plugin_aspects")
    for producer in registry.all_producers() if valid("CLICKHOUSE_OUTBOX_ENABLED") else ():
        if not producer.enabled:
            continue
        peer_setting = conf.peer_setting_name(producer.peer_model)
        if peer_installed and getattr(settings, peer_setting, False):
            errors.append(Warning(
                f"The {producer.name} producer is on, and so is platform-plugin-aspects' sink for the same table "
                f"({peer_setting}): each change is written twice.",
                hint=f"Set {peer_setting} = False and {conf.producer_setting_name(producer.name)} = True "
                     "(the Tutor plugin does both).",
                id="clickhouse_outbox.W033",
            ))
        installed = getattr(producer, "installed", None)
        if installed is not None and not installed():
            errors.append(Warning(
                f"The {producer.name} producer is on, but the model it reads ({producer.model_name}) is not installed "
                "here, so it queues nothing.",
                hint="Point EVENT_SINK_CLICKHOUSE_MODEL_CONFIG at the model, or turn the producer off with "
                     f"{conf.producer_setting_name(producer.name)} = False.",
                id="clickhouse_outbox.W034",
            ))
    return errors
