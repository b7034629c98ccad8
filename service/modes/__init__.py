"""Execution modes: where the items of a request run (docs/design.md §5). `embedded`: the
engine in the API's own process, jobs in memory, the audit log in SQLite; `distributed`: RQ
chunk jobs on `azr-verify worker` processes, results, cache and audit log in Redis. Both
implement `protocol.ExecutionMode`; `selection.build_mode` picks one from the settings."""
