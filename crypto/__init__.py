"""Every cryptographic operation of the project, and nothing else.

The rest of the code base sees small recipes (sign this export, verify that certificate,
seal this revision token) and never touches ``cryptography`` or PyNaCl directly. Every
verification failure raises one opaque error per primitive (see :mod:`crypto.errors`) so
that no caller can leak *why* a check failed.

This package imports no HTTP or database code.
"""
