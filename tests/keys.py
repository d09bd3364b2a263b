"""Keys for tests: a fixed KEK per service and key stores sealed under it.

Known KEKs make tests deterministic where it matters (two stores of one service open each
other's keys) while every key they seal is still made fresh.
"""

from __future__ import annotations

import base64

from pydantic import SecretStr

from exposure.keys import ServiceKeyStore

#: One KEK per service, as a deployment would configure them.
TEST_KEKS = {
    "keyserver": base64.b64encode(bytes(range(100, 132))).decode("ascii"),
    "verification": base64.b64encode(bytes(range(200, 232))).decode("ascii"),
}


def kek_setting(service: str) -> SecretStr:
    return SecretStr(TEST_KEKS[service])


def sealed_key_store(service: str) -> ServiceKeyStore:
    """A key store of ``service`` sealed under its test KEK."""
    return ServiceKeyStore(
        service, [base64.b64decode(TEST_KEKS[service])], kek_source=f"the {service} test KEK"
    )
