"""The built-in data sets (installed as ``harness_datasets``): one module each, registered
through the same ``register_datasets`` hook a third-party plugin uses."""
