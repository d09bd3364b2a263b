"""Importing peers' signed GAEN export files: sources, fetching, and the import run."""
