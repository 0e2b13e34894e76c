"""
clickhouse_outbox: course publishes queued in a transactional outbox and drained to ClickHouse.
"""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read(*parts):
    with open(os.path.join(HERE, *parts), encoding="utf-8") as handle:
        return handle.read()


def version():
    return re.search(r'^__version__ = "([^"]+)"', read("clickhouse_outbox", "__init__.py"), re.M).group(1)


def requirements(name):
    """The unpinned requirements of requirements/NAME.in (pins live in the .txt files)."""
    lines = []
    for line in read("requirements", name).splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith(("-r", "-c")):
            lines.append(line)
    return lines


setup(
    name="clickhouse-outbox",
    version=version(),
    description="Reliable course-structure analytics for Open edX: a transactional outbox drained to ClickHouse.",
    long_description=read("README.rst"),
    long_description_content_type="text/x-rst",
    license="AGPL-3.0",
    packages=find_packages(include=["clickhouse_outbox", "clickhouse_outbox.*"]),
    include_package_data=True,
    package_data={"clickhouse_outbox": ["sample_course/**/*", "sample_course/*", "templates/**/*"]},
    python_requires=">=3.11",
    install_requires=requirements("base.in"),
    extras_require={"embedded": requirements("embedded.in"), "tutor": requirements("tutor-plugin.in")},
    entry_points={
        "cms.djangoapp": ["clickhouse_outbox = clickhouse_outbox.apps:ClickhouseOutboxConfig"],
        "lms.djangoapp": ["clickhouse_outbox = clickhouse_outbox.apps:ClickhouseOutboxConfig"],
        "tutor.plugin.v1": ["clickhouse_outbox = clickhouse_outbox.tutor.plugin"],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Framework :: Django",
        "Framework :: Django :: 5.2",
        "License :: OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
