"""python -m lrnconv: the same as the lrnconv command."""
from .app.cli import main

main()
