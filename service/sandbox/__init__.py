"""Sandboxes: the in-sandbox runner, the zygote pool and its backends (bubblewrap,
configured as `process`; docker), and the factory that picks one (docs/design.md §4)."""
