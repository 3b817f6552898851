"""OPC UA driver (asyncua) with the MTP process-orchestration handshake.

One driver talks to one PEA. What it adds to :class:`BaseDriver`:

* a secure client: Basic256Sha256 Sign / SignAndEncrypt with the endpoint's application
  certificate, the server certificate checked against the trust list (unless
  ``verify_server: false``), user name plus a password taken from the environment variable
  named by ``password_env`` or read from an owner-only ``password_file`` (the password
  itself never appears in a descriptor or a log);
* namespaces named by URI and resolved at every connect (indexes may change on restart);
* batched reads (all tags of a call in one Read service request) and typed writes (the
  node's DataType is read once and the value is sent with that variant type);
* subscriptions with an explicit sampling interval and queue size whose revised values are
  checked and reported; notifications go through an ``asyncio.Queue`` to a consumer task so
  a slow callback never stalls asyncua's publish loop;
* a keep-alive read every half ``timeout`` (each with the endpoint ``timeout``), so a link
  that stalls or answers late is declared lost within 1.5 timeouts, not after asyncua's
  one-second watchdog tick plus its one-second probe;
* reconnect with a *fresh* ``Client`` (asyncua clients are not reused after a loss), bounded
  exponential backoff (cap 10 s) and re-created subscriptions.

It is a transport only: the MTP service handshake (modes, procedure, parameters, command,
wait for state) is :class:`modulecontrol.mtpcore.ServiceClient`, which runs over this driver
as over any other. See ``docs/drivers.md`` (OPC UA).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import stat
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif
from asyncua.common.subscription import Subscription as UaSubscription
from asyncua.common.ua_utils import data_type_to_variant_type
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from modulecontrol.descriptors import (
    Binding,
    EndpointBase,
    ModuleInstance,
    ModuleType,
    OpcUaBinding,
    OpcUaEndpoint,
)
from modulecontrol.drivers._base import (
    BadReply,
    BaseDriver,
    Callback,
    DeviceRejected,
    Disconnected,
    DriverError,
    Health,
    OutOfRange,
    Quality,
    TagInfo,
    TagValue,
    ValueRefused,
    cancel_asked_since,
    refusal,
)
from modulecontrol.drivers._scan import ScanStats
from modulecontrol.errors import did_you_mean

log = logging.getLogger(__name__)
T = TypeVar("T")


class _RedactIdentity(logging.Filter):
    """Hide the identity token in asyncua's DEBUG dump of ActivateSessionRequest.

    asyncua logs every request it sends at DEBUG, and with a secure channel the user token
    carries the password unencrypted inside the (encrypted) message: a debug log would
    otherwise hold the plant password in clear text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG and "IdentityToken" in str(record.msg) + str(
                record.args):
            record.msg = "Sending: ActivateSessionRequest (identity token redacted)"
            record.args = ()
        return True


_REDACT = _RedactIdentity()


def redact_identity_tokens() -> None:
    """Put the redaction filter on asyncua's client loggers (idempotent).

    Called by every :class:`OpcUaDriver` before it can open a session, not on import: the
    driver protects its own secrets wherever it is used (CLI, service, a user's script),
    and importing this module changes no logger.
    """
    for name in ("asyncua.client.ua_client.UASocketProtocol", "asyncua.client.ua_client",
                 "asyncua.client.client"):
        logging.getLogger(name).addFilter(_REDACT)

_SESSION_GONE = frozenset({
    "BadSessionIdInvalid", "BadSessionClosed", "BadSessionNotActivated",
    "BadSecureChannelIdInvalid", "BadSecureChannelClosed", "BadServerHalted", "BadShutdown",
    "BadCommunicationError", "BadConnectionClosed",
})
"""Status codes of a keep-alive read that mean the session cannot be used any more."""
_ASYNCUA_WATCHDOG = 1.0
"""Seconds: floor of asyncua's own watchdog interval (and of its probe's timeout)."""
MAX_BACKOFF = 10.0
"""Seconds: upper bound of the pause between two reconnect attempts."""
_FIRST_BACKOFF = 0.2
_AUTH_CODES = frozenset({
    "BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected",
    "BadUserSignatureInvalid",
})
_INT_RANGES: dict[ua.VariantType, tuple[int, int]] = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1),
    ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1),
    ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1),
    ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1),
    ua.VariantType.UInt64: (0, 2**64 - 1),
}


# -- errors ----------------------------------------------------------------------------------
class NamespaceNotFound(DriverError):
    """A namespace URI of the descriptor is not in the server's NamespaceArray."""


class AuthenticationFailed(DeviceRejected):
    """The server refused the user identity (wrong user name or password)."""


