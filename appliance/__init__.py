"""The MLOps appliance: the whole machine-learning production loop in one process."""

import os

# The appliance never phones home. Both libraries read these at import, so set them before
# any module of ours can import them.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
