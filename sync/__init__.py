"""Offline sync: push (mutation queues, exactly once), pull (scoped, paginated patches)."""
