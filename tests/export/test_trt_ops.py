"""The static TensorRT op check against onnx-tensorrt's operator table, on hand-built graphs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from sranet.errors import ArtifactError
from sranet.export.trt_ops import check_tensorrt_ops, load_table


def _model(nodes, inits=(), *, opset=18, inputs=None, outputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _w(name, shape):
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def test_table_names_source_and_version():
    table = load_table()
    assert table["tensorrt_version"].startswith("10.") and "onnx-tensorrt" in table["source"]
    ops = table["operators"]
    assert len(ops) > 150
    assert ops["Conv"]["supported"] and not ops["QLinearConv"]["supported"] and not ops["Unique"]["supported"]
    assert "dilations" in ops["MaxPool"]["restrictions"]


def test_sranet_like_graph_passes():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3, 3]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2, 2], strides=[2, 2, 2], ceil_mode=0),
             helper.make_node("ReduceMin", ["p", "axes"], ["y"], keepdims=1)]
    report = check_tensorrt_ops(_model(nodes, [_w("w", [4, 1, 3, 3, 3]),
                                               numpy_helper.from_array(np.array([1], np.int64), "axes")]))
    assert report.ok, report.summary()
    assert report.op_counts == {"Conv": 1, "Relu": 1, "MaxPool": 1, "ReduceMin": 1}
    assert "all ops and attributes supported" in report.summary()


def test_unsupported_op_is_reported():
    nodes = [helper.make_node("Unique", ["x"], ["y"])]
    report = check_tensorrt_ops(_model(nodes))
    assert not report.ok
    assert report.issues[0].op_type == "Unique" and "unsupported" in report.issues[0].problem
    assert "UNSUPPORTED Unique" in report.summary()


@pytest.mark.parametrize(("node", "inits", "needle"), [
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2, 2], dilations=[2, 2, 2]), [], "dilations"),
    (helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2, 2]), [], "Indices"),
    (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2]), [], "1D pooling"),
    (helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic"),
     [numpy_helper.from_array(np.ones(5, np.float32), "scales")], "mode='cubic'"),
    (helper.make_node("ReduceSum", ["x", "x_axes"], ["y"]), [], "must be a constant"),
    (helper.make_node("Foo", ["x"], ["y"], domain="com.example"), [], "plugin"),
])
def test_attribute_restrictions(node, inits, needle):
    extra_inputs = []
    if "x_axes" in node.input:
        extra_inputs = [helper.make_tensor_value_info("x_axes", TensorProto.INT64, [1])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8, 8]), *extra_inputs]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output]
    model = _model([node], inits, inputs=inputs, outputs=outputs)
    report = check_tensorrt_ops(model)
    assert not report.ok and any(needle in str(i) for i in report.issues), report.summary()


def test_nonzero_zero_point_and_int32_bias_dequantize_are_reported():
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"]),
             helper.make_node("DequantizeLinear", ["b", "s"], ["y2"])]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(3, np.int8), "zp"),
             numpy_helper.from_array(np.ones(4, np.int32), "b")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("y2", TensorProto.FLOAT, None)]
    report = check_tensorrt_ops(_model(nodes, inits, outputs=outputs))
    text = report.summary()
    assert "zero point is not 0" in text and "INT32" in text


def test_opset_outside_parser_range():
    report = check_tensorrt_ops(_model([helper.make_node("Relu", ["x"], ["y"])], opset=8))
    assert not report.ok and report.issues[0].op_type == "opset"


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        check_tensorrt_ops(tmp_path / "nope.onnx")