class UntrustedServer(DriverError):
    """The server's certificate is not in the trust list (and ``verify_server`` is true)."""


class SecurityConfigError(DriverError):
    """The endpoint's security settings cannot work (missing file, unset env var, ...)."""


# -- health ----------------------------------------------------------------------------------
@dataclass
class SubscriptionReport:
    """What the server made of a subscription request (intervals in seconds)."""

    tags: list[str]
    requested_publishing_interval: float
    revised_publishing_interval: float | None = None
    requested_sampling_interval: float = 0.0
    revised_sampling_interval: dict[str, float] = field(default_factory=dict)
    requested_queue_size: int = 1
    revised_queue_size: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    """Notifications dropped because the consumer fell behind (queue full, oldest dropped)."""


@dataclass
class OpcUaHealth(Health):
    """Health plus what only OPC UA has: revised subscription values and warnings."""

    subscriptions: list[SubscriptionReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reconnecting: bool = False


# -- subscription ----------------------------------------------------------------------------
class OpcUaSubscription:
    """A data-change subscription that survives reconnects (re-created on the new client)."""

    def __init__(self, driver: OpcUaDriver, tags: list[str], interval: float,
                 sampling_interval: float, queue_size: int, callback: Callback,
                 buffer: int) -> None:
        self._driver = driver
        self.tags = tags
        self.interval = interval
        self.sampling_interval = sampling_interval
        self.queue_size = queue_size
        self._callback = callback
        self._queue: asyncio.Queue[tuple[str, TagValue]] = asyncio.Queue(maxsize=buffer)
        self._handles: dict[int, str] = {}
        self._ua: UaSubscription | None = None
        self.report = SubscriptionReport(
            tags=list(tags), requested_publishing_interval=interval,
            requested_sampling_interval=sampling_interval, requested_queue_size=queue_size,
        )
        self.stats = ScanStats(interval, late_after=2 * interval)
        """Per delivered batch of data changes: *lateness* is the age of its newest value
        at delivery (server source time to callback, which includes the server's sampling
        and publishing intervals), *duration* the callback's run time. Nothing is scheduled
        client side, so ``missed`` stays 0; ``late`` counts ages over two publishing
        intervals."""
        self.stats.started = time.monotonic()
        self._consumer = asyncio.get_running_loop().create_task(
            self._consume(), name=f"opcua callbacks {driver.tag_name}")

    # asyncua calls this from its dispatch task: it must never block, so it only enqueues.
    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        tag = self._handles.get(data.monitored_item.ClientHandle)
        if tag is not None:
            self._put(tag, _tag_value(data.monitored_item.Value))

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        log.info("%s: subscription status %s", self._driver.tag_name, status.Status)

    def _put(self, tag: str, value: TagValue) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.report.dropped += 1
        self._queue.put_nowait((tag, value))

    def _mark_bad(self) -> None:
        for tag in self.tags:
            self._put(tag, TagValue(None, Quality.BAD))

    async def _consume(self) -> None:
        while True:
            tag, value = await self._queue.get()
            batch = {tag: value}
            while not self._queue.empty():
                nxt_tag, nxt = self._queue.get_nowait()
                if nxt_tag in batch:
                    self._deliver(batch)
                    batch = {}
                batch[nxt_tag] = nxt
            self._deliver(batch)

    def _deliver(self, batch: Mapping[str, TagValue]) -> None:
        t0 = time.monotonic()
        try:
            self._callback(batch)
        except Exception:
            log.exception("%s: subscription callback failed", self._driver.tag_name)
        stamps = [v.timestamp for v in batch.values() if v.quality is Quality.GOOD]
        if stamps:
            # age of the newest value when the proxy got it: server sampling and publishing
            # delays plus this process's own lag (source timestamps are the server's clock)
            self.stats.record(time.time() - max(stamps), time.monotonic() - t0)
            self.stats.last = time.monotonic()

    async def _attach(self, client: Client, node_ids: Mapping[str, ua.NodeId]) -> None:
        """Create the subscription and its monitored items on ``client``; check revisions."""
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = self.interval * 1000.0
        params.RequestedMaxKeepAliveCount = client.get_keepalive_count(
            params.RequestedPublishingInterval)
        params.RequestedLifetimeCount = max(10000, 3 * params.RequestedMaxKeepAliveCount)
        params.MaxNotificationsPerPublish = 0
        params.PublishingEnabled = True
        params.Priority = 0
        sub = UaSubscription(client.uaclient.session, params, self)
        result = await sub.init()
        self._ua = sub
        rep = self.report
        rep.revised_publishing_interval = result.RevisedPublishingInterval / 1000.0
        if not math.isclose(result.RevisedPublishingInterval, params.RequestedPublishingInterval):
            self._driver._warn(
                f"publishing interval of {', '.join(self.tags[:3])}"
                f"{'...' if len(self.tags) > 3 else ''} revised by the server from "
                f"{params.RequestedPublishingInterval:g} ms to "
                f"{result.RevisedPublishingInterval:g} ms")
        requests = []
        self._handles = {}
        for i, tag in enumerate(self.tags, start=1):
            rv = ua.ReadValueId()
            rv.NodeId = node_ids[tag]
            rv.AttributeId = AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = i
            mp.SamplingInterval = self.sampling_interval * 1000.0
            mp.QueueSize = self.queue_size
            mp.DiscardOldest = True
            req = ua.MonitoredItemCreateRequest()
            req.ItemToMonitor = rv
            req.MonitoringMode = ua.MonitoringMode.Reporting
            req.RequestedParameters = mp
            requests.append(req)
            self._handles[i] = tag
        results = await _create_items_with_results(sub, requests)
        bad = [f"{self.tags[i]} ({r.StatusCode.name})" for i, r in enumerate(results)
               if not r.StatusCode.is_good()]
        if bad:
            raise DeviceRejected(f"server refused to monitor {', '.join(bad)}",
                                 code=results[0].StatusCode.name, module=self._driver.tag_name)
        revised_s = {}
        revised_q = {}
        for tag, r in zip(self.tags, results, strict=True):
            revised_s[tag] = r.RevisedSamplingInterval / 1000.0
            revised_q[tag] = int(r.RevisedQueueSize)
        rep.revised_sampling_interval = revised_s
        rep.revised_queue_size = revised_q
        off_s = sorted({v for v in revised_s.values()
                        if not math.isclose(v, self.sampling_interval)})
        if off_s:
            self._driver._warn(
                f"sampling interval revised by the server from {self.sampling_interval * 1000:g}"
                f" ms to {', '.join(f'{v * 1000:g}' for v in off_s)} ms")
        off_q = sorted({v for v in revised_q.values() if v != max(self.queue_size, 1)})
        if off_q:
            self._driver._warn(
                f"queue size revised by the server from {self.queue_size} to "
                f"{', '.join(map(str, off_q))}")

    async def cancel(self) -> None:
        self._driver._ua_subs.discard(self)
        self._consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._consumer
        with contextlib.suppress(ValueError):
            self._driver._health.subscriptions.remove(self.report)
        await self._delete_remote()

    async def _delete_remote(self) -> None:
        sub, self._ua = self._ua, None
        if sub is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._driver.timeout):
                    await sub.delete()


