"""The verification service's use cases, one module each; no HTTP, no commits."""
