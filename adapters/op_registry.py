"""The operations each model front-end maps, registered once: op name -> semantic handler, with its README group.

Both walkers (:mod:`emergence.adapters.torch_ops` for ``torch.export`` programs, :mod:`emergence.adapters.onnx_ops`
for ONNX graphs) dispatch through these tables: an op name maps to the *semantic* handler that turns it into
nodes and edges (``dense``, ``conv``, ``elementwise``, ``reduce``, ...), the walker's method ``_<handler>``.
The supported-op lists (:data:`~emergence.adapters.SUPPORTED_TORCH_OPS`, :data:`~emergence.adapters.SUPPORTED_ONNX_OPS`)
and the README's "Ops covered" (:func:`emergence.adapters.ops.ops_markdown`) are derived from them, so adding
an op is one line here. ``handler=None`` marks ops a walker treats before dispatch (token-id lookups,
constants); ``"ignore"`` ops compute nothing the graph needs (checks that ``torch.export`` inserts).

Examples
--------
>>> dispatch(TORCH)["relu"], dispatch(ONNX)["Relu"]
('elementwise', 'elementwise')
>>> "conv_transpose2d" in ops_of(TORCH, "conv")
True
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IR_OWN", "ONNX", "ONNX_ACTIVATIONS", "TORCH", "TORCH_ACTIVATIONS", "Group", "dispatch", "ops_of",
           "supported"]


@dataclass(frozen=True)
class Group:
    """Ops that one semantic handler maps, and what the README says they do."""

    handler: str | None
    readme: str
    ops: frozenset[str]


def _g(handler: str | None, readme: str, *ops: str) -> Group:
    return Group(handler, readme, frozenset(ops))

#: ATen operations (names in the ``torch.export`` IR), in the README's order.
TORCH: tuple[Group, ...] = (
    _g("dense", "dense layers (constant weight), or a product of two activations (attention)",
       "addmm", "baddbmm", "bmm", "linear", "matmul", "mm"),
    _g("conv", "convolutions, and transposed ones",
       "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution"),
    _g("batch_norm", "batch norm (eval; folded into the layer before it)",
       "_native_batch_norm_legit_no_training", "batch_norm"),
    _g("elementwise", "elementwise (activations, norms, dropout, casts): the activity is read at the end of the chain",
       "_prelu_kernel", "_to_copy", "abs", "alias", "alpha_dropout", "celu", "clamp", "clamp_max", "clamp_min",
       "clone", "contiguous", "detach", "dropout", "dropout_", "elu", "elu_", "erf", "exp", "feature_dropout", "gelu",
       "gelu_", "group_norm", "hardsigmoid", "hardswish", "hardswish_", "hardtanh", "hardtanh_", "layer_norm",
       "leaky_relu", "leaky_relu_", "lift_fresh_copy", "local_response_norm", "log", "mish", "native_dropout",
       "native_layer_norm", "neg", "pow", "prelu", "reciprocal", "relu", "relu6", "relu_", "rms_norm", "rsqrt",
       "selu", "sigmoid", "sigmoid_", "silu", "silu_", "softplus", "sqrt", "square", "tanh", "tanh_", "to", "type_as"),
    _g("softmax", "softmax over any axis (the union rule along it)",
       "_log_softmax", "_softmax", "log_softmax", "softmax"),
    _g("attention", "attention (the union rule: scores, softmax, values)",
       "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_efficient_attention",
       "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
       "scaled_dot_product_attention"),
    _g("reduce", "reductions over any axes (the union rule)",
       "amax", "amin", "mean", "std", "sum", "var"),
    _g("pool", "pooling",
       "_adaptive_avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
       "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
       "max_pool1d", "max_pool2d", "max_pool2d_with_indices", "max_pool3d"),
    _g("shape", "shape and layout",
       "_unsafe_view", "channel_shuffle", "chunk", "expand", "flatten", "flip", "index", "index_select", "movedim",
       "narrow", "permute", "pixel_shuffle", "pixel_unshuffle", "repeat", "reshape", "roll", "select", "slice",
       "split", "split_with_sizes", "squeeze", "t", "transpose", "unbind", "unflatten", "unsqueeze", "view"),
    _g("pad", "padding",
       "constant_pad_nd", "pad"),
    _g("add", "residual add / subtract (a constant is a bias; a sum a nonlinearity reads: the residual rule)",
       "add", "add_", "rsub", "sub", "sub_"),
    _g("mul", "multiply / divide (by constants: scales; of two activations: a gate; a scalar by data: elementwise)",
       "div", "div_", "mul", "mul_"),
    _g("select", "masking (selects, adds no dependency)",
       "masked_fill", "masked_fill_", "where"),
    _g("resize", "resizing (interpolate, upsample; bicubic and anti-aliased ones at channel level only)",
       "_upsample_bicubic2d_aa", "_upsample_bilinear2d_aa", "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
       "_upsample_nearest_exact3d", "upsample_bicubic2d", "upsample_bilinear2d", "upsample_linear1d",
       "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "upsample_trilinear3d"),
    _g("concat", "concatenation",
       "cat", "concat"),
    _g("recurrence", "recurrent layers (LSTM, GRU, RNN; one layer, batch first) unrolled over time steps: a "
                     "layer per step (channel level only)",
       "gru", "lstm", "rnn_relu", "rnn_tanh"),
    _g("getitem", "an item of a multi-output op",
       "getitem"),
    _g("einsum", "einsum of activations (the union rule over contracted axes)",
       "einsum"),
    _g(None, "embedding lookups of token ids (before dispatch: the table's features become nodes)",
       "embedding"),
    _g("ignore", "checks that compute nothing (ignored)",
       "_assert", "_assert_async", "_assert_scalar", "_assert_tensor_metadata", "_check_is_size",
       "_functional_assert_async", "_functional_assert_scalar", "_print", "record_stream", "sym_constrain_range",
       "sym_constrain_range_for_size"),
)

#: Handlers a front-end keeps for itself: layout ops apply the IR's own op to the provenance (``shape``,
#: ``pad``, ``getitem``, a ``gather`` that is not an embedding), and ``data_mask`` / ``ignore`` make no value.
#: Every other handler is a method of the IR-neutral walker (:class:`emergence.adapters._front.Front`).
IR_OWN = frozenset({"shape", "pad", "getitem", "gather", "data_mask", "ignore"})

#: ATen nonlinearities: a residual sum that one of them reads is a layer's units (the residual rule).
TORCH_ACTIVATIONS = frozenset({
    "relu", "relu_", "prelu", "_prelu_kernel", "gelu", "gelu_", "silu", "silu_", "sigmoid", "sigmoid_", "tanh",
    "tanh_", "hardtanh", "hardtanh_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
    "hardswish", "hardswish_", "hardsigmoid", "softplus", "mish",
})

#: ONNX op types, in the README's order.
ONNX: tuple[Group, ...] = (
    _g("dense", "dense layers (constant weight), or MatMul of two activations (attention)",
       "Gemm", "MatMul"),
    _g("conv", "convolutions, and transposed ones",
       "Conv", "ConvTranspose"),
    _g("batch_norm", "batch norm (eval; folded into the layer before it)",
       "BatchNormalization"),
    _g("elementwise", "elementwise: the activity is read at the end of the chain",
       "Abs", "Cast", "Ceil", "Celu", "Clip", "Cos", "Dropout", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid",
       "HardSwish", "Identity", "InstanceNormalization", "LRN", "LayerNormalization", "LeakyRelu", "Log", "Mish",
       "Neg", "PRelu", "Pow", "RMSNormalization", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid",
       "SimplifiedLayerNormalization", "Sin", "Softplus", "Softsign", "Sqrt", "Swish", "Tanh", "ThresholdedRelu"),
    _g("softmax", "softmax over any axis (the union rule along it)",
       "LogSoftmax", "Softmax"),
    _g("reduce", "reductions over any axes (the union rule)",
       "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare"),
    _g("pool", "pooling",
       "AveragePool", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "LpPool", "MaxPool"),
    _g("shape", "shape and layout",
       "DepthToSpace", "Expand", "Flatten", "Reshape", "Slice", "SpaceToDepth", "Split", "Squeeze", "Tile",
       "Transpose", "Unsqueeze"),
    _g("gather", "Gather: of token ids from a constant table an embedding, else indexing",
       "Gather"),
    _g("pad", "padding",
       "Pad"),
    _g("add", "residual add / subtract (a constant is a bias; a sum a nonlinearity reads: the residual rule)",
       "Add", "Sub", "Sum"),
    _g("mul", "multiply / divide (by constants: scales; of two activations: a gate; a scalar divided by data: "
              "elementwise)",
       "Div", "Mul"),
    _g("data_mask", "tests of data (NaN checks, comparisons, logic): masks that select and add no dependency",
       "And", "Equal", "Greater", "GreaterOrEqual", "IsInf", "IsNaN", "Less", "LessOrEqual", "Not", "Or", "Xor"),
    _g("select", "Where: selects, adds no dependency",
       "Where"),
    _g("resize", "resizing (cubic at channel level only)",
       "Resize", "Upsample"),
    _g("concat", "concatenation",
       "Concat"),
    _g("recurrence", "recurrent layers (LSTM, GRU, RNN; one layer) unrolled over time steps: a layer per step "
                     "(channel level only)",
       "GRU", "LSTM", "RNN"),
    _g("einsum", "einsum of activations",
       "Einsum"),
    _g(None, "shapes and constants (folded before the walk)",
       "Constant", "Shape"),
)

#: ONNX nonlinearities (as :data:`TORCH_ACTIVATIONS`).
ONNX_ACTIVATIONS = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu", "Gelu",
    "Softplus", "Mish", "Swish", "ThresholdedRelu", "Clip",
})


def dispatch(groups: tuple[Group, ...]) -> dict[str, str | None]:
    """Op name -> handler name (``None``: treated before dispatch).

    Raises
    ------
    ValueError
        If an op is registered twice (a registration error in this module).
    """
    table: dict[str, str | None] = {}
    for group in groups:
        for op in group.ops:
            if op in table:
                raise ValueError(f"op {op!r} is registered twice")
            table[op] = group.handler
    return table


def ops_of(groups: tuple[Group, ...], handler: str) -> frozenset[str]:
    """Every op the handler ``handler`` maps."""
    return frozenset().union(*(g.ops for g in groups if g.handler == handler))


def supported(groups: tuple[Group, ...]) -> list[str]:
    """Every op a front-end maps, sorted."""
    return sorted(dispatch(groups))
