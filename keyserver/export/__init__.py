"""Signed diff exports: batches of newly published keys as GAEN files listed in index.txt."""
