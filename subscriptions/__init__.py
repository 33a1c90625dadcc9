"""Live progress: the broker, per-job event logs, progress events, and their transports."""
