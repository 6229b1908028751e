"""The MLOps appliance: the whole machine-learning production loop in one process."""

import os

# The appliance never phones home. Both libraries read these at import, so set them before
# any module of ours can import them.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"


def __getattr__(name: str):
    # `from appliance import register_model` (notebooks) without importing training libraries for
    # every user of the package: the serving path never loads them.
    if name == "register_model":
        from appliance.training.registration import register_model

        return register_model
    raise AttributeError(f"module 'appliance' has no attribute {name!r}")
