"""Layer 4: the rewrite engine.

The strategy protocol and the records a rewrite hands back (``protocol``), the strategies
themselves (``lrnconv.passes``, one module each, and their registry), and the application
of a per-site plan to a model or to an onnx-graphsurgeon graph (``plan``). Nothing here
runs ONNX Runtime: what a strategy needs from data is handed to it.
"""
