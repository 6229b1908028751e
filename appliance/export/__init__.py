"""The way off the box: a registered version exported to formats other engines serve (`formats`), and those
engines' answers taken back into the prediction log (`ingest_log`), so the appliance keeps training, judging
and monitoring the traffic it no longer serves."""

# MLflow's graph gives each class's probability as an output of its own, and a log file may carry them as columns.
CLASS_OUTPUT_PREFIX = "probability_"
