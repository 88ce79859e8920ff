"""python -m lrnconv: the same as the lrnconv command."""
from .cli import main

main()
