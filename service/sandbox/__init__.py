"""Sandboxes: the in-sandbox runner, the zygote pool and its backends (process, docker)."""
