"""
clickhouse_outbox: every table Aspects' event sinks write to ClickHouse, queued in a transactional
outbox in the LMS/CMS database and drained to ClickHouse with retries.
"""

import os
import re

from setuptools import find_namespace_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
DOCS_URL = "https://clickhouse-outbox.readthedocs.io/en/latest/"
REPOSITORY_URL = "https://github.com/openedx/clickhouse-outbox"


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
    description=(
        "An Open edX plugin that delivers every table Aspects' event sinks write to ClickHouse (courses, "
        "enrollments, profiles, tags, retirements) through a transactional outbox, with retries, "
        "verification and an admin."
    ),
    long_description=read("README.rst"),
    long_description_content_type="text/x-rst",
    url=DOCS_URL,
    project_urls={
        "Documentation": DOCS_URL,
        "Source": REPOSITORY_URL,
        "Issues": f"{REPOSITORY_URL}/issues",
        "Changelog": f"{REPOSITORY_URL}/blob/main/CHANGELOG.rst",
    },
    license="AGPL-3.0-or-later",
    license_files=["LICENSE.txt"],
    keywords="Open edX, Aspects, ClickHouse, transactional outbox, analytics",
    # Namespace packages too: the data folders (the sample course, the admin's templates) are
    # packages to setuptools, shipped whole through MANIFEST.in and include_package_data.
    packages=find_namespace_packages(include=["clickhouse_outbox", "clickhouse_outbox.*"]),
    include_package_data=True,
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
        "Environment :: Plugins",
        "Framework :: Django",
        "Framework :: Django :: 5.2",
        "Intended Audience :: Education",
        "Intended Audience :: System Administrators",
        "Natural Language :: English",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Database",
        "Topic :: Education",
    ],
)
