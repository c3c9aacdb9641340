"""`python -m streams.cli`: the console script, as the worker processes are started."""

from streams.cli import main

main()
