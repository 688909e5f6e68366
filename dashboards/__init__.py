"""The analysts' live Panel dashboard: alert feed and KPIs, triage, and history (docs/dashboard.md).

`python -m dashboards` serves it; dashboards.data holds every query, dashboards.app the Panel views.
"""
