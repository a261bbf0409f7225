"""backdoor-audit front end: API, CLI, reports. Never imports torch at import time."""

__version__ = "0.1.0"
