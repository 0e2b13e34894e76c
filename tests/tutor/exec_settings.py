"""
Run by the project's python in a process of its own (not by pytest): execute a rendered
Tutor LMS or CMS settings file (apps/openedx/settings/{lms,cms}/NAME.py) as edx-platform
imports it (as the module lms.envs.tutor.NAME or cms.envs.tutor.NAME, with the stand-ins of
platform_standins/ first on sys.path and this project installed), then print its settings
as JSON.

    python exec_settings.py RENDERED_SETTINGS_FILE

The rendered file creates the container's folders (/openedx/...): those calls are
recorded, not made, and printed as "_made_dirs".
"""

import importlib
import json
import os
import sys
import types
from pathlib import Path

STANDINS = Path(__file__).resolve().parent / "platform_standins"


def main(settings_file):
    sys.path.insert(0, str(STANDINS))
    made_dirs = []
    makedirs = os.makedirs

    def record_container_dirs(name, *args, **kwargs):
        if str(name).startswith("/openedx"):
            made_dirs.append(str(name))
        else:
            makedirs(name, *args, **kwargs)

    os.makedirs = record_container_dirs
    os.environ.pop("DJANGO_SETTINGS_MODULE", None)

    path = Path(settings_file)
    service = path.parent.name
    if service not in ("lms", "cms"):
        raise SystemExit(f"{path}: not in an lms or cms settings folder")
    # The stand-in package the rendered module lives in (lms.envs or cms.envs).
    importlib.import_module(f"{service}.envs")
    package = f"{service}.envs.tutor"
    name = f"{package}.{path.stem}"

    module = types.ModuleType(name)
    module.__file__ = str(path)
    module.__package__ = package
    sys.modules[name] = module
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)

    values = {key: value for key, value in vars(module).items() if key.isupper()}
    values["_made_dirs"] = made_dirs
    json.dump(values, sys.stdout, default=repr)


if __name__ == "__main__":
    main(sys.argv[1])
