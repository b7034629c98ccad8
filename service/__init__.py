"""azr-verify service: the verification engine, sandboxes and the HTTP API."""

__version__ = "0.1.0"
