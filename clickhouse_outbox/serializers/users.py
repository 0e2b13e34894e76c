"""
Rows about learners: course_enrollment, user_profile and external_id, column for column as
platform-plugin-aspects 2.1.0's serializers give them and ClickHouse stores them.

The peer writes its DRF serializers' output as CSV: a missing value (None) becomes an empty
field, which ClickHouse stores as "" in a String column; dates are DRF's ISO strings (UTC,
"Z"). The JSON lines here hold the same values explicitly, typed for their columns.
"""

from clickhouse_outbox.clickhouse.tables import COURSE_ENROLLMENT, EXTERNAL_ID, USER_PROFILE
from clickhouse_outbox.serializers.encoding import drf_datetime, drf_stored_datetime, encode_row, encode_string
from clickhouse_outbox.serializers.lines import fill, json_value, line_template

#: user_profile's columns read from the profile as text, in table order (after id, user_id, name, username, email).
PROFILE_TEXT = (
    "meta", "courseware", "language", "location", "year_of_birth", "gender", "level_of_education",
    "mailing_address", "city", "country", "state", "goals", "bio",
)


def text(value):
    """A String column's value as the peer's CSV leaves it: None as "", anything else as its str()."""
    return "" if value is None else str(value)


def enrollment_row(enrollment, *, dump_id, time_last_dumped):
    """A CourseEnrollment (with its user) as a course_enrollment line."""
    return enrollment_line(enrollment.id, enrollment.user_id, str(enrollment.course_id), enrollment.created,
                           enrollment.is_active, enrollment.mode, enrollment.user.username,
                           dump_id=dump_id, time_last_dumped=time_last_dumped)


def enrollment_line(pk, user_id, course_key, created, is_active, mode, username, *, dump_id, time_last_dumped):
    """
    The course_enrollment line of an enrollment given as plain values (`course_key` as text):
    the drain fills requests from `values_list()` rows through it, the change from an instance.
    """
    return encode_row(COURSE_ENROLLMENT.column_names, (
        pk,
        course_key,
        drf_datetime(created),
        bool(is_active),
        text(mode),
        username,
        user_id,
        str(dump_id),
        time_last_dumped,
    ))


def profile_row(profile, *, dump_id, time_last_dumped):
    """A UserProfile (with its user) as a user_profile line."""
    user = profile.user
    return profile_line(profile.id, profile.user_id, profile.name, user.username, user.email,
                        *(getattr(profile, name) for name in PROFILE_TEXT), profile.profile_image_uploaded_at,
                        profile.phone_number, dump_id=dump_id, time_last_dumped=time_last_dumped)


#: The values `profile_line` takes, in its order, as `values_list()` names them from a UserProfile.
PROFILE_VALUES = ("id", "user_id", "name", "user__username", "user__email", *PROFILE_TEXT,
                  "profile_image_uploaded_at", "phone_number")


def profile_line(pk, user_id, name, username, email, *values, dump_id, time_last_dumped):
    """
    The user_profile line of a profile given as plain values (`PROFILE_VALUES`: the PROFILE_TEXT
    columns, then profile_image_uploaded_at and phone_number).
    """
    *texts, uploaded_at, phone_number = values
    return encode_row(USER_PROFILE.column_names, (
        pk,
        user_id,
        text(name),
        username,
        email,
        *map(text, texts),
        drf_datetime(uploaded_at),
        text(phone_number),
        str(dump_id),
        time_last_dumped,
    ))


def external_id_row(external_id, *, dump_id, time_last_dumped):
    """An ExternalId (with its type and user) as an external_id line."""
    return external_id_line(external_id.id, external_id.user_id, external_id.external_user_id,
                            external_id.external_id_type.name, external_id.user.username,
                            dump_id=dump_id, time_last_dumped=time_last_dumped)


def external_id_line(pk, user_id, external_user_id, type_name, username, *, dump_id, time_last_dumped):
    """The external_id line of an external id given as plain values (`pk` is not a column of the table)."""
    return encode_row(EXTERNAL_ID.column_names, (
        str(external_user_id),
        type_name,
        username,
        user_id,
        str(dump_id),
        time_last_dumped,
    ))


# -- the same rows from `.values_list()` tuples: a whole-table dump reads a key range with one query ----

#: The `.values_list()` fields each encoder below reads, in this order (joins for the username and the
#: type's name).
ENROLLMENT_VALUES = ("id", "course_id", "created", "is_active", "mode", "user__username", "user_id")
EXTERNAL_ID_VALUES = ("id", "external_user_id", "external_id_type__name", "user__username", "user_id")


def constants(dump_id, time_last_dumped):
    return {"dump_id": str(dump_id), "time_last_dumped": time_last_dumped}


def enrollment_values_encoder(*, dump_id, time_last_dumped, course_key):
    """
    `enrollment_row` of ENROLLMENT_VALUES tuples, the same line; `course_id` comes as the
    stored text and `course_key(text)` makes it the key (as the field would), once per course;
    `created` as stored or as a datetime (`drf_stored_datetime`).
    """
    template = line_template(COURSE_ENROLLMENT.column_names, constants(dump_id, time_last_dumped))
    keys = {}

    def encode(row):
        pk, course, created, is_active, mode, username, user_id = row
        key = keys.get(course)
        if key is None:
            key = keys[course] = encode_string(str(course_key(course)))
        return fill(template, (json_value(pk), key, encode_string(drf_stored_datetime(created)),
                               "true" if is_active else "false", encode_string(text(mode)), json_value(username),
                               json_value(user_id)))
    return encode


def profile_values_encoder(*, dump_id, time_last_dumped):
    """`profile_row` of PROFILE_VALUES tuples: the same line (`profile_image_uploaded_at` as `created` above)."""
    template = line_template(USER_PROFILE.column_names, constants(dump_id, time_last_dumped))

    def encode(row):
        pk, user_id, name, username, email, *texts, uploaded, phone = row
        return fill(template, (json_value(pk), json_value(user_id), encode_string(text(name)), json_value(username),
                               json_value(email), *[encode_string(text(value)) for value in texts],
                               encode_string(drf_stored_datetime(uploaded)), encode_string(text(phone))))
    return encode


def external_id_values_encoder(*, dump_id, time_last_dumped):
    """`external_id_row` of EXTERNAL_ID_VALUES tuples: the same line."""
    template = line_template(EXTERNAL_ID.column_names, constants(dump_id, time_last_dumped))

    def encode(row):
        _, external_user_id, type_name, username, user_id = row
        return fill(template, (encode_string(str(external_user_id)), json_value(type_name), json_value(username),
                               json_value(user_id)))
    return encode
