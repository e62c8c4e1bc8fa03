"""Float64 copies of (Q)ONNX models, for threshold derivation and references."""

from __future__ import annotations

import copy

import numpy as np


def as_float64(model):
    """A ModelWrapper copy of ``model`` whose float tensors and initializers are DOUBLE."""
    from onnx import TensorProto, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    m = copy.deepcopy(model.model)
    g = m.graph
    for i, init in enumerate(g.initializer):
        if init.data_type == TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float64)
            g.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    return ModelWrapper(m)
