"""
A telemetry backend that keeps what it is given, for the tests: edx-django-utils' own
set_custom_attribute reaches it through OPENEDX_TELEMETRY, as it reaches New Relic's or
Datadog's backend on a site (their agents are not installed here).
"""

from contextlib import nullcontext

from edx_django_utils.monitoring import TelemetryBackend

#: (key, value) pairs every RecordingBackend instance was given, in order.
RECORDED = []


class RecordingBackend(TelemetryBackend):
    def set_attribute(self, key, value):
        RECORDED.append((key, value))

    def record_exception(self):
        pass

    def create_span(self, name, operation_name=None):
        return nullcontext()

    def tag_root_span_with_error(self, exception):
        pass

    def set_local_root_span_name(self, name, group=None, priority=None):
        pass
