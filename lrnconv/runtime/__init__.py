"""Layer 5: ONNX Runtime and the data it runs on.

Provider resolution (``providers``), sessions with intermediate tensors exposed and batched
runs (``sessions``), model inputs from files or seeded at random (``inputs``), and the
runnable reference (``runnable``): the original model as ONNX Runtime can run it, built
once per conversion on the rewrite engine.
"""
