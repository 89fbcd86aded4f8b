"""An app whose import fails, for the CLI's error test."""

raise RuntimeError("this app is broken on purpose")