async def _create_items_with_results(
    sub: UaSubscription, requests: list[ua.MonitoredItemCreateRequest]
) -> list[ua.MonitoredItemCreateResult]:
    """``Subscription.create_monitored_items`` returning the full results (revised values).

    asyncua registers the items (so notifications find their handles) but returns only ids;
    a pass-through proxy on its session object keeps the results of that same request.
    """
    real = sub.server
    captured: list[ua.MonitoredItemCreateResult] = []

    class _Capture:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        async def create_monitored_items(
            self, params: ua.CreateMonitoredItemsParameters
        ) -> list[ua.MonitoredItemCreateResult]:
            res: list[ua.MonitoredItemCreateResult] = await real.create_monitored_items(params)
            captured.extend(res)
            return res

    sub.server = _Capture()  # type: ignore[assignment]
    try:
        await sub.create_monitored_items(requests)
    finally:
        sub.server = real
    return captured


def _tag_value(dv: ua.DataValue) -> TagValue:
    status = dv.StatusCode or ua.StatusCode()
    if status.is_good():
        quality = Quality.GOOD
    elif status.is_uncertain():
        quality = Quality.UNCERTAIN
    else:
        quality = Quality.BAD
    ts = dv.SourceTimestamp or dv.ServerTimestamp
    value = dv.Value.Value if dv.Value is not None else None
    return TagValue(
        value=value if quality is not Quality.BAD else None,
        quality=quality,
        timestamp=ts.timestamp() if ts is not None else time.time(),
        raw=value if quality is not Quality.BAD else status.name,
    )


def _status_name(code: int) -> str:
    try:
        return ua.StatusCode(ua.UInt32(code)).name
    except Exception:
        return f"0x{code:08X}"


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def backoff_delays(first: float = _FIRST_BACKOFF, cap: float = MAX_BACKOFF) -> Iterator[float]:
    """Pauses before reconnect attempts: ``first``, doubling, never above ``cap``."""
    delay = min(first, cap)
    while True:
        yield delay
        delay = min(delay * 2, cap)


