"""Layer 1: numpy maths with no model in sight.

The float64 LRN reference of every framework (``reference``), streaming calibration
statistics (``stats``), drift metrics and tolerances (``drift``), and Caffe's pooled-extent
arithmetic (``geometry``), which both the Caffe importer and the built-in replicas use.
"""
