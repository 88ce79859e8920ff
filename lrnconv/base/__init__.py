"""Layer 0, used by every layer above: the error types, the one write path, text formatting.

The layers of lrnconv, bottom up (each imports only from those below it; ``tests/test_layers.py``
keeps it so): ``base`` → ``maths`` → ``graph`` → ``formats`` (and ``lrnconv.models``) →
``engine`` (and ``lrnconv.passes``) → ``runtime`` → ``measure`` → ``app``.
"""
