"""Read replicas (DATABASE_REPLICA_URLS; docs/replicas.md): read-only queries of the dashboard
and course pages, and sync pulls, read from a PostgreSQL streaming replica in rotation; every
other statement, and a user's reads until a replica has replayed that user's last write, go to
the primary.

- routing.py: `reads(user_id)` (the choke point) and `wrote(user_id)` (read-your-writes);
- rotation.py: the replicas of a process, checked in the background;
- lag.py: a replica's lag from WAL positions; marks.py: the users' read-your-writes marks;
- client.py: a replica's Tortoise client, falling back to the primary when unreachable.
"""
