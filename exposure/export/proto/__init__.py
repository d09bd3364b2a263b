"""Protobuf classes generated from the GAEN ``export.proto`` (``make proto``); never edit them.

``export_pb2.py`` and its ``export_pb2.pyi`` stub come from ``../shared/interop/proto`` via
``grpc_tools.protoc`` and mypy-protobuf. Only :mod:`exposure.export.reader` and
:mod:`exposure.export.writer` import them; everything else uses :mod:`exposure.export.model`.
"""
