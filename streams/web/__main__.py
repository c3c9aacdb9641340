"""``python -m streams.web``: the dashboard alone (the compose file's service)."""

from streams.web.app import main

main()
