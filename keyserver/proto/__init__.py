"""Protobuf classes generated from the reference's ``revision.proto`` (``make proto``).

Only :mod:`keyserver.service.revision` imports them: a revision token is
``base64(RevisionToken{kid, data = nonce || AES-GCM(RevisionTokenData)})``, the reference's
wire form, so tokens stay opaque to phones and compatible with its layout.
"""
