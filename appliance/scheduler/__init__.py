"""Scheduled jobs (monitoring, training) run in process by APScheduler, each run recorded."""
