"""The built-in method plugins (installed as ``harness_plugins``)."""
