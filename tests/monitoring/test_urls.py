"""
The endpoints' URLs: mounted under /clickhouse_outbox/ in the LMS and the CMS by edx-django-utils'
own plugin function (get_plugin_url_patterns, from the installed entry points), and in the demo.
"""

import pytest
from django.urls import URLResolver, resolve, reverse
from edx_django_utils.plugins import get_plugin_url_patterns

from clickhouse_outbox.monitoring import views


@pytest.mark.parametrize("project", ["lms.djangoapp", "cms.djangoapp"])
def test_the_plugin_mounts_its_urls_in_each_project(project):
    [mounted] = [pattern for pattern in get_plugin_url_patterns(project)
                 if isinstance(pattern, URLResolver) and pattern.namespace == "clickhouse_outbox"]
    assert mounted.pattern.regex.pattern == "^clickhouse_outbox/"
    assert mounted.resolve("clickhouse_outbox/health").func is views.health
    assert mounted.resolve("clickhouse_outbox/metrics").func is views.metrics


def test_the_demo_project_mounts_them_too():
    assert reverse("clickhouse_outbox:metrics") == "/clickhouse_outbox/metrics"
    assert resolve("/clickhouse_outbox/health").func is views.health
