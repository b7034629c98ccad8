"""The content-addressed result cache (docs/design.md §5): what an entry holds and its key
(`entries`), kept in memory (`memory`) or in Redis, shared by every worker (`redis`)."""
