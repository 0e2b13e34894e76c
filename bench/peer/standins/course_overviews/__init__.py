"""
Stand-in for edx-platform's `openedx.core.djangoapps.content.course_overviews` app: only
the CourseOverview model, with the fields the peer's CourseOverviewSerializer reads.
"""
