"""Model recipes (``*.yaml``) and the Brevitas network definitions (``arch/``)."""
