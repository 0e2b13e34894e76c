"""
The user_profile producer: a user's profile (UserProfile, with the user's username and
email) as its row, queued when the profile (or the user's username or email) is saved.
"""

from clickhouse_outbox.clickhouse.tables import USER_PROFILE
from clickhouse_outbox.outbox import registry
from clickhouse_outbox.producers.model_rows import ModelRowProducer
from clickhouse_outbox.serializers.users import PROFILE_VALUES, profile_row, profile_values_encoder


class UserProfile(ModelRowProducer):
    name = "user_profile"
    noun = ("user profile", "user profiles")
    model_name = "user_profile"
    one_row_capture = True
    table = USER_PROFILE
    related = ("user",)

    values_fields = PROFILE_VALUES
    values_datetimes = ("profile_image_uploaded_at",)

    def user_of(self, profile):
        return profile.user_id

    def serialize(self, profile, *, dump_id, time_last_dumped):
        return profile_row(profile, dump_id=dump_id, time_last_dumped=time_last_dumped)

    def values_encoder(self, *, dump_id, time_last_dumped):
        return profile_values_encoder(dump_id=dump_id, time_last_dumped=time_last_dumped)


PROFILES = registry.register(UserProfile())
