"""Edit a model with onnx-graphsurgeon and hand back everything no rewrite touched.

``EditableGraphs`` is what a pass edits: the main graph and every subgraph as
onnx-graphsurgeon graphs, addressed by the discovery path of ``LrnSite.graph_path``.
``EditableGraphs.of(graph)`` opens a bare onnx-graphsurgeon graph (the passes then edit it
directly); ``EditableModel`` opens a ``ModelProto`` and commits the edit back into it.

A plain onnx-graphsurgeon round trip (0.6.1) drops the model's doc_string,
metadata_props, model_version and domain and every node's doc_string, re-exports every
initializer (a full copy of the weights), and for IR-3 models removes initializers from
the graph inputs so that ``onnx.checker`` rejects the result. So we never export the
whole graph: ``EditableModel.commit`` splices the edited graph back into the original
``ModelProto`` in place:

* nodes that a pass left alone (same op, inputs and outputs) keep their original
  ``NodeProto`` byte for byte; subgraph attributes are restored the same way, recursively;
* original initializers stay where they are (no copy of the weights); an initializer is
  removed only when it was referenced before the edit and no longer is; new constants
  created by passes are appended (and listed as graph inputs in IR < 4 models);
* graph inputs, outputs and value_info keep their original entries; value_info entries
  of tensors that no longer exist are dropped.

Passes must therefore replace nodes rather than edit the attributes of existing ones.
"""
from __future__ import annotations

import contextlib
from typing import Dict, FrozenSet, Iterator, List, Set, Tuple

import onnx
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.logger import G_LOGGER
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter
from onnx_graphsurgeon.ir.tensor import LazyValues

from ..base.errors import UnsupportedModel

GraphPath = Tuple[Tuple[str, str], ...]
"""Where a (sub)graph lives: ((first output of the owning node, attribute name), ...)."""


@contextlib.contextmanager
def quiet_graphsurgeon() -> Iterator[None]:
    """onnx-graphsurgeon logs warnings to stdout; library code must not print."""
    old = G_LOGGER.severity
    G_LOGGER.severity = G_LOGGER.ERROR
    try:
        yield
    finally:
        G_LOGGER.severity = old


