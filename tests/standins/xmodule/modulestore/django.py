"""
Stand-in for edx-platform's `xmodule.modulestore.django`: only the signal the plugin's
`signals_config` names. edx-platform is not installable outside the platform, so the
wiring test imports this instead (tests/plugin/test_wiring.py puts tests/standins on sys.path
for that test only).

The platform defines it as `COURSE_PUBLISHED = Signal()` and sends it with
`send_robust(sender=None, course_key=...)` when a course is published.
"""

from django.dispatch import Signal

COURSE_PUBLISHED = Signal()
