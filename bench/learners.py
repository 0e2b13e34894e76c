"""
The learners of the backfill scenarios: a site's users, made before the plugin is installed,
the same rows in our database and in the peer's (bench/peer/aspects/, its own venv), so
both sides back up identical data.

Every value is a function of the user's index (ids included), so two databases filled with
the same N hold the same rows: N users (auth_user), each with a profile (auth_userprofile)
and an external id of one type (external_user_ids_externalid), and 3N enrollments
(student_courseenrollment) spread over 300 courses. They are written with the driver's
bulk path, never the ORM one by one, and never through a model's save(): no signal is sent
(the plugin, or the peer, must not see them as changes). PostgreSQL: COPY; MariaDB/MySQL:
executemany (mysqlclient sends multi-row INSERTs); SQLite: executemany in one transaction.

Standard library and Django only: ours (bench/ours.py) and the peer's runner import it,
each with its own Django connection.
"""

import time
import uuid
from datetime import UTC, datetime, timedelta

#: Enrollments per user, and the courses they are spread over (distinct per user).
ENROLLMENTS_PER_USER = 3
COURSES = 300
#: The one external id type (the platform's LTI ids are made by batch_get_or_create_user_ids).
ID_TYPE = (1, "lti", "LTI user ids")
BASE_TIME = datetime(2025, 9, 1, tzinfo=UTC)
CHUNK = 20_000

USER = ("auth_user", ("id", "password", "last_login", "is_superuser", "username", "first_name", "last_name",
                      "email", "is_staff", "is_active", "date_joined"))
PROFILE = ("auth_userprofile", ("id", "user_id", "name", "meta", "courseware", "language", "location",
                                "year_of_birth", "gender", "level_of_education", "mailing_address", "city",
                                "country", "state", "goals", "bio", "profile_image_uploaded_at", "phone_number"))
ID_TYPES = ("external_user_ids_externalidtype", ("id", "name", "description"))
EXTERNAL_ID = ("external_user_ids_externalid", ("id", "external_user_id", "external_id_type_id", "user_id"))
ENROLLMENT = ("student_courseenrollment", ("id", "user_id", "course_id", "created", "is_active", "mode"))
#: Children first (the order they are emptied in).
TABLES = [ENROLLMENT[0], EXTERNAL_ID[0], ID_TYPES[0], PROFILE[0], USER[0]]

GENDERS = ("f", "m", "o", None)
EDUCATION = ("p", "hs", "b", "m", "a", None)
COUNTRIES = ("FR", "US", "IN", "BR", "NG", "DE", "MX", None)
MODES = ("audit", "verified", "audit")


def username(index):
    return f"learner{index:07d}"


def course_key(index, k):
    return f"course-v1:BenchX+C{(index * ENROLLMENTS_PER_USER + k) % COURSES:03d}+R1"


def expected_rows(users):
    """The rows each ClickHouse table should hold after a full backfill of `users` users."""
    return {"user_profile": users, "external_id": users, "course_enrollment": users * ENROLLMENTS_PER_USER}


def present(connection, users):
    """Whether the database holds the learners of `users` already (made by `generate`, not emptied since)."""
    with connection.cursor() as cursor:
        counts = []
        for table in (PROFILE[0], EXTERNAL_ID[0], ENROLLMENT[0]):
            cursor.execute(f"SELECT COUNT(*), MAX(id) FROM {table}")  # noqa: S608 (our table names)
            counts.append(tuple(cursor.fetchone()))
        cursor.execute(f"SELECT username FROM {USER[0]} WHERE id = %s", [users])
        last = cursor.fetchone()
    enrollments = users * ENROLLMENTS_PER_USER
    return (counts == [(users, users), (users, users), (enrollments, enrollments)]
            and last is not None and last[0] == username(users - 1))


def empty(connection):
    """The platform's tables emptied (see `empty_tables`), and the admin's log of what its users did (where it is)."""
    log = ["django_admin_log"] if "django_admin_log" in connection.introspection.table_names() else []
    empty_tables(connection, [*log, *TABLES])


def empty_tables(connection, tables):
    """`tables` (children first) emptied with raw statements: deleting users through the ORM would send signals."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        elif connection.vendor == "mysql":
            cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in tables:
                cursor.execute(f"TRUNCATE TABLE {table}")
            cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")  # noqa: S608 (our table names)
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM")


def generate(connection, users, *, reuse=True, log=None):
    """
    N users with their profiles and external ids, and 3N enrollments, in `connection`'s
    database (the platform tables emptied first), unless `reuse` and they are there already.
    Returns {"generated": bool, "seconds": float, "rows": {table: rows}}.
    """
    started = time.perf_counter()
    rows = {USER[0]: users, PROFILE[0]: users, EXTERNAL_ID[0]: users, ENROLLMENT[0]: users * ENROLLMENTS_PER_USER}
    if reuse and present(connection, users):
        return {"generated": False, "seconds": round(time.perf_counter() - started, 2), "rows": rows}
    empty(connection)
    adapt_time = connection.ops.adapt_datetimefield_value
    native_uuid = connection.features.has_native_uuid_field
    for table, columns in (ID_TYPES,):
        write(connection, table, columns, [ID_TYPE])
    for start in range(0, users, CHUNK):
        indexes = range(start, min(users, start + CHUNK))
        times = [adapt_time(BASE_TIME + timedelta(seconds=index)) for index in indexes]
        write(connection, *USER, [
            (index + 1, "!", None, False, username(index), "", "", f"{username(index)}@example.com", False, True,
             when) for index, when in zip(indexes, times, strict=True)])
        write(connection, *PROFILE, [
            (index + 1, index + 1, f"Learner {index}", "", "course.xml", "en", "",
             None if index % 7 == 0 else 1950 + index % 55, GENDERS[index % 4], EDUCATION[index % 6], None,
             f"City {index % 500}", COUNTRIES[index % 8], None, "", None, None, None) for index in indexes])
        write(connection, *EXTERNAL_ID, [
            (index + 1, external_user_id(index, native_uuid), ID_TYPE[0], index + 1) for index in indexes])
        write(connection, *ENROLLMENT, [
            (index * ENROLLMENTS_PER_USER + k + 1, index + 1, course_key(index, k), when, k != 2 or index % 5 != 0,
             MODES[k]) for index, when in zip(indexes, times, strict=True) for k in range(ENROLLMENTS_PER_USER)])
        if log:
            log(f"learners: {min(users, start + CHUNK):,} of {users:,} users written")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in (USER[0], PROFILE[0], ID_TYPES[0], EXTERNAL_ID[0], ENROLLMENT[0]):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT MAX(id) FROM {table}))")  # noqa: S608 (our table names)
    if connection.vendor in ("postgresql", "mysql"):
        with connection.cursor() as cursor:
            for table in TABLES:
                cursor.execute(f"ANALYZE TABLE {table}" if connection.vendor == "mysql" else f"ANALYZE {table}")
                if connection.vendor == "mysql":
                    cursor.fetchall()
    return {"generated": True, "seconds": round(time.perf_counter() - started, 2), "rows": rows}


def external_user_id(index, native_uuid):
    value = uuid.UUID(int=(0xBE7C << 112) | index)
    return str(value) if native_uuid else value.hex


def write(connection, table, columns, rows):
    """`rows` into `table` with the driver's bulk path, in one transaction."""
    from django.db import transaction  # noqa: PLC0415 (Django is set up by the caller)

    names = ", ".join(columns)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(columns))
            sql = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608 (our table names)
            for start in range(0, len(rows), 5_000):
                cursor.executemany(sql, rows[start:start + 5_000])
