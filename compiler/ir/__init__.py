"""The hardware model: a small typed, integer-only graph that simulators and back ends read."""

from compiler.ir.model import (
    FIFO,
    FloatStep,
    InputEdge,
    IntType,
    Layer,
    MatVec,
    MaxPool,
    Model,
    OutputEdge,
    SlidingWindow,
    Thresholding,
)
from compiler.ir.serialize import load, save

__all__ = [
    "FIFO",
    "InputEdge",
    "IntType",
    "Layer",
    "MatVec",
    "MaxPool",
    "Model",
    "OutputEdge",
    "FloatStep",
    "SlidingWindow",
    "Thresholding",
    "load",
    "save",
]