# -- driver ----------------------------------------------------------------------------------
class OpcUaDriver(BaseDriver):
    """OPC UA client for one MTP PEA (or any server whose node map is in the descriptor)."""

    transport: ClassVar[str] = "opcua"
    binding_model: ClassVar[type[Binding]] = OpcUaBinding
    endpoint_models: ClassVar[tuple[type[EndpointBase], ...]] = (OpcUaEndpoint,)
    source_timestamps: ClassVar[bool] = True
    reports_changes_only: ClassVar[bool] = True

    def __init__(self, module_type: ModuleType, instance: ModuleInstance) -> None:
        redact_identity_tokens()
        super().__init__(module_type, instance)
        ep = instance.endpoint
        if not isinstance(ep, OpcUaEndpoint):
            raise ValueError(f"module {instance.tag}: the OPC UA driver needs an 'opcua' "
                             f"endpoint, not {getattr(ep, 'protocol', None)!r}")
        self.endpoint = ep
        self._health: OpcUaHealth = OpcUaHealth()
        self._client: Client | None = None
        self._node_ids: dict[str, ua.NodeId] = {}
        self._vtypes: dict[str, ua.VariantType] = {}
        self._ua_subs: set[OpcUaSubscription] = set()
        self._reconnect_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._closing = False
        self._default_uri = module_type.opcua.namespace_uri if module_type.opcua else None

    # -- connection ---------------------------------------------------------------------
    async def _connect(self) -> None:
        self._closing = False
        client, node_ids = await self._open_client()
        self._client = client
        self._node_ids = node_ids
        self._start_keepalive(client)

    async def _close(self) -> None:
        self._closing = True
        task, self._reconnect_task = self._reconnect_task, None
        await _cancel(task)
        task, self._keepalive_task = self._keepalive_task, None  # after: a reconnect starts one
        await _cancel(task)
        for sub in list(self._ua_subs):
            await sub.cancel()
        client, self._client = self._client, None
        if client is not None:
            await self._disconnect_quietly(client)
        self._health.reconnecting = False

    async def _disconnect_quietly(self, client: Client) -> None:
        client.connection_lost_callback = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await client.disconnect()

    async def _open_client(self) -> tuple[Client, dict[str, ua.NodeId]]:
        """A new, connected client with namespaces resolved. Never reuses a client."""
        ep = self.endpoint
        # ``timeout`` bounds every request asyncua sends. asyncua's own watchdog probes with a
        # timeout equal to its interval: never below our timeout (a server that answers
        # within ``timeout`` must not be dropped); fast detection is our keep-alive's job.
        client = Client(ep.url, timeout=self.timeout,
                        watchdog_intervall=max(_ASYNCUA_WATCHDOG, self.timeout))
        client.session_timeout = round(ep.session_timeout * 1000)  # ms; orphans expire
        client.name = client.description = f"modulecontrol {self.tag_name}"
        client.application_uri = f"urn:modulecontrol:client:{self.tag_name}"
        if ep.username is not None:
            client.set_user(ep.username)
        if ep.password_env is not None:
            password = os.environ.get(ep.password_env)
            if password is None:
                raise SecurityConfigError(
                    f"environment variable {ep.password_env} (password_env) is not set; "
                    "export the password there before connecting", module=self.tag_name)
            client.set_password(password)
        elif ep.password_file is not None:
            client.set_password(self._password_from_file(Path(ep.password_file)))
        try:
            if ep.security_policy != "None":
                await self._setup_security(client)
            await client.connect()
        except DriverError:
            raise
        except UaStatusCodeError as exc:
            raise self._connect_refused(exc.code) from None
        except UaError as exc:
            hint = (" (the server offers no endpoint with this security_policy and "
                    "security_mode)" if "No matching endpoints" in str(exc) else "")
            raise DeviceRejected(f"connection to {ep.url} failed: {exc}{hint}",
                                 module=self.tag_name) from None
        except (OSError, ConnectionError) as exc:
            raise Disconnected(f"cannot reach {ep.url}: {self._why_unreachable(exc)}",
                               module=self.tag_name) from None
        try:
            node_ids = await self._resolve(client)
        except BaseException:
            await self._disconnect_quietly(client)
            raise
        client.connection_lost_callback = self._on_connection_lost
        return client, node_ids

    def _password_from_file(self, path: Path) -> str:
        """The password in ``path``, which only its owner may read.

        Why refuse a readable file: a password others can read is no longer a secret, and
        saying so at connect time is the last moment before it is used.
        """
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecurityConfigError(
                f"password_file {path} cannot be read ({exc}); point password_file at the "
                "file holding the password", module=self.tag_name) from None
        if os.name == "posix" and mode & 0o077:
            raise SecurityConfigError(
                f"password_file {path} is readable by group or others (mode {mode:o}); "
                f"make it owner-only: chmod 600 {path}", module=self.tag_name)
        password = text.strip("\r\n")
        if not password:
            raise SecurityConfigError(f"password_file {path} is empty", module=self.tag_name)
        return password

    def _connect_refused(self, code: int) -> DriverError:
        name = _status_name(code)
        ep = self.endpoint
        if name in _AUTH_CODES:
            who = f"user '{ep.username}'" if ep.username else "an anonymous session"
            where = (f"file {ep.password_file}" if ep.password_file is not None else
                     f"environment variable {ep.password_env}")
            hint = (f"check the user name and the password in {where}" if ep.username else
                    "the server wants a user: set 'username' and 'password_env' in the endpoint")
            return AuthenticationFailed(f"{ep.url} refused {who} ({name}): {hint}",
                                        code=name, module=self.tag_name)
        if "Certificate" in name or "Security" in name:
            return DeviceRejected(
                f"{ep.url} refused the secure channel ({name}): make sure the server trusts "
                f"our certificate {ep.certificate} and offers {ep.security_policy} "
                f"{ep.security_mode}", code=name, module=self.tag_name)
        return DeviceRejected(f"{ep.url} refused the connection ({name})", code=name,
                              module=self.tag_name)

    async def _setup_security(self, client: Client) -> None:
        ep = self.endpoint
        if ep.certificate is None or ep.private_key is None:
            raise SecurityConfigError(
                f"security_policy {ep.security_policy} needs 'certificate' and 'private_key' "
                "(the client's application certificate); or set security_policy and "
                "security_mode to 'None' on a trusted network", module=self.tag_name)
        for what, path in (("certificate", ep.certificate), ("private_key", ep.private_key)):
            if not Path(path).is_file():  # noqa: ASYNC240 (a stat, once per connect)
                raise SecurityConfigError(f"{what} file {path} does not exist",
                                          module=self.tag_name)
        cert = _load_cert(Path(ep.certificate))
        uris = san_uris(cert)
        if uris:
            client.application_uri = uris[0]
        mode = getattr(ua.MessageSecurityMode, ep.security_mode)
        policy = security_policies.SecurityPolicyBasic256Sha256
        server_der = await self._server_certificate(client, mode, policy.URI)
        await client.set_security(policy, ep.certificate, ep.private_key,
                                  server_certificate=server_der, mode=mode)

    def _why_unreachable(self, exc: OSError) -> str:
        """The reason a connection failed, never empty: a timeout has no text of its own, and
        a secure server that cannot verify a request's signature drops it without an answer."""
        if isinstance(exc, TimeoutError):
            return (f"no answer within {self.timeout:g} s (a server that refuses a "
                    "request's signature or certificate drops it without answering)")
        return str(exc) or type(exc).__name__

    async def _server_certificate(self, client: Client, mode: ua.MessageSecurityMode,
                                  policy_uri: str) -> bytes:
        """The certificate the server presents for our policy and mode, checked for trust."""
        ep = self.endpoint
        try:
            endpoints = await client.connect_and_get_server_endpoints()
        except (OSError, ConnectionError) as exc:
            raise Disconnected(f"cannot reach {ep.url}: {self._why_unreachable(exc)}",
                               module=self.tag_name) from None
        match = [e for e in endpoints
                 if e.SecurityMode == mode and e.SecurityPolicyUri == policy_uri]
        if not match:
            offered = sorted({f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]} {e.SecurityMode.name}"
                              for e in endpoints})
            raise DeviceRejected(
                f"{ep.url} offers no {ep.security_policy} {ep.security_mode} endpoint; it "
                f"offers: {', '.join(offered)}", module=self.tag_name)
        der = _first_der(match[0].ServerCertificate)
        if not ep.verify_server:
            return der
        fingerprint = sha256(der).hexdigest()
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        if ep.server_certificate is not None:
            pinned = _load_cert(Path(ep.server_certificate)).public_bytes(Encoding.DER)
            if pinned != der:
                raise UntrustedServer(
                    f"{ep.url} presents certificate '{subject}' (sha256 {fingerprint}), not the "
                    f"one in server_certificate {ep.server_certificate}", module=self.tag_name)
            return der
        trusted = _trusted_fingerprints(ep.trust_list)
        if not trusted:
            raise UntrustedServer(
                "verify_server is true but neither trust_list nor server_certificate is set: "
                "add the server's certificate to the trust list, or set verify_server: false "
                "for a test bench", module=self.tag_name)
        if fingerprint not in trusted:
            raise UntrustedServer(
                f"{ep.url} presents certificate '{subject}' (sha256 {fingerprint}), which is "
                f"not in the trust list ({', '.join(ep.trust_list)}); add it there if you "
                "trust this server", module=self.tag_name)
        return der

    async def _resolve(self, client: Client) -> dict[str, ua.NodeId]:
        """Node ids of every tag, with namespace URIs looked up in this server's array."""
        try:
            array = await client.get_namespace_array()
        except UaStatusCodeError as exc:
            raise DeviceRejected(f"cannot read the namespace array "
                                 f"({_status_name(exc.code)})", module=self.tag_name) from None
        index = {uri: i for i, uri in enumerate(array)}
        out: dict[str, ua.NodeId] = {}
        for tag, info in self.tags.items():
            b = info.binding
            assert isinstance(b, OpcUaBinding)
            uri = self._namespace_of(b)
            ident = b.identifier
            if ident.startswith("nsu="):
                uri, ident = ident[4:].split(";", 1)
            if ident.startswith("ns="):
                out[tag] = ua.NodeId.from_string(ident)
                continue
            ns = 0
            if uri is not None:
                if uri not in index:
                    raise NamespaceNotFound(
                        f"namespace '{uri}' (needed by {tag}) is not on the server at "
                        f"{self.endpoint.url}; the server has: {', '.join(array)}"
                        f"{did_you_mean(uri, array)}", module=self.tag_name)
                ns = index[uri]
            out[tag] = ua.NodeId.from_string(f"ns={ns};{ident}")
        return out

    def _namespace_of(self, b: OpcUaBinding) -> str | None:
        override = self.endpoint.namespace_uri
        if override is not None and (b.namespace_uri is None or b.namespace_uri
                                     == self._default_uri):
            return override
        return b.namespace_uri

    # -- loss and reconnect -------------------------------------------------------------
    def _start_keepalive(self, client: Client) -> None:
        self._keepalive_task = asyncio.get_running_loop().create_task(
            self._keepalive(client), name=f"opcua keep-alive {self.tag_name}")

    async def _keepalive(self, client: Client) -> None:
        """Read the server's state every half ``timeout``; no answer within ``timeout`` (or
        an answer that cannot be parsed) is a lost link.

        Why our own and not only asyncua's watchdog: asyncua probes once per watchdog interval
        with that interval as the probe's timeout, so a stalled link took up to two intervals
        (1-2 s) to notice, and a shorter interval would also shorten the probe's timeout
        below the endpoint's. Here the probe period and its timeout are separate: a link
        that stops answering is declared lost at most 1.5 x ``timeout`` after it stopped,
        which keeps detection within the fault matrix's bound of two timeouts plus one poll
        (a subscription alone would not notice: a server that has nothing new to publish
        legitimately stays silent). A Bad status is an answer, so the link is alive, unless
        it says the session or channel is gone.
        """
        period = self.timeout / 2
        node = client.nodes.server_state
        while self._client is client:
            await asyncio.sleep(period)
            if self._client is not client:
                return
            try:
                async with asyncio.timeout(self.timeout):
                    await node.read_value()
            except UaStatusCodeError as exc:
                if _status_name(exc.code) not in _SESSION_GONE:
                    continue  # an answer (e.g. the server is busy): the link is alive
                if self._client is client:
                    self._lost(exc)
                return
            except TimeoutError:
                if self._client is client:
                    self._lost(TimeoutError(
                        f"no valid answer to the keep-alive read within {self.timeout:g} s"))
                return
            except asyncio.CancelledError:
                if cancel_asked_since(0):  # this task's own end: only a close cancels it
                    raise
                # asyncua cancelled its own request: the link is gone, not this watch
                if self._client is client:
                    self._lost(ConnectionError("the keep-alive read was dropped by asyncua"))
                return
            except Exception as exc:  # closed socket, a reply that does not parse
                if self._client is client:
                    self._lost(exc)
                return

    async def _on_connection_lost(self, exc: Exception) -> None:
        self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        if self._closing or self._reconnect_task is not None:
            return
        log.warning("%s: connection to %s lost: %s", self.tag_name, self.endpoint.url,
                    str(exc) or type(exc).__name__)
        self._health.connected = False
        self._health.reconnecting = True
        self._fail(f"connection lost: {str(exc) or type(exc).__name__}")
        for sub in self._ua_subs:
            sub._ua = None
            sub._mark_bad()
        old, self._client = self._client, None
        keepalive, self._keepalive_task = self._keepalive_task, None
        if keepalive is not None and keepalive is not asyncio.current_task():
            keepalive.cancel()  # its client is being dropped
        self._reconnect_task = asyncio.get_running_loop().create_task(
            self._reconnect(old), name=f"opcua reconnect {self.tag_name}")

    async def _reconnect(self, old: Client | None) -> None:
        if old is not None:
            await self._disconnect_quietly(old)
        delays = backoff_delays()
        try:
            while not self._closing:
                await asyncio.sleep(next(delays))
                client: Client | None = None
                try:
                    async with asyncio.timeout(self.timeout * 5):
                        fresh, node_ids = await self._open_client()
                    client = fresh
                    for sub in list(self._ua_subs):
                        async with asyncio.timeout(self.timeout * 5):
                            await sub._attach(fresh, node_ids)
                except (Exception, asyncio.CancelledError) as exc:
                    # any failure: wait and try a fresh client again; a CancelledError is
                    # this task's end only when the task was cancelled (a close), not when
                    # asyncua cancelled a request of the half-open client
                    if isinstance(exc, asyncio.CancelledError) and cancel_asked_since(0):
                        raise
                    if client is not None:
                        await self._disconnect_quietly(client)
                    self._fail(f"reconnect failed: {str(exc) or type(exc).__name__}")
                    continue
                self._client = client
                self._node_ids = node_ids
                self._start_keepalive(client)
                self._vtypes.clear()
                self._health.connected = True
                self._health.reconnecting = False
                self._health.reconnects += 1
                log.info("%s: reconnected to %s", self.tag_name, self.endpoint.url)
                return
        finally:
            self._reconnect_task = None

    async def _call(self, op: Callable[[Client], Awaitable[T]]) -> T:
        client = self._client
        if client is None:
            why = "reconnecting" if self._reconnect_task is not None else "not connected"
            raise Disconnected(f"{why} to {self.endpoint.url}", module=self.tag_name)
        try:
            return await op(client)
        except UaStatusCodeError as exc:
            name = _status_name(exc.code)
            raise DeviceRejected(f"request refused ({name})", code=name,
                                 module=self.tag_name) from None
        except (ConnectionError, OSError) as exc:
            self._lost(exc)
            raise Disconnected(f"link to {self.endpoint.url} lost: {exc}",
                               module=self.tag_name) from None
        except UaError as exc:  # a reply that does not parse: the stream is no longer framed
            self._lost(exc)
            raise BadReply(f"unreadable reply from {self.endpoint.url}: {exc}",
                           module=self.tag_name) from None

    # -- read / write ---------------------------------------------------------------------
    async def _read(self, infos: Sequence[TagInfo]) -> dict[str, TagValue]:
        params = ua.ReadParameters()
        for info in infos:
            rv = ua.ReadValueId()
            rv.NodeId = self._node_ids[info.name]
            rv.AttributeId = AttributeIds.Value
            params.NodesToRead.append(rv)

        async def op(client: Client) -> list[ua.DataValue]:
            return await client.uaclient.read(params)

        dvs = await self._call(op)
        unknown = [i.name for i, dv in zip(infos, dvs, strict=True)
                   if dv.StatusCode is not None and dv.StatusCode.value
                   == StatusCodes.BadNodeIdUnknown]
        if unknown:
            raise DeviceRejected(
                f"the server has no node for {', '.join(unknown)}: check the node ids "
                "(opcua node_id_template or bindings) against the server's address space",
                code="BadNodeIdUnknown", module=self.tag_name)
        return {i.name: _tag_value(dv) for i, dv in zip(infos, dvs, strict=True)}

    async def variant_type(self, tag: str) -> ua.VariantType:
        """The variant type of a tag's node, from its DataType (read once, then cached)."""
        if tag in self._vtypes:
            return self._vtypes[tag]
        nodeid = self._node_ids[self.info(tag).name]

        async def op(client: Client) -> ua.VariantType:
            node = client.get_node(nodeid)
            dtype = await node.read_data_type()
            if dtype.NamespaceIndex == 0 and isinstance(dtype.Identifier, int) and \
                    1 <= dtype.Identifier <= 25:
                return ua.VariantType(dtype.Identifier)
            return await data_type_to_variant_type(client.get_node(dtype))

        vtype = await self._call(op)
        self._vtypes[tag] = vtype
        return vtype

    async def _write(self, info: TagInfo, value: Any) -> None:
        vtype = await self.variant_type(info.name)
        try:
            wire = _to_wire(value, vtype)
        except ValueError as exc:
            raise OutOfRange(str(exc), tag=info.name, module=self.tag_name) from None
        wv = ua.WriteValue()
        wv.NodeId = self._node_ids[info.name]
        wv.AttributeId = AttributeIds.Value
        wv.Value = ua.DataValue(ua.Variant(wire, vtype))
        params = ua.WriteParameters()
        params.NodesToWrite.append(wv)

        async def op(client: Client) -> list[ua.StatusCode]:
            return await client.uaclient.write(params)

        results = await self._call(op)
        status = results[0]
        if status.value == StatusCodes.BadOutOfRange:
            # the PEA refused the value as outside its range: nothing changed, never retried
            raise ValueRefused(refusal(self.tag_name, info, value, "OPC UA BadOutOfRange"),
                               code=status.name, tag=info.name, module=self.tag_name)
        if not status.is_good():
            raise DeviceRejected(f"write of {value!r} refused: {status.name} ({status.doc})",
                                 code=status.name, tag=info.name, module=self.tag_name)

    async def subscribe(self, tags: Sequence[str], interval: float, callback: Callback, *,
                        sampling_interval: float | None = None, queue_size: int = 1,
                        buffer: int = 10000) -> OpcUaSubscription:
        """Server-side monitoring of ``tags``, published every ``interval`` seconds.

        ``sampling_interval`` (default: the endpoint's) and ``queue_size`` go to the server
        as requested; what it grants is in ``subscription.report`` and ``health()``, and a
        revision is logged as a warning. ``callback`` runs in a consumer task, never in
        asyncua's publish loop; up to ``buffer`` notifications wait for it (then the oldest
        are dropped and counted).
        """
        infos = [self.info(t) for t in tags]
        if not infos:
            raise ValueError("subscribe needs at least one tag")
        if interval <= 0:
            raise ValueError("interval must be positive (seconds)")
        sampling = self.endpoint.sampling_interval if sampling_interval is None \
            else sampling_interval
        sub = OpcUaSubscription(self, [i.name for i in infos], interval, float(sampling),
                                queue_size, callback, buffer)
        try:
            await self._timed(self._call(lambda c: sub._attach(c, self._node_ids)))
        except BaseException:
            await sub.cancel()
            raise
        self._ua_subs.add(sub)
        self._health.subscriptions.append(sub.report)
        return sub

    def health(self) -> OpcUaHealth:
        return self._health

    def _warn(self, message: str) -> None:
        log.warning("%s: %s", self.tag_name, message)
        self._health.warnings.append(message)
        del self._health.warnings[:-20]

