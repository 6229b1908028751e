"""The Textual dashboard: the operator's cockpit over one data directory.

It reads through ``appliance``'s read APIs and acts through the same functions the CLI uses;
it holds no SQL of its own.
"""
