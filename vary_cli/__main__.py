"""`python -m vary_cli` runs the `vary` command line."""

from .cli.app import main

main()
