"""Model recipes (``*.yaml``), shipped as package data."""
