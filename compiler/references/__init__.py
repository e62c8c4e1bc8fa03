"""References a build is verified against, behind one interface (:class:`Reference`).

A new reference is one module with one registered class: a name, whether it can run here
(and why not), and one call from the build and the integer inputs to integers per layer.
"""

# importing registers them (in the order `taper verify` runs them)
from compiler.references import brevitas, finn, hls4ml, qonnx, rtl  # noqa: E402, F401, I001
from compiler.references.base import REFERENCES, Reference, RefOutput, get, register

__all__ = ["REFERENCES", "Reference", "RefOutput", "get", "register"]
