"""Layer 2: the model as a graph, without running it.

Site discovery and the typed site families (``sites``, ``families``, ``patterns`` for the
op chains exporters write), the metadata lrnconv keeps in a model (``metadata``), editing
a model with onnx-graphsurgeon and splicing it back losslessly (``preserve``), node
builders (``nodes``), the span of nodes a rewrite replaces (``span``), constant folding of
weights (``constants``) and what deployment targets support (``targets``).
"""
