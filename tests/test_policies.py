import pytest
from pydantic import TypeAdapter, ValidationError

from compiler.qat.policies import Policy

P = TypeAdapter(Policy)


def resolve(spec: dict, n: int) -> list[int]:
    return P.validate_python(spec).resolve(n)


def test_uniform():
    assert resolve({"policy": "uniform", "bits": 3}, 4) == [3, 3, 3, 3]


def test_explicit_and_its_length():
    assert resolve({"policy": "explicit", "bits": [8, 4, 1]}, 3) == [8, 4, 1]
    with pytest.raises(ValueError, match="expected 4 bitwidths"):
        resolve({"policy": "explicit", "bits": [8, 4, 1]}, 4)


def test_progressive_linear():
    spec = {"policy": "progressive", "first": 8, "last": 2}
    assert resolve(spec, 4) == [8, 6, 4, 2]
    assert resolve(spec, 1) == [8]
    # 4 - 2/3 = 3.33 -> 3, 4 - 4/3 = 2.67 -> 3 (half up)
    assert resolve({**spec, "first": 4}, 4) == [4, 3, 3, 2]


def test_progressive_step():
    spec = {"policy": "progressive", "first": 8, "last": 2, "schedule": "step"}
    assert resolve(spec, 4) == [8, 7, 6, 5]
    assert resolve({**spec, "step_bits": 4}, 4) == [8, 4, 2, 2]
    assert resolve({**spec, "step_layers": 2, "step_bits": 3}, 5) == [8, 8, 5, 5, 2]


def test_progressive_first_layer_kept_high_for_binary_networks():
    spec = {"policy": "progressive", "first": 1, "last": 1, "first_layer": 8}
    assert resolve(spec, 4) == [8, 1, 1, 1]


@pytest.mark.parametrize(
    "spec",
    [
        {"policy": "uniform", "bits": 0},
        {"policy": "uniform", "bits": 9},
        {"policy": "explicit", "bits": [2, 0]},
        {"policy": "progressive", "first": 2, "last": 4},
        {"policy": "progressive", "first": 4, "last": 2, "speed": 1},
        {"policy": "magic", "bits": 2},
    ],
)
def test_invalid_policies(spec):
    with pytest.raises(ValidationError):
        P.validate_python(spec)
