"""``python -m medistill``: the same command line as the ``medistill`` script."""

from medistill.cli import main

main()
