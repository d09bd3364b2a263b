"""Ed25519 signing and the audit hash chain: every kind of rewrite is detected."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.audit import (
    CHAIN_DOMAIN,
    GENESIS,
    AuditSigner,
    chain_link,
    verify_chain,
    verify_ed25519,
)
from crypto.errors import BrokenChain, BrokenChainAt, InvalidKey, InvalidSignature

ENTRIES = [f"purged {n} rows of table {n % 3}".encode() for n in range(6)]


def _build(entries: list[bytes], start: bytes = GENESIS) -> list[tuple[bytes, bytes]]:
    chain = []
    head = start
    for entry in entries:
        head = chain_link(head, entry)
        chain.append((entry, head))
    return chain


def _broken_at(chain: list[tuple[bytes, bytes]]) -> int:
    with pytest.raises(BrokenChain) as info:
        verify_chain(chain)
    assert isinstance(info.value, BrokenChainAt)
    assert str(info.value) == "hash chain is broken"
    return info.value.index


@given(message=st.binary(max_size=256))
def test_sign_verify_round_trip(message: bytes) -> None:
    signer = AuditSigner.from_seed(hashlib.sha256(b"test seed").digest())
    signature = signer.sign(message)
    assert len(signature) == 64
    verify_ed25519(signer.public_key, message, signature)


def test_generated_signers_differ_and_round_trip_through_the_seed() -> None:
    first, second = AuditSigner.generate(), AuditSigner.generate()
    assert first.public_key != second.public_key
    assert AuditSigner.from_seed(first.seed).public_key == first.public_key
    assert first.seed.hex() not in repr(first)


def test_another_key_fails() -> None:
    signer, other = AuditSigner.generate(), AuditSigner.generate()
    with pytest.raises(InvalidSignature):
        verify_ed25519(other.public_key, b"m", signer.sign(b"m"))


def test_every_flipped_signature_byte_fails() -> None:
    signer = AuditSigner.generate()
    signature = signer.sign(b"head")
    for position in range(64):
        tampered = bytearray(signature)
        tampered[position] ^= 0x01
        with pytest.raises(InvalidSignature):
            verify_ed25519(signer.public_key, b"head", bytes(tampered))


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        (bytes(31), bytes(64)),
        (bytes(33), bytes(64)),
        (bytes(32), bytes(63)),
        (bytes(32), bytes(65)),
        (bytes(32), bytes(64)),
        (b"\xff" * 32, bytes(64)),
    ],
)
def test_malformed_inputs_fail_the_same_way(public_key: bytes, signature: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify_ed25519(public_key, b"m", signature)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_seed_must_be_32_bytes(length: int) -> None:
    with pytest.raises(InvalidKey):
        AuditSigner.from_seed(bytes(length))


def test_chain_link_definition() -> None:
    entry = b"entry"
    expected = hashlib.sha256(
        b"exposure-audit-v1" + GENESIS + hashlib.sha256(entry).digest()
    ).digest()
    assert CHAIN_DOMAIN == b"exposure-audit-v1"
    assert chain_link(GENESIS, entry) == expected
    assert bytes(32) == GENESIS


def test_chain_known_answer() -> None:
    # Computed once with plain hashlib from the definition; pins the construction.
    head = verify_chain(_build([b"first", b"second"]))
    assert head == chain_link(chain_link(GENESIS, b"first"), b"second")
    assert head.hex() == "cdc706f5c4726539b3a3f98b5dd2b480e96e9c9dccba5b72ce4f5704e47dde96"


@settings(max_examples=50)
@given(entries=st.lists(st.binary(max_size=64), max_size=20))
def test_an_intact_chain_verifies_to_its_last_link(entries: list[bytes]) -> None:
    chain = _build(entries)
    head = verify_chain(chain)
    assert head == (chain[-1][1] if chain else GENESIS)


def test_a_chain_can_continue_from_a_checkpoint() -> None:
    chain = _build(ENTRIES)
    checkpoint = chain[2][1]
    assert verify_chain(chain[3:], start=checkpoint) == verify_chain(chain)


def test_edited_entry_is_detected() -> None:
    chain = _build(ENTRIES)
    chain[3] = (b"purged 0 rows", chain[3][1])
    assert _broken_at(chain) == 3


def test_edited_entry_with_recomputed_link_breaks_the_next_link() -> None:
    chain = _build(ENTRIES)
    forged = chain_link(chain[2][1], b"purged 0 rows")
    chain[3] = (b"purged 0 rows", forged)
    assert _broken_at(chain) == 4


def test_deleted_entry_is_detected() -> None:
    chain = _build(ENTRIES)
    del chain[2]
    assert _broken_at(chain) == 2


def test_reordered_entries_are_detected() -> None:
    chain = _build(ENTRIES)
    chain[1], chain[2] = chain[2], chain[1]
    assert _broken_at(chain) == 1


def test_inserted_entry_is_detected() -> None:
    chain = _build(ENTRIES)
    chain.insert(4, (b"inserted", chain_link(chain[3][1], b"inserted")))
    assert _broken_at(chain) == 5


def test_truncation_is_caught_by_the_signed_head() -> None:
    signer = AuditSigner.generate()
    chain = _build(ENTRIES)
    signed_head = signer.sign(verify_chain(chain))
    # Dropping entries at the end leaves a consistent chain ...
    shorter_head = verify_chain(chain[:-2])
    # ... whose head the signature does not cover.
    with pytest.raises(InvalidSignature):
        verify_ed25519(signer.public_key, shorter_head, signed_head)


@given(entries=st.lists(st.binary(max_size=16), min_size=1, max_size=8), data=st.data())
def test_any_single_entry_edit_is_detected_at_its_index(
    entries: list[bytes], data: st.DataObject
) -> None:
    chain = _build(entries)
    index = data.draw(st.integers(min_value=0, max_value=len(chain) - 1))
    entry, link = chain[index]
    replacement = data.draw(st.binary(max_size=16).filter(lambda b: b != entry))
    chain[index] = (replacement, link)
    assert _broken_at(chain) == index


def test_link_lengths_are_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        chain_link(bytes(31), b"x")
    with pytest.raises(ValueError, match="32 bytes"):
        verify_chain([], start=b"")
