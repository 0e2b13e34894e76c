"""
Run by .tutor-venv's python (not by pytest): load Tutor's hooks the way the `tutor` command
does for TUTOR_ROOT, and print as JSON what Docker would be asked to run, rendered with
that root's config: every init task (in order, with the plugin that added it), the
scripts the given `do` jobs yield, the settings patches Aspects adds and this plugin's
Tutor settings.

    python tutor_hooks.py JOB [JOB...]
"""

import json
import os
import sys

import tutor.commands.cli  # noqa: F401  the core hooks (init tasks, do jobs), as `tutor` loads them
from tutor import config as tutor_config
from tutor import env as tutor_env
from tutor import hooks


def main(jobs):
    root = os.environ["TUTOR_ROOT"]
    hooks.Actions.CORE_READY.do()
    hooks.Actions.PROJECT_ROOT_READY.do(root)
    config = tutor_config.load(root)

    ours = hooks.Contexts.app("clickhouse_outbox").name
    our_tasks = list(hooks.Filters.CLI_DO_INIT_TASKS.iterate_from_context(ours))
    init_tasks = [
        {"service": service, "script": tutor_env.render_str(config, script), "ours": (service, script) in our_tasks}
        for service, script in hooks.Filters.CLI_DO_INIT_TASKS.iterate()
    ]
    commands = {command.name: command for command in hooks.Filters.CLI_DO_COMMANDS.iterate()}
    do_jobs = {}
    for name in jobs:
        # Tutor wraps each job's callback to run what it yields; __wrapped__ is the job itself.
        callback = getattr(commands[name].callback, "__wrapped__", commands[name].callback)
        do_jobs[name] = [[service, tutor_env.render_str(config, script)] for service, script in callback()]
    aspects = hooks.Contexts.app("aspects").name
    aspects_patches = {}
    for patch, content in hooks.Filters.ENV_PATCHES.iterate_from_context(aspects):
        aspects_patches.setdefault(patch, []).append(tutor_env.render_str(config, content))
    settings = {key: value for key, value in config.items() if key.startswith("CLICKHOUSE_OUTBOX_")}
    json.dump(
        {"init_tasks": init_tasks, "do_jobs": do_jobs, "aspects_patches": aspects_patches, "config": settings},
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
