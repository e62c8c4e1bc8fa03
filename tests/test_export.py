"""The exported QONNX computes what the Brevitas model computes (eval mode)."""

import json

import numpy as np
import pytest
import torch
import yaml
from qonnx.core.modelwrapper import ModelWrapper

from compiler.qat import data
from compiler.qat.export import execute_qonnx
from compiler.qat.recipe import RECIPE_DIR, Recipe
from compiler.qat.train import CHECKPOINT, build_model, predict, train

BASE = yaml.safe_load((RECIPE_DIR / "digits_mlp.yaml").read_text())

# every test reads the module fixture `trained` (seven trainings): one worker builds it once
pytestmark = pytest.mark.xdist_group("export_trained")

VARIANTS = {
    "mixed_4_3_2": {},
    "binary_mixed": {
        "input": {"bits": 8},
        "quant": {
            "weights": {"policy": "explicit", "bits": [1, 2, 1]},
            "activations": {"policy": "explicit", "bits": [1, 2]},
        },
    },
    "no_batchnorm": {
        "arch": {"hidden": [32, 32], "batchnorm": False},
        "quant": {
            "weights": {"policy": "explicit", "bits": [8, 4, 2]},
            "activations": {"policy": "uniform", "bits": 4},
        },
    },
    "bn_fold": {
        "arch": {"hidden": [32, 32], "batchnorm": "fold"},
        "quant": {
            "weights": {"policy": "explicit", "bits": [4, 1, 2]},
            "activations": {"policy": "explicit", "bits": [3, 2]},
        },
    },
    "quantnet": {
        "quant": {
            "weights": {"policy": "explicit", "bits": [1, 2, 1]},
            "activations": {"policy": "explicit", "bits": [2, 2]},
            "weight_quantizer": "quantnet",
        },
    },
    "signed_acts": {
        "quant": {
            "weights": {"policy": "explicit", "bits": [2, 4, 3]},
            "activations": {"policy": "explicit", "bits": [3, 2]},
            "act_signed": True,
        }
    },
    "float_scale": {
        "quant": {
            "weights": {"policy": "uniform", "bits": 3},
            "activations": {"policy": "uniform", "bits": 4},
            "scaling": "float",
        }
    },
}


def recipe(name: str) -> Recipe:
    d = {**BASE, "name": name, "train": {**BASE["train"], "epochs": 3}}
    for k, v in VARIANTS[name].items():
        d[k] = {**d.get(k, {}), **v}
    return Recipe.model_validate(d)