def subgraph_attributes(node: onnx.NodeProto):
    """(attribute name, GraphProto) for every graph-valued attribute of a node."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for i, g in enumerate(attr.graphs):
                yield f"{attr.name}[{i}]", g


def node_key(node) -> str:
    """A stable key for a node inside its graph: its first output name (SSA makes it unique)."""
    outputs = node.output if isinstance(node, onnx.NodeProto) else [t.name for t in node.outputs]
    return outputs[0] if outputs else node.name


def _used_names(graph: onnx.GraphProto, produced: bool, into: Set[str]) -> Set[str]:
    """Tensor names the nodes read (and, if ``produced``, write), recursively, plus outputs."""
    for node in graph.node:
        into.update(node.input)
        if produced:
            into.update(node.output)
        for _, sub in subgraph_attributes(node):
            _used_names(sub, produced, into)
    into.update(o.name for o in graph.output)
    return into


def _gs_used_names(graph: gs.Graph, produced: bool, into: Set[str]) -> Set[str]:
    for node in graph.nodes:
        into.update(t.name for t in node.inputs)
        if produced:
            into.update(t.name for t in node.outputs)
        for value in node.attrs.values():
            if isinstance(value, gs.Graph):
                _gs_used_names(value, produced, into)
    into.update(t.name for t in graph.outputs)
    return into


class EditableGraphs:
    """The graphs a pass may edit, by discovery path, and what passes need to know of the model.

    Args:
        graph: the main graph.
        opset: the default-domain opset the model imports (emitted ops must be valid for it).
        overridable: main-graph initializers that are also graph inputs in an IR >= 4 model:
            defaults a caller may override, so not constants a pass may fold.
    """

    def __init__(self, graph: gs.Graph, opset: int, overridable: FrozenSet[str] = frozenset()):
        self.graph = graph
        self.opset = opset
        self.overridable = overridable
        self._graphs: Dict[GraphPath, gs.Graph] = {}

    @classmethod
    def of(cls, graph: gs.Graph) -> "EditableGraphs":
        """A bare onnx-graphsurgeon graph (its own ``opset``; it keeps no initializer inputs)."""
        graphs = cls(graph, graph.opset)
        graphs._map_gs((), graph)
        return graphs

    def _map_gs(self, path: GraphPath, graph: gs.Graph) -> None:
        self._graphs[path] = graph
        for node in graph.nodes:
            for attr_name, value in node.attrs.items():
                if isinstance(value, gs.Graph):
                    self._map_gs(path + ((node_key(node), attr_name),), value)

    def graph_at(self, path: GraphPath) -> gs.Graph:
        """The (sub)graph at a discovery path."""
        return self._graphs[path]

    def all_names(self) -> Set[str]:
        """Every node and tensor name in the model, so new names never collide."""
        names: Set[str] = set()
        for graph in self._graphs.values():
            names.update(graph.tensors().keys())
            names.update(n.name for n in graph.nodes)
        return names


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


class EditableModel(EditableGraphs):
    """A ModelProto opened as onnx-graphsurgeon graphs, committed back losslessly.

    Args:
        model: the model to edit. ``commit`` mutates it in place and returns it; pass a
            copy if the caller still needs the original.
    """

    def __init__(self, model: onnx.ModelProto):
        overridable: FrozenSet[str] = frozenset()
        if model.ir_version >= 4:
            overridable = frozenset({i.name for i in model.graph.input}
                                    & {t.name for t in model.graph.initializer})
        with quiet_graphsurgeon():
            try:
                graph = gs.import_onnx(model)
            except Exception as exc:  # graphsurgeon raises bare exceptions on odd models
                raise UnsupportedModel(f"cannot open the graph for editing: {exc}") from None
        super().__init__(graph, _default_opset(model), overridable)
        self.model = model
        self._origin: Dict[int, Tuple[gs.Node, int]] = {}
        self._referenced_before = _used_names(model.graph, False, set())
        self._existing_before = _used_names(model.graph, True, set())
        self._map_graph((), model.graph, self.graph)

    def _map_graph(self, path: GraphPath, proto: onnx.GraphProto, graph: gs.Graph) -> None:
        self._graphs[path] = graph
        for index, (proto_node, node) in enumerate(zip(proto.node, graph.nodes)):
            self._origin[id(node)] = (node, index)
            for attr_name, sub in subgraph_attributes(proto_node):
                sub_graph = node.attrs.get(attr_name)
                if isinstance(sub_graph, gs.Graph):
                    self._map_graph(path + ((node_key(proto_node), attr_name),), sub, sub_graph)

    def commit(self) -> onnx.ModelProto:
        """Splice the edited graphs back into the original model and return it."""
        removed = self._referenced_before - _gs_used_names(self.graph, False, set())
        vanished = self._existing_before - _gs_used_names(self.graph, True, set())
        legacy_inputs = self.model.ir_version < 4
        outer: Set[str] = set()
        with quiet_graphsurgeon():
            self._restore_graph((), self.model.graph, self.graph, removed | vanished, legacy_inputs, outer)
        return self.model

    def _restore_graph(self, path: GraphPath, proto: onnx.GraphProto, graph: gs.Graph,
                       removed: Set[str], legacy_inputs: bool, outer: Set[str]) -> None:
        scope = outer | {t.name for t in proto.initializer}
        new_nodes: List[onnx.NodeProto] = []
        for node in graph.nodes:
            new_nodes.append(self._restore_node(path, proto, node, removed, scope))
        del proto.node[:]
        proto.node.extend(new_nodes)

        dropped = set()
        for i in reversed(range(len(proto.initializer))):
            if proto.initializer[i].name in removed:
                dropped.add(proto.initializer[i].name)
                del proto.initializer[i]
        for i in reversed(range(len(proto.input))):
            if proto.input[i].name in dropped:  # IR < 4 lists initializers as inputs too
                del proto.input[i]
        existing = {t.name for t in proto.initializer} | outer
        for tensor in graph.tensors().values():
            if (isinstance(tensor, gs.Constant) and not isinstance(tensor._values, LazyValues)
                    and tensor.name not in existing):
                proto.initializer.append(OnnxExporter.export_tensor_proto(tensor))
                existing.add(tensor.name)
                if legacy_inputs and path == ():
                    proto.input.append(onnx.helper.make_tensor_value_info(
                        tensor.name, onnx.helper.np_dtype_to_tensor_dtype(tensor.values.dtype),
                        list(tensor.shape)))
        for i in reversed(range(len(proto.value_info))):
            if proto.value_info[i].name in removed:
                del proto.value_info[i]

    def _restore_node(self, path: GraphPath, proto: onnx.GraphProto, node: gs.Node,
                      removed: Set[str], scope: Set[str]) -> onnx.NodeProto:
        origin = self._origin.get(id(node))
        if origin is not None and origin[0] is node:
            original = proto.node[origin[1]]
            unchanged = (original.op_type == node.op and original.domain == (node.domain or "")
                         and list(original.input) == [t.name for t in node.inputs]
                         and list(original.output) == [t.name for t in node.outputs])
            if unchanged:
                restored = onnx.NodeProto()
                restored.CopyFrom(original)
                for attr in restored.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        sub_path = path + ((node_key(original), attr.name),)
                        self._restore_graph(sub_path, attr.g, self._graphs[sub_path],
                                            removed, False, scope)
                return restored
        exported = OnnxExporter.export_node(node)
        if origin is not None and origin[0] is node:
            exported.doc_string = proto.node[origin[1]].doc_string
        return exported
