"""The subset of Caffe's message schema that the importer reads, built at import time.

Caffe models are protobuf messages of package ``caffe`` (proto2). Rather than ship a
generated ``caffe_pb2`` (or run ``protoc`` at build time), this module declares the
messages the importer needs as a table and turns it into a ``FileDescriptorProto`` in
a private ``DescriptorPool``, so it never clashes with another ``caffe`` schema that a
user has loaded into the default pool. Field numbers, types, defaults and enum values
are those of BVLC Caffe, so files written here are read by Caffe and OpenCV and files
written by them are read here.

Declared: ``NetParameter``, ``NetState``, ``NetStateRule``, ``ParamSpec``,
``LayerParameter``, ``V1LayerParameter``, ``BlobProto``, ``BlobShape``,
``FillerParameter`` and the ``*Parameter`` messages of the layers that the importer
converts (plus ``Bias``, ``Silence`` and ``Input``). Anything else in a prototxt
(``transform_param``, ``data_param``, ``loss_param`` ...) is skipped by the text
parser (``allow_unknown_field``) and kept as unknown fields by the binary parser.

``RawBlobProto`` is a second view of ``BlobProto`` in its own pool: ``data`` and
``double_data`` are declared ``bytes``. A packed repeated float is encoded on the
wire exactly like a length-delimited bytes field, so this view carries a blob's
little-endian float32 buffer without converting it element by element; the writer
uses it to build large blobs quickly (:func:`lrnconv.formats.caffe.netspec.blob_from_array`).
"""
from __future__ import annotations

import enum
from typing import Dict, List, Optional, Tuple

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "NetParameter", "LayerParameter", "V1LayerParameter", "BlobProto", "BlobShape",
    "RawBlobProto", "V1_TYPE_NAMES", "message_class", "Phase", "NormRegion", "PoolMethod",
    "RoundMode", "EltwiseOp",
]

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _FDP.TYPE_DOUBLE, "float": _FDP.TYPE_FLOAT, "int64": _FDP.TYPE_INT64,
    "uint64": _FDP.TYPE_UINT64, "int32": _FDP.TYPE_INT32, "uint32": _FDP.TYPE_UINT32,
    "bool": _FDP.TYPE_BOOL, "string": _FDP.TYPE_STRING, "bytes": _FDP.TYPE_BYTES,
}
_LABELS = {"optional": _FDP.LABEL_OPTIONAL, "repeated": _FDP.LABEL_REPEATED}

# A field: (name, number, type, label, default, packed). ``type`` is a scalar name,
# a message name or an enum name ("Message.Enum" for nested enums).
Field = Tuple[str, int, str, str, Optional[str], bool]


def _opt(name: str, number: int, type_: str, default: Optional[str] = None) -> Field:
    return (name, number, type_, "optional", default, False)


def _rep(name: str, number: int, type_: str, packed: bool = False) -> Field:
    return (name, number, type_, "repeated", None, packed)


_ENGINE = {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2}

