"""Layer 6: measuring models on data with ONNX Runtime.

Calibration statistics with a held-out half (``calibration``), drift reports of a candidate
against the runnable reference (``verification``), and ``auto``'s per-site choice of the
cheapest strategy within tolerance (``selection``).
"""
