"""The monitoring report: one self-contained HTML file about one model (``appliance report``, and the API's
``/v1/models/{name}/report``). It renders the monitoring story (``appliance.monitoring.story``) with the
model's alerts, deployments and promotions, and computes nothing of its own: inline CSS and SVG charts drawn
here, no script, nothing fetched, so it opens offline and can be mailed or archived as it is."""
