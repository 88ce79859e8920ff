"""python -m lrnconv: the same as the lrnconv command."""
from .app.entry import main

main()
