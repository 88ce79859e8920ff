"""Layer 3: where models come from and where they go.

ONNX files in and out (``modelio``: validation on load, one atomic save) and the Caffe
importer (``caffe``: prototxt + caffemodel to an ONNX model that computes what Caffe
computes). The built-in replicas (``lrnconv.models``) sit on this layer too.
"""
