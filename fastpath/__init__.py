"""A second executor for the read shapes of the dashboard and course pages (see endpoint.py)."""
