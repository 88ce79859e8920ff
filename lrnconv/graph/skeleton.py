"""A weightless copy of a model, for the whole-graph work that needs shapes but not values.

Shape inference and the ONNX checker copy the model they are given; on a 240 MB AlexNet that
doubles memory for nothing, since only the shapes of large weights matter to them. The copy
keeps every node, input, output, value_info and function, the small initializers (shape
constants that inference needs as values), and turns every large or external initializer into
a graph input of the same type and shape.
"""
from __future__ import annotations

import onnx

INLINE_LIMIT = 1024
"""Initializers with more elements than this become graph inputs (shapes only)."""


def weightless_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its large weights (see the module docstring)."""
    skeleton = onnx.ModelProto()
    skeleton.ir_version = max(model.ir_version, 4)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    source = model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    initializer_names = {t.name for t in source.initializer}
    graph.input.extend(i for i in source.input if i.name not in initializer_names)
    for tensor in source.initializer:
        count = 1
        for d in tensor.dims:
            count *= d
        if count <= INLINE_LIMIT and tensor.data_location != onnx.TensorProto.EXTERNAL:
            graph.initializer.append(tensor)
        else:
            graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    for sparse in source.sparse_initializer:
        graph.input.append(onnx.helper.make_tensor_value_info(sparse.values.name, sparse.values.data_type,
                                                              list(sparse.dims)))
    return skeleton
