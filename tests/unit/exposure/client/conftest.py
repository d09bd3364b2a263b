from __future__ import annotations

import pytest

from crypto.signing import FileSigner


@pytest.fixture(scope="module")
def signer() -> FileSigner:
    return FileSigner.generate()


@pytest.fixture(scope="module")
def other_signer() -> FileSigner:
    return FileSigner.generate()