# message name -> (fields, nested enums {enum name: {value name: number}})
_MESSAGES: Dict[str, Tuple[List[Field], Dict[str, Dict[str, int]]]] = {
    "BlobShape": ([_rep("dim", 1, "int64", packed=True)], {}),
    "BlobProto": ([
        _opt("shape", 7, "BlobShape"),
        _rep("data", 5, "float", packed=True),
        _rep("diff", 6, "float", packed=True),
        _rep("double_data", 8, "double", packed=True),
        _rep("double_diff", 9, "double", packed=True),
        _opt("num", 1, "int32", "0"),
        _opt("channels", 2, "int32", "0"),
        _opt("height", 3, "int32", "0"),
        _opt("width", 4, "int32", "0"),
    ], {}),
    "FillerParameter": ([
        _opt("type", 1, "string", "constant"),
        _opt("value", 2, "float", "0"),
        _opt("min", 3, "float", "0"),
        _opt("max", 4, "float", "1"),
        _opt("mean", 5, "float", "0"),
        _opt("std", 6, "float", "1"),
        _opt("sparse", 7, "int32", "-1"),
        _opt("variance_norm", 8, "FillerParameter.VarianceNorm", "FAN_IN"),
    ], {"VarianceNorm": {"FAN_IN": 0, "FAN_OUT": 1, "AVERAGE": 2}}),
    "NetParameter": ([
        _opt("name", 1, "string"),
        _rep("input", 3, "string"),
        _rep("input_shape", 8, "BlobShape"),
        _rep("input_dim", 4, "int32"),
        _opt("force_backward", 5, "bool", "false"),
        _opt("state", 6, "NetState"),
        _opt("debug_info", 7, "bool", "false"),
        _rep("layer", 100, "LayerParameter"),
        _rep("layers", 2, "V1LayerParameter"),
    ], {}),
    "NetState": ([
        _opt("phase", 1, "Phase", "TEST"),
        _opt("level", 2, "int32", "0"),
        _rep("stage", 3, "string"),
    ], {}),
    "NetStateRule": ([
        _opt("phase", 1, "Phase"),
        _opt("min_level", 2, "int32"),
        _opt("max_level", 3, "int32"),
        _rep("stage", 4, "string"),
        _rep("not_stage", 5, "string"),
    ], {}),
    "ParamSpec": ([
        _opt("name", 1, "string"),
        _opt("share_mode", 2, "ParamSpec.DimCheckMode"),
        _opt("lr_mult", 3, "float", "1"),
        _opt("decay_mult", 4, "float", "1"),
    ], {"DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1}}),
    "LayerParameter": ([
        _opt("name", 1, "string"),
        _opt("type", 2, "string"),
        _rep("bottom", 3, "string"),
        _rep("top", 4, "string"),
        _opt("phase", 10, "Phase"),
        _rep("loss_weight", 5, "float"),
        _rep("param", 6, "ParamSpec"),
        _rep("blobs", 7, "BlobProto"),
        _rep("propagate_down", 11, "bool"),
        _rep("include", 8, "NetStateRule"),
        _rep("exclude", 9, "NetStateRule"),
        _opt("batch_norm_param", 139, "BatchNormParameter"),
        _opt("bias_param", 141, "BiasParameter"),
        _opt("concat_param", 104, "ConcatParameter"),
        _opt("convolution_param", 106, "ConvolutionParameter"),
        _opt("dropout_param", 108, "DropoutParameter"),
        _opt("eltwise_param", 110, "EltwiseParameter"),
        _opt("flatten_param", 135, "FlattenParameter"),
        _opt("inner_product_param", 117, "InnerProductParameter"),
        _opt("input_param", 143, "InputParameter"),
        _opt("lrn_param", 118, "LRNParameter"),
        _opt("pooling_param", 121, "PoolingParameter"),
        _opt("power_param", 122, "PowerParameter"),
        _opt("prelu_param", 131, "PReLUParameter"),
        _opt("relu_param", 123, "ReLUParameter"),
        _opt("reshape_param", 133, "ReshapeParameter"),
        _opt("scale_param", 142, "ScaleParameter"),
        _opt("sigmoid_param", 124, "SigmoidParameter"),
        _opt("softmax_param", 125, "SoftmaxParameter"),
        _opt("slice_param", 126, "SliceParameter"),
        _opt("tanh_param", 127, "TanHParameter"),
    ], {}),
    "V1LayerParameter": ([
        _rep("bottom", 2, "string"),
        _rep("top", 3, "string"),
        _opt("name", 4, "string"),
        _rep("include", 32, "NetStateRule"),
        _rep("exclude", 33, "NetStateRule"),
        _opt("type", 5, "V1LayerParameter.LayerType"),
        _rep("blobs", 6, "BlobProto"),
        _rep("param", 1001, "string"),
        _rep("blob_share_mode", 1002, "V1LayerParameter.DimCheckMode"),
        _rep("blobs_lr", 7, "float"),
        _rep("weight_decay", 8, "float"),
        _rep("loss_weight", 35, "float"),
        _opt("concat_param", 9, "ConcatParameter"),
        _opt("convolution_param", 10, "ConvolutionParameter"),
        _opt("dropout_param", 12, "DropoutParameter"),
        _opt("eltwise_param", 24, "EltwiseParameter"),
        _opt("inner_product_param", 17, "InnerProductParameter"),
        _opt("lrn_param", 18, "LRNParameter"),
        _opt("pooling_param", 19, "PoolingParameter"),
        _opt("power_param", 21, "PowerParameter"),
        _opt("relu_param", 30, "ReLUParameter"),
        _opt("sigmoid_param", 38, "SigmoidParameter"),
        _opt("softmax_param", 39, "SoftmaxParameter"),
        _opt("slice_param", 31, "SliceParameter"),
        _opt("tanh_param", 37, "TanHParameter"),
    ], {
        "LayerType": {
            "NONE": 0, "ABSVAL": 35, "ACCURACY": 1, "ARGMAX": 30, "BNLL": 2, "CONCAT": 3,
            "CONTRASTIVE_LOSS": 37, "CONVOLUTION": 4, "DATA": 5, "DECONVOLUTION": 39,
            "DROPOUT": 6, "DUMMY_DATA": 32, "EUCLIDEAN_LOSS": 7, "ELTWISE": 25, "EXP": 38,
            "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "HINGE_LOSS": 28,
            "IM2COL": 11, "IMAGE_DATA": 12, "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14,
            "LRN": 15, "MEMORY_DATA": 29, "MULTINOMIAL_LOGISTIC_LOSS": 16, "MVN": 34,
            "POOLING": 17, "POWER": 26, "RELU": 18, "SIGMOID": 19,
            "SIGMOID_CROSS_ENTROPY_LOSS": 27, "SILENCE": 36, "SOFTMAX": 20,
            "SOFTMAX_LOSS": 21, "SPLIT": 22, "SLICE": 33, "TANH": 23, "WINDOW_DATA": 24,
            "THRESHOLD": 31,
        },
        "DimCheckMode": {"STRICT": 0, "PERMISSIVE": 1},
    }),
    "BatchNormParameter": ([
        _opt("use_global_stats", 1, "bool"),
        _opt("moving_average_fraction", 2, "float", "0.999"),
        _opt("eps", 3, "float", "1e-05"),
    ], {}),
    "BiasParameter": ([
        _opt("axis", 1, "int32", "1"),
        _opt("num_axes", 2, "int32", "1"),
        _opt("filler", 3, "FillerParameter"),
    ], {}),
    "ConcatParameter": ([
        _opt("axis", 2, "int32", "1"),
        _opt("concat_dim", 1, "uint32", "1"),
    ], {}),
    "ConvolutionParameter": ([
        _opt("num_output", 1, "uint32"),
        _opt("bias_term", 2, "bool", "true"),
        _rep("pad", 3, "uint32"),
        _rep("kernel_size", 4, "uint32"),
        _rep("stride", 6, "uint32"),
        _rep("dilation", 18, "uint32"),
        _opt("pad_h", 9, "uint32", "0"),
        _opt("pad_w", 10, "uint32", "0"),
        _opt("kernel_h", 11, "uint32"),
        _opt("kernel_w", 12, "uint32"),
        _opt("stride_h", 13, "uint32"),
        _opt("stride_w", 14, "uint32"),
        _opt("group", 5, "uint32", "1"),
        _opt("weight_filler", 7, "FillerParameter"),
        _opt("bias_filler", 8, "FillerParameter"),
        _opt("engine", 15, "ConvolutionParameter.Engine", "DEFAULT"),
        _opt("axis", 16, "int32", "1"),
        _opt("force_nd_im2col", 17, "bool", "false"),
    ], {"Engine": _ENGINE}),
    "DropoutParameter": ([_opt("dropout_ratio", 1, "float", "0.5")], {}),
    "EltwiseParameter": ([
        _opt("operation", 1, "EltwiseParameter.EltwiseOp", "SUM"),
        _rep("coeff", 2, "float"),
        _opt("stable_prod_grad", 3, "bool", "true"),
    ], {"EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2}}),
    "FlattenParameter": ([
        _opt("axis", 1, "int32", "1"),
        _opt("end_axis", 2, "int32", "-1"),
    ], {}),
    "InnerProductParameter": ([
        _opt("num_output", 1, "uint32"),
        _opt("bias_term", 2, "bool", "true"),
        _opt("weight_filler", 3, "FillerParameter"),
        _opt("bias_filler", 4, "FillerParameter"),
        _opt("axis", 5, "int32", "1"),
        _opt("transpose", 6, "bool", "false"),
    ], {}),
    "InputParameter": ([_rep("shape", 1, "BlobShape")], {}),
    "LRNParameter": ([
        _opt("local_size", 1, "uint32", "5"),
        _opt("alpha", 2, "float", "1"),
        _opt("beta", 3, "float", "0.75"),
        _opt("norm_region", 4, "LRNParameter.NormRegion", "ACROSS_CHANNELS"),
        _opt("k", 5, "float", "1"),
        _opt("engine", 6, "LRNParameter.Engine", "DEFAULT"),
    ], {"NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1}, "Engine": _ENGINE}),
    "PoolingParameter": ([
        _opt("pool", 1, "PoolingParameter.PoolMethod", "MAX"),
        _opt("pad", 4, "uint32", "0"),
        _opt("pad_h", 9, "uint32", "0"),
        _opt("pad_w", 10, "uint32", "0"),
        _opt("kernel_size", 2, "uint32"),
        _opt("kernel_h", 5, "uint32"),
        _opt("kernel_w", 6, "uint32"),
        _opt("stride", 3, "uint32", "1"),
        _opt("stride_h", 7, "uint32"),
        _opt("stride_w", 8, "uint32"),
        _opt("engine", 11, "PoolingParameter.Engine", "DEFAULT"),
        _opt("global_pooling", 12, "bool", "false"),
        _opt("round_mode", 13, "PoolingParameter.RoundMode", "CEIL"),
        # OpenCV's own prototxt dialect spells the rounding ``ceil_mode: false`` (a bool
        # that OpenCV numbers 13 too). Declared under a number no Caffe release uses, so
        # that text written for OpenCV imports with its meaning; never written by Caffe.
        _opt("ceil_mode", 1013, "bool", "true"),
    ], {"PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2}, "Engine": _ENGINE,
        "RoundMode": {"CEIL": 0, "FLOOR": 1}}),
    "PowerParameter": ([
        _opt("power", 1, "float", "1"),
        _opt("scale", 2, "float", "1"),
        _opt("shift", 3, "float", "0"),
    ], {}),
    "PReLUParameter": ([
        _opt("filler", 1, "FillerParameter"),
        _opt("channel_shared", 2, "bool", "false"),
    ], {}),
    "ReLUParameter": ([
        _opt("negative_slope", 1, "float", "0"),
        _opt("engine", 2, "ReLUParameter.Engine", "DEFAULT"),
    ], {"Engine": _ENGINE}),
    "ReshapeParameter": ([
        _opt("shape", 1, "BlobShape"),
        _opt("axis", 2, "int32", "0"),
        _opt("num_axes", 3, "int32", "-1"),
    ], {}),
    "ScaleParameter": ([
        _opt("axis", 1, "int32", "1"),
        _opt("num_axes", 2, "int32", "1"),
        _opt("filler", 3, "FillerParameter"),
        _opt("bias_term", 4, "bool", "false"),
        _opt("bias_filler", 5, "FillerParameter"),
    ], {}),
    "SigmoidParameter": ([_opt("engine", 1, "SigmoidParameter.Engine", "DEFAULT")],
                         {"Engine": _ENGINE}),
    "SoftmaxParameter": ([
        _opt("engine", 1, "SoftmaxParameter.Engine", "DEFAULT"),
        _opt("axis", 2, "int32", "1"),
    ], {"Engine": _ENGINE}),
    "SliceParameter": ([
        _opt("axis", 3, "int32", "1"),
        _rep("slice_point", 2, "uint32"),
        _opt("slice_dim", 1, "uint32", "1"),
    ], {}),
    "TanHParameter": ([_opt("engine", 1, "TanHParameter.Engine", "DEFAULT")],
                      {"Engine": _ENGINE}),
}
_TOP_ENUMS = {"Phase": {"TRAIN": 0, "TEST": 1}}

# V1 layer type enum -> the type string of the current format (Caffe's upgrade table).
V1_TYPE_NAMES: Dict[str, str] = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution", "DATA": "Data", "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData", "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten", "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}


def _enum_names(messages) -> Dict[str, str]:
    """Map every enum's short name ("Phase", "LRNParameter.NormRegion") to its full name."""
    names = {name: f".caffe.{name}" for name in _TOP_ENUMS}
    for msg, (_, enums) in messages.items():
        for enum_name in enums:
            names[f"{msg}.{enum_name}"] = f".caffe.{msg}.{enum_name}"
    return names


def _file_descriptor(file_name: str, messages) -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name=file_name, package="caffe",
                                             syntax="proto2")
    for enum_name, values in _TOP_ENUMS.items():
        enum_proto = fdp.enum_type.add(name=enum_name)
        for value_name, number in values.items():
            enum_proto.value.add(name=value_name, number=number)
    enum_names = _enum_names(messages)
    for msg_name, (fields, enums) in messages.items():
        msg = fdp.message_type.add(name=msg_name)
        for enum_name, values in enums.items():
            enum_proto = msg.enum_type.add(name=enum_name)
            for value_name, number in values.items():
                enum_proto.value.add(name=value_name, number=number)
        for name, number, type_, label, default, packed in fields:
            field = msg.field.add(name=name, number=number, label=_LABELS[label])
            if type_ in _SCALARS:
                field.type = _SCALARS[type_]
            elif type_ in enum_names:
                field.type = _FDP.TYPE_ENUM
                field.type_name = enum_names[type_]
            elif type_ in messages:
                field.type = _FDP.TYPE_MESSAGE
                field.type_name = f".caffe.{type_}"
            else:  # a typo in the table above
                raise ValueError(f"schema: unknown type {type_!r} of {msg_name}.{name}")
            if default is not None:
                field.default_value = default
            if packed:
                field.options.packed = True
    return fdp


def _build(file_name: str, messages) -> Dict[str, type]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor(file_name, messages))
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
            for name in messages}


_CLASSES = _build("lrnconv/caffe/caffe_subset.proto", _MESSAGES)
_RAW = _build("lrnconv/caffe/caffe_raw_blob.proto", {
    "BlobShape": _MESSAGES["BlobShape"],
    "BlobProto": ([
        _opt("shape", 7, "BlobShape"),
        _opt("data", 5, "bytes"),
        _opt("double_data", 8, "bytes"),
        _opt("num", 1, "int32", "0"),
        _opt("channels", 2, "int32", "0"),
        _opt("height", 3, "int32", "0"),
        _opt("width", 4, "int32", "0"),
    ], {}),
})

NetParameter = _CLASSES["NetParameter"]
LayerParameter = _CLASSES["LayerParameter"]
V1LayerParameter = _CLASSES["V1LayerParameter"]
BlobProto = _CLASSES["BlobProto"]
BlobShape = _CLASSES["BlobShape"]
RawBlobProto = _RAW["BlobProto"]

# The enums the converters compare against, with the numbers declared above.
Phase = enum.IntEnum("Phase", _TOP_ENUMS["Phase"])
NormRegion = enum.IntEnum("NormRegion", _MESSAGES["LRNParameter"][1]["NormRegion"])
PoolMethod = enum.IntEnum("PoolMethod", _MESSAGES["PoolingParameter"][1]["PoolMethod"])
RoundMode = enum.IntEnum("RoundMode", _MESSAGES["PoolingParameter"][1]["RoundMode"])
EltwiseOp = enum.IntEnum("EltwiseOp", _MESSAGES["EltwiseParameter"][1]["EltwiseOp"])


def message_class(name: str) -> type:
    """The message class of a declared Caffe message, e.g. ``message_class("LRNParameter")``."""
    try:
        return _CLASSES[name]
    except KeyError:
        raise KeyError(f"caffe message {name!r} is not declared in lrnconv.formats.caffe.schema; "
                       f"declared: {', '.join(sorted(_CLASSES))}") from None
