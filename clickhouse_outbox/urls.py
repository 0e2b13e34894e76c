"""
The plugin's URLs, mounted under /clickhouse_outbox/ in the LMS and the CMS by the Open edX
plugin system (apps.py's url_config), and by outbox_project/urls.py in the demo and tests.
"""

from django.urls import path

from clickhouse_outbox.monitoring import views

app_name = "clickhouse_outbox"

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
    path("health", views.health, name="health"),
]
