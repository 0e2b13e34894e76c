#!/usr/bin/env python
"""The standalone project: the plugin outside edx-platform, for the demo and the tests."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "outbox_project.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
