"""The shared core of the exposure-notification backend.

It holds the wire contract, the GAEN export file format, database plumbing, settings, the
CLI and the phone-side SDK; the ``keyserver`` and ``verification`` services build on it.
"""
