"""`python -m onloop.cli`: the same entry point as the `onloop` console script."""

from onloop.cli.main import main

main()
