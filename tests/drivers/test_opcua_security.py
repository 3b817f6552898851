"""Basic256Sha256 SignAndEncrypt with generated certificates and a user/password."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from modulecontrol.descriptors import ModuleInstance
from modulecontrol.drivers import DeviceRejected
from modulecontrol.drivers.opcua import (
    AuthenticationFailed,
    OpcUaDriver,
    SecurityConfigError,
    UntrustedServer,
)
from modulecontrol.simulators.opcua_pea import PeaServer, build_pea_server, make_certificate
from tests.drivers._opcua_pea import coil_reactor, instance

pytestmark = pytest.mark.asyncio(loop_scope="module")

PASSWORD = "s3cret-for-tests-only"
ENV = "MODULECONTROL_TEST_OPCUA_PASSWORD"


@dataclass
class Secure:
    server: PeaServer
    client_cert: Path
    client_key: Path
    server_cert: Path
    other_cert: Path
    trust_dir: Path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def secure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secure]:
    d = tmp_path_factory.mktemp("pki")
    server_cert, server_key = make_certificate(d, "pea", "urn:modulecontrol:test:pea",
                                               server=True)
    client_cert, client_key = make_certificate(d, "client", "urn:modulecontrol:test:client",
                                               server=False)
    other_cert, _ = make_certificate(d, "other", "urn:modulecontrol:test:other", server=True)
    trust = d / "trusted"
    trust.mkdir()
    (trust / "pea.der").write_bytes(server_cert.read_bytes())
    (trust / "README").write_text("not a certificate")
    server = await build_pea_server(coil_reactor(), certificate=server_cert,
                                    private_key=server_key, users={"operator": PASSWORD},
                                    allow_insecure=False)
    async with server:
        yield Secure(server, client_cert, client_key, server_cert, other_cert, trust)


def _secure_instance(s: Secure, **kw: Any) -> ModuleInstance:
    return instance(s.server.url, security_policy="Basic256Sha256",
                    security_mode="SignAndEncrypt", certificate=str(s.client_cert),
                    private_key=str(s.client_key), username="operator", password_env=ENV,
                    timeout=3.0, **kw)


async def test_sign_and_encrypt_with_password(secure: Secure, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(ENV, PASSWORD)
    inst = _secure_instance(secure, trust_list=[str(secure.trust_dir)])
    with caplog.at_level(logging.DEBUG):
        drv = OpcUaDriver(coil_reactor(), inst)
        async with drv:
            await drv.write("TempSP.VExt", 33.0)
            assert (await drv.read(["TempSP.VExt"]))["TempSP.VExt"].value == 33.0
            client = drv._client
            assert client is not None
            assert client.security_policy.Mode.name == "SignAndEncrypt"
            assert client.security_policy.URI.endswith("Basic256Sha256")
    assert PASSWORD not in caplog.text


async def test_wrong_password_is_refused_clearly(secure: Secure,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "wrong")
    inst = _secure_instance(secure, server_certificate=str(secure.server_cert))
    drv = OpcUaDriver(coil_reactor(), inst)
    with pytest.raises(AuthenticationFailed, match=f"refused user 'operator'.*{ENV}") as exc:
        await drv.connect()
    assert "wrong" not in str(exc.value)
    await drv.close()


async def test_unset_password_env_is_config_error(secure: Secure,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    drv = OpcUaDriver(coil_reactor(), _secure_instance(secure))
    with pytest.raises(SecurityConfigError, match=f"{ENV} .*is not set"):
        await drv.connect()


async def test_untrusted_server_refused(secure: Secure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, PASSWORD)
    inst = _secure_instance(secure, trust_list=[str(secure.other_cert)])
    drv = OpcUaDriver(coil_reactor(), inst)
    with pytest.raises(UntrustedServer, match="not in the trust list"):
        await drv.connect()
    pinned = _secure_instance(secure, server_certificate=str(secure.other_cert))
    with pytest.raises(UntrustedServer, match="not the one in server_certificate"):
        await OpcUaDriver(coil_reactor(), pinned).connect()
    empty = _secure_instance(secure)
    with pytest.raises(UntrustedServer, match="neither trust_list nor server_certificate"):
        await OpcUaDriver(coil_reactor(), empty).connect()


async def test_verify_server_false_accepts_any(secure: Secure,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, PASSWORD)
    inst = _secure_instance(secure, trust_list=[str(secure.other_cert)], verify_server=False)
    async with OpcUaDriver(coil_reactor(), inst) as drv:
        assert (await drv.read(["T.V"]))["T.V"].good


async def test_insecure_client_refused_by_secure_server(secure: Secure) -> None:
    drv = OpcUaDriver(coil_reactor(), instance(secure.server.url))
    with pytest.raises(DeviceRejected, match="offers no endpoint with this security_policy"):
        await drv.connect()
    await drv.close()
