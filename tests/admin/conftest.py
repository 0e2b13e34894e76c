"""
The admin tests: staff users, courses in an OLX folder the plugin reads, and a drain
against the real ClickHouse test server.
"""

import pytest
from django.contrib.auth.models import Permission

from clickhouse_outbox.models import Snapshot
from clickhouse_outbox.receivers import course_published
from clickhouse_outbox.sources.olx import folder_name
from clickhouse_outbox.testing.generator import write_course_export


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", None)  # no password: no slow hashing


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff_client(django_user_model, client):
    """`staff_client(*codenames)`: a client logged in as a staff user with the view permissions and these."""

    def make(*codenames, username="staff"):
        user = django_user_model.objects.create_user(username, f"{username}@example.com", None, is_staff=True)
        names = [*codenames]
        user.user_permissions.set(
            Permission.objects.filter(content_type__app_label="clickhouse_outbox", codename__startswith="view_")
            | Permission.objects.filter(content_type__app_label="clickhouse_outbox", codename__in=names)
        )
        assert user.user_permissions.filter(codename__in=names).count() == len(names), names
        client.force_login(user)
        client.user = user
        return client

    return make


@pytest.fixture
def add_course(olx_source, tmp_path):
    """`add_course(name)`: a generated course export added to the OLX folder; returns its key (a str)."""

    def add(name, blocks=12):
        export = write_course_export(tmp_path / "exports", blocks=blocks, org="AdminX", course=name, run="2026")
        return str(olx_source.add_export(export))

    return add


@pytest.fixture
def publish():
    """`publish(key)`: what the CMS does when a course is published; returns the course's latest snapshot."""

    def run(course_key):
        course_published(sender=None, course_key=course_key)
        return Snapshot.objects.filter(subject=str(course_key)).latest("id")

    return run


@pytest.fixture
def break_course(olx_dir):
    """`break_course(key)`: the course's export in the folder can no longer be parsed."""

    def run(course_key):
        (olx_dir / folder_name(course_key) / "course.xml").write_text("<course org=")

    return run
