"""The live dashboard: a read-only HTTP server over the Redis keys the sink writes.

`app` serves the page and the JSON API, `access` decides who may connect,
`tables` builds the tables the page shows (JSON and CSV).  ``python -m
streams.web`` runs it alone.  See docs/api.md and docs/security.md.
"""

from streams.web.app import STATIC_DIR, Options, create_app, main, serve

__all__ = ["STATIC_DIR", "Options", "create_app", "main", "serve"]