def _to_wire(value: Any, vtype: ua.VariantType) -> Any:
    """Convert a checked value to the Python type asyncua encodes as ``vtype``."""
    if vtype is ua.VariantType.Boolean:
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"{value!r} is not a Boolean")
    if vtype in _INT_RANGES:
        if isinstance(value, bool):
            number = int(value)
        elif isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        else:
            raise ValueError(f"{value!r} is not a whole number (node type {vtype.name})")
        lo, hi = _INT_RANGES[vtype]
        if not lo <= number <= hi:
            raise ValueError(f"{number} is outside the {vtype.name} range [{lo}, {hi}]")
        return number
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{value!r} is not a number (node type {vtype.name})")
        return float(value)
    if vtype is ua.VariantType.String:
        return str(value)
    return value


def _load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def _first_der(data: bytes) -> bytes:
    """The leaf of a DER certificate chain (servers may send the chain concatenated)."""
    if len(data) > 4 and data[0] == 0x30 and data[1] == 0x82:
        return data[: int.from_bytes(data[2:4], "big") + 4]
    return data


def san_uris(cert: x509.Certificate) -> list[str]:
    """The URIs in a certificate's subjectAltName (an OPC UA application URI is the first).

    Public because the OPC UA simulator checks its server certificates with the same rule.
    """
    with contextlib.suppress(x509.ExtensionNotFound):
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))
    return []


def _trusted_fingerprints(trust_list: Iterable[str]) -> set[str]:
    """SHA-256 fingerprints of the certificates in the trust list (files or folders)."""
    out: set[str] = set()
    for entry in trust_list:
        p = Path(entry)
        files = sorted(x for x in p.iterdir() if x.is_file()) if p.is_dir() else [p]
        for f in files:
            if not f.is_file():
                raise SecurityConfigError(f"trust_list entry {f} does not exist")
            try:
                out.add(sha256(_load_cert(f).public_bytes(Encoding.DER)).hexdigest())
            except ValueError:
                if p.is_dir():
                    continue  # not a certificate (a CRL, a README): skip in folders
                raise SecurityConfigError(f"trust_list entry {f} is not a certificate") from None
    return out


__all__ = [
    "MAX_BACKOFF",
    "AuthenticationFailed",
    "NamespaceNotFound",
    "OpcUaDriver",
    "OpcUaHealth",
    "OpcUaSubscription",
    "SecurityConfigError",
    "SubscriptionReport",
    "UntrustedServer",
    "backoff_delays",
    "san_uris",
]
