"""Deployments of a candidate version: blue-green, canary, shadow and A/B — started, advanced,
aborted and analysed through one set of functions the CLI, the API and the server share."""
