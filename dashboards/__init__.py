"""Server-rendered dashboards: queries, Jinja2 templates and bundled static assets (Chart.js)."""
