"""Simulators of the IR: bit-accurate (values) and, later, cycle-accurate (timing)."""
