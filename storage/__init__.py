"""Persistence for the appliance: SQLite databases, the artifact store, the offline store.

Nothing in this package knows about machine learning; it could serve another program.
"""