def is_pow2(a) -> bool:
    a = np.asarray(a, dtype=np.float64)
    return bool(np.all(a > 0) and np.all(np.log2(a) == np.round(np.log2(a))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = {}
    for name in VARIANTS:
        r = recipe(name)
        d = tmp_path_factory.mktemp(name)
        m = train(r, d, quiet=True)
        out[name] = (r, d, m)
    return out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_qonnx_equals_brevitas_on_256_holdout_samples(trained, name):
    r, d, metrics = trained[name]
    split = data.load(r.dataset.name, seed=r.seed, holdout=r.dataset.holdout)
    x = split.x_holdout[:256]
    # a fresh model from the weights-only checkpoint, as a user would reload it
    model = build_model(r, split, r.seed)
    model.load_state_dict(torch.load(d / CHECKPOINT, weights_only=True))
    ref = predict(model, x)
    got = execute_qonnx(d / "model.onnx", x)
    assert got.shape == ref.shape == (256, 10)
    np.testing.assert_array_equal(got.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # the recorded accuracy is the reloaded model's
    acc = float((predict(model, split.x_holdout).argmax(1) == split.y_holdout).mean())
    assert acc == metrics["accuracy"]


@pytest.mark.parametrize(
    "name", ["mixed_4_3_2", "binary_mixed", "no_batchnorm", "bn_fold", "quantnet", "signed_acts"]
)
def test_power_of_two_scales_and_integer_biases(trained, name):
    r, d, _ = trained[name]
    m = ModelWrapper(str(d / "model.onnx"))
    quants = [n for n in m.graph.node if n.op_type == "Quant"]
    bipolar = [n for n in m.graph.node if n.op_type == "BipolarQuant"]
    for n in quants:
        assert is_pow2(m.get_initializer(n.input[1])), n.name
        assert np.all(m.get_initializer(n.input[2]) == 0), n.name
    for n in bipolar:
        assert np.all(m.get_initializer(n.input[1]) == 1.0), n.name
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    assert len(gemms) == r.n_layers
    for g, wb in zip(gemms, r.weight_bits, strict=True):
        wq = m.find_producer(g.input[1])
        if wb == 1:
            assert wq.op_type == "BipolarQuant"
        else:
            assert wq.op_type == "Quant"
            assert m.get_initializer(wq.input[3]) == wb
            attrs = {a.name: a.i for a in wq.attribute if a.type == 2}
            assert attrs["narrow"] == 1 and attrs["signed"] == 1
        if len(g.input) > 2:  # bias: quantized to integers of the accumulator's scale
            bq = m.find_producer(g.input[2])
            assert bq.op_type == "Quant"
            assert m.get_initializer(bq.input[3]) == r.quant.bias_bits
    n_act_quants = len(quants) + len(bipolar) - r.n_layers - sum(len(g.input) > 2 for g in gemms)
    assert n_act_quants == len(r.act_bits) + 1  # hidden activations + the input


def test_ternary_weights(trained):
    r, d, _ = trained["binary_mixed"]
    m = ModelWrapper(str(d / "model.onnx"))
    g = [n for n in m.graph.node if n.op_type == "Gemm"][1]
    wq = m.find_producer(g.input[1])
    w = m.get_initializer(wq.input[0]) / m.get_initializer(wq.input[1])
    assert set(np.unique(np.clip(np.round(w), -1, 1))) <= {-1.0, 0.0, 1.0}


def test_metrics_record_bits_and_memory(trained):
    r, d, m = trained["binary_mixed"]
    saved = json.loads((d / "metrics.json").read_text())
    assert saved == m
    assert m["weight_bits"] == [1, 2, 1] and m["act_bits"] == [1, 2]
    assert m["weight_memory_bits"] == 64 * 32 * 1 + 32 * 32 * 2 + 32 * 10 * 1
    assert [row["weight_memory_bits"] for row in m["layers"]] == [2048, 2048, 320]
    assert m["holdout_samples"] == 360 and m["train_samples"] == 1437


@pytest.mark.parametrize("name,signed", [("signed_acts", 1), ("mixed_4_3_2", 0)])
def test_activation_signedness(trained, name, signed):
    _, d, _ = trained[name]
    m = ModelWrapper(str(d / "model.onnx"))
    acts = [
        n
        for n in m.graph.node
        if n.op_type == "Quant"
        and m.get_initializer(n.input[0]) is None
        and m.find_producer(n.input[0]).op_type != "Reshape"  # the input quantizer
    ]
    assert len(acts) == 2
    for n in acts:
        assert {a.name: a.i for a in n.attribute if a.type == 2}["signed"] == signed


def test_folded_batchnorm_leaves_no_float_op_between_quantizers(trained):
    """arch.batchnorm: fold exports only quantized layers with integer biases (hls4ml-exact)."""
    r, d, _ = trained["bn_fold"]
    m = ModelWrapper(str(d / "model.onnx"))
    ops = {n.op_type for n in m.graph.node}
    assert "BatchNormalization" not in ops
    assert ops <= {"Quant", "BipolarQuant", "Gemm", "Relu", "Reshape"}, ops
    gemms = [n for n in m.graph.node if n.op_type == "Gemm"]
    assert all(len(g.input) == 3 for g in gemms)  # the folded BN shift is a quantized bias


def test_quantnet_binarizer_is_annealed_to_the_exact_binary_weights(trained):
    """Training uses tanh(beta * f(w)); at the end of the schedule it equals the deployed
    sign(f(w)) (what eval and the export compute) up to float rounding."""
    from compiler.qat.quantnet import QuantLinearQuantNet

    r, d, _ = trained["quantnet"]
    split = data.load(r.dataset.name, seed=r.seed, holdout=r.dataset.holdout)
    model = build_model(r, split, r.seed)
    model.load_state_dict(torch.load(d / CHECKPOINT, weights_only=True))
    layers = [m for m in model.modules() if isinstance(m, QuantLinearQuantNet)]
    assert len(layers) == 2  # the 1-bit layers only
    for layer in layers:
        pre = layer.pre_binary().detach()
        hard = torch.where(pre >= 0, 1.0, -1.0)
        layer.anneal(0.0)
        assert float(layer.beta) == 1.0
        assert (torch.tanh(layer.beta * pre) - hard).abs().max() > 0.01
        layer.anneal(1.0)
        soft = torch.tanh(layer.beta * pre)
        # all but weights within 1/BETA_MAX-ish of the decision boundary are +-1 exactly
        assert ((soft - hard).abs() < 1e-3).float().mean() > 0.9
        np.testing.assert_array_equal(layer.to_plain().quant_weight().value.detach(), hard)
