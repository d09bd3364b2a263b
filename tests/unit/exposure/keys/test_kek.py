"""Where KEKs come from: the setting, or in the embedded shape a file made once, atomically,
however many processes start at the same moment."""

from __future__ import annotations

import base64
import multiprocessing
import stat
from pathlib import Path

import pytest

from exposure.keys import KeyEncryptionKeyMissing
from exposure.keys.kek import decode_keks, embedded_kek_path, load_keks, new_kek

KEK = base64.b64encode(bytes(range(32))).decode()
OTHER = base64.b64encode(bytes(range(1, 33))).decode()


def test_the_setting_lists_keks_newest_first() -> None:
    assert load_keks("keyserver", f" {OTHER}, {KEK} ", embedded=False, data_dir=Path()) == [
        bytes(range(1, 33)),
        bytes(range(32)),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not base64!", "standard base64"),
        (base64.b64encode(bytes(16)).decode(), "at least 32"),
        (" , ", "holds no key"),
    ],
)
def test_a_malformed_setting_is_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_keks(value)


def test_outside_the_embedded_shape_a_missing_kek_stops_the_service(tmp_path: Path) -> None:
    with pytest.raises(KeyEncryptionKeyMissing) as missing:
        load_keks("verification", None, embedded=False, data_dir=tmp_path)

    assert "EXPOSURE_VERIFICATION_KEK is not set" in missing.value.message
    assert not (tmp_path / "secrets").exists()


def test_the_embedded_shape_makes_one_private_file_and_keeps_it(tmp_path: Path) -> None:
    first = load_keks("keyserver", None, embedded=True, data_dir=tmp_path)
    again = load_keks("keyserver", None, embedded=True, data_dir=tmp_path)
    path = embedded_kek_path(tmp_path, "keyserver")

    assert first == again
    assert len(first[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in path.parent.iterdir()] == ["keyserver.kek"]


def _start(data_dir: str, queue: multiprocessing.Queue[str]) -> None:
    keks = load_keks("keyserver", None, embedded=True, data_dir=Path(data_dir))
    queue.put(base64.b64encode(keks[0]).decode())


def test_processes_starting_together_agree_on_one_kek(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = context.Queue()
    processes = [context.Process(target=_start, args=(str(tmp_path), queue)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)

    assert all(process.exitcode == 0 for process in processes)
    assert len({queue.get(timeout=5) for _ in processes}) == 1


def test_a_new_kek_is_a_valid_setting() -> None:
    assert len(decode_keks(new_kek())[0]) == 32
