"""`exposure db upgrade` moves the keys an earlier version kept in files into the databases.

The data directory is built as the version before sealed keys left it: both schemas one
migration behind, private keys as PEM files under ``keys/<service>/``, the hashing secret,
the revision-token AAD, the revision secret and the retention-log seeds as files under
``secrets/``, rows naming those files, an API key hashed under the old secret and a
revision key sealed under the old revision secret. After the upgrade every file is gone
and everything the files held still works: the same public keys sign, the API key still
authenticates, a revision token sealed before still opens, the logs verify with the same
public keys.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from crypto.audit import AuditSigner
from crypto.codes import KeyedHasher
from crypto.signing import FileSigner
from exposure.compose import DeploymentSettings, open_deployment
from exposure.db import create_database_engine, make_session_factory, unit_of_work
from exposure.db.migrate import upgrade
from exposure.settings import ExposureSettings, Service
from keyserver.models import SignatureInfo
from keyserver.service.revision import RevisableKey, decode_token, encode_token
from keyserver.service.revision_keys import create_revision_key, load_keyring, wrapping_keyring
from tests.e2e.conftest import run_cli
from verification.models import ApiKey, Realm, SigningKey
from verification.service import realms, signing_keys

NOW = datetime.now(UTC) - timedelta(hours=1)
#: The schemas as the version before sealed keys left them.
EARLIER = {
    Service.KEYSERVER: ("0003_core_retention_log", "k0002_keyserver_exports"),
    Service.VERIFICATION: ("0003_core_retention_log", "v0002_verification_auditor_keys"),
}
HASH_SECRET = bytes(range(32))
AAD = bytes(range(40, 72))
REVISION_SECRET = bytes(range(80, 112))
API_KEY = "an-api-key-made-by-the-earlier-version"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _earlier_data_dir(data_dir: Path) -> dict[str, object]:
    """What the earlier version left behind; the facts to check afterwards."""
    secrets = data_dir / "secrets"
    files = [
        _write(secrets / "verification.keys", _b64(HASH_SECRET) + "\n"),
        _write(secrets / "keyserver-revision-aad", _b64(AAD) + "\n"),
        _write(secrets / "keyserver-revision.keys", _b64(REVISION_SECRET) + "\n"),
    ]
    log_seeds = {}
    for service in Service:
        seed = AuditSigner.generate().seed
        log_seeds[service.value] = AuditSigner.from_seed(seed).public_key
        files.append(_write(secrets / f"{service.value}-retention-log.key", _b64(seed) + "\n"))

    certificate = FileSigner.generate()
    token = FileSigner.generate()
    export = FileSigner.generate()
    pems = {
        "verification": {
            "certificate-r1v1-0a1b2c3d.pem": certificate,
            "token-t1-0a1b2c3d.pem": token,
        },
        "keyserver": {"export-452-v1-0a1b2c3d4e5f.pem": export},
    }
    for service, signers in pems.items():
        for name, signer in signers.items():
            files.append(
                _write(data_dir / "keys" / service / name, signer.private_key_pem().decode())
            )

    verification = create_database_engine(f"sqlite:///{data_dir / 'verification.sqlite3'}")
    upgrade(verification, EARLIER[Service.VERIFICATION])
    with verification.begin() as connection:
        connection.execute(
            insert(Realm.__table__).values(
                id=1, name="lab", certificate_issuer="lab-issuer", created_at=NOW
            )
        )
        connection.execute(
            insert(ApiKey.__table__).values(
                realm_id=1,
                kind="device",
                name="device",
                key_hmac=KeyedHasher([HASH_SECRET]).digest(API_KEY),
                preview=API_KEY[:6],
                created_at=NOW,
            )
        )
        for realm_id, purpose, kid, name, signer in (
            (1, "certificate", "r1v1", "certificate-r1v1-0a1b2c3d.pem", certificate),
            (None, "token", "t1", "token-t1-0a1b2c3d.pem", token),
        ):
            connection.execute(
                insert(SigningKey.__table__).values(
                    realm_id=realm_id,
                    purpose=purpose,
                    kid=kid,
                    key_reference=name,
                    public_key_pem=signer.public_key_pem().decode(),
                    created_at=NOW,
                    active_at=NOW,
                )
            )
    verification.dispose()

    keyserver = create_database_engine(f"sqlite:///{data_dir / 'keyserver.sqlite3'}")
    upgrade(keyserver, EARLIER[Service.KEYSERVER])
    with unit_of_work(make_session_factory(keyserver)) as session:
        session.execute(
            insert(SignatureInfo.__table__).values(
                signing_key="export-452-v1-0a1b2c3d4e5f.pem",
                key_id="452",
                key_version="v1",
                public_key_pem=export.public_key_pem().decode(),
                created_at=NOW,
            )
        )
        ring = wrapping_keyring([REVISION_SECRET])
        create_revision_key(session, ring, NOW)
        revision_ring = load_keyring(session, ring, NOW)
    keyserver.dispose()
    revisable = [RevisableKey(key=bytes(16), interval_number=2_000_000, interval_count=144)]
    return {
        "files": files,
        "log_public_keys": log_seeds,
        "certificate_pem": certificate.public_key_pem(),
        "token_pem": token.public_key_pem(),
        "export_pem": export.public_key_pem(),
        "revision_token": encode_token(revision_ring, AAD, revisable, min_length=1),
        "revisable": revisable,
    }


def test_db_upgrade_moves_file_kept_keys_into_the_databases(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    earlier = _earlier_data_dir(data_dir)

    upgraded = run_cli(data_dir, "db", "upgrade")
    again = run_cli(data_dir, "db", "upgrade")

    assert upgraded.returncode == 0, upgraded.stderr
    assert "keyserver: moved" in upgraded.stdout
    assert "verification: moved" in upgraded.stdout
    assert again.returncode == 0, again.stderr
    assert "moved" not in again.stdout  # nothing left to move
    files = earlier["files"]
    assert isinstance(files, list)
    assert [path for path in files if path.exists()] == []

    settings = DeploymentSettings(base=ExposureSettings(data_dir=data_dir))
    with open_deployment(settings) as deployment:
        verification = deployment.verification
        with unit_of_work(verification.session_factory) as session:
            realm = realms.find_realm(session, "lab")
            certificate = signing_keys.certificate_signer(session, verification.context, realm, NOW)
            token = signing_keys.token_signer(session, verification.context, NOW)
            key, _ = realms.authenticate(
                session, verification.context, api_key=API_KEY, kind=realms.ApiKeyKind.DEVICE
            )
        assert certificate.signer.public_key_pem() == earlier["certificate_pem"]
        assert token.signer.public_key_pem() == earlier["token_pem"]
        assert key.kind == "device"

        keyserver = deployment.keyserver
        with unit_of_work(keyserver.session_factory) as session:
            export = keyserver.keys.signer(session, "export-452-v1-0a1b2c3d4e5f.pem")
        assert export.public_key_pem() == earlier["export_pem"]
        secrets = keyserver.context.revision_secrets(NOW)
        token_text = earlier["revision_token"]
        assert isinstance(token_text, str)
        assert decode_token(secrets.keyring, secrets.aad, token_text) == earlier["revisable"]

        published = {
            bundle.service.value: bundle.retention.public_key
            for bundle in deployment.bundles.values()
        }
    assert published == earlier["log_public_keys"]

    listed = run_cli(data_dir, "admin", "keys", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {(row["service"], row["name"]) for row in json.loads(listed.stdout)}
    assert ("keyserver", "export-452-v1-0a1b2c3d4e5f.pem") in names
    assert ("verification", "token-t1-0a1b2c3d.pem") in names
    assert API_KEY not in listed.stdout
