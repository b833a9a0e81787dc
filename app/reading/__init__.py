"""The reading model in plain Python: studies, layouts, viewports, key bindings (no Qt)."""
