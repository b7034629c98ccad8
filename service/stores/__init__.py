"""What the service keeps, each concept with both of its implementations side by side
(docs/design.md §3): the result cache (memory, Redis), the audit log (SQLite, Redis) and the
embedded mode's job store."""
