"""
Stand-in for edx-platform's `xmodule.modulestore.store_utilities`: only the constant the
peer reads. The platform computes it as the XBlock types tagged "detached", which in a
stock platform are these three.
"""

DETACHED_XBLOCK_TYPES = {"about", "course_info", "static_tab"}
