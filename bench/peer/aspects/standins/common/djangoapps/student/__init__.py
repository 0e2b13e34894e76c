"""
Stand-in for edx-platform's `common.djangoapps.student` app (label "student"): the
CourseEnrollment and UserProfile models, and the ENROLL_STATUS_CHANGE signal the peer's
receive_course_enrollment_changed is connected to.
"""
