"""
edx-platform's common/djangoapps/student/signals/signals.py, the one signal the peer's
lms.djangoapp plugin config names (PluginSignals.SIGNAL_PATH): CourseEnrollment.send_signal
sends it with event, user, mode, course_id, cost and currency.
"""

from django.dispatch import Signal

ENROLL_STATUS_CHANGE = Signal()
