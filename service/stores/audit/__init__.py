"""The audit log of rejected items (docs/design.md §5): records, the query every reader builds,
one store per mode (`sqlite`, `redis`) and the exports."""
