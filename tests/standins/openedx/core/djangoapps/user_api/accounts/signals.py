"""
Stand-in for edx-platform's `openedx.core.djangoapps.user_api.accounts.signals`: only the
signal the plugin's LMS `signals_config` names. The platform sends it from the retirement
pipeline's "retire misc" step, `USER_RETIRE_LMS_MISC.send(sender=..., email=..., new_email=..., user=user)`.
"""

from django.dispatch import Signal

USER_RETIRE_LMS_MISC = Signal()
