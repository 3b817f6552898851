"""Build an OPC UA server that publishes a module type the way an MTP PEA does.

The address space is derived from the same tag table the OPC UA driver uses
(:func:`modulecontrol.drivers.tag_table`), so a driver and a served PEA can never disagree
on node ids: every ``Assembly.Attribute`` and ``Service.Attribute`` tag becomes one variable
at its binding's node id, in the namespace registered under the binding's URI.

Variables are grouped in one folder per data assembly and per service below an object named
after the module type. Why: asyncua checks sibling browse names when adding a node, so adding
thousands of variables under one parent is quadratic; small folders keep start-up linear.

The server has no behaviour of its own: a simulator (or a test) reacts to writes through
:meth:`PeaServer.on_write` and publishes values with :meth:`PeaServer.set`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole
from asyncua.crypto.security_policies import SecurityPolicyFactory, SecurityPolicyNone
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from modulecontrol.descriptors import ModuleType, OpcUaBinding
from modulecontrol.drivers import TagInfo, tag_table
from modulecontrol.drivers.opcua import san_uris
from modulecontrol.mtpcore import (
    ANALOG_CLASSES,
    BINARY_CLASSES,
    INTEGER_ATTRIBUTES,
    STRING_CLASSES,
    carries_value,
)
from modulecontrol.simulators._aspace import init_server
from modulecontrol.simulators._ports import free_port

WriteHandler = Callable[[str, Any], Awaitable[None]]

ROLES = ("viewer", "operator", "engineer", "admin")
"""Roles of a served PEA's users, each allowed what the previous one is, and more."""

_SERVICE_CONTROL = ("Command", "Procedure", "State", "Src")


def role_allows(role: str, attribute: str) -> bool:
    """May a user of ``role`` write an attribute (``CommandExt``, ``VExt``, ...)?

    viewer: nothing. operator: service control (``Command*``, ``Procedure*``, ``State*`` and
    ``Src*`` mode requests). engineer: also every parameter (``VExt``, ``ApplyExt``, ``VOp``,
    ``VMan``, limits...). admin: everything. Why this split: running the process and changing
    how it runs are different responsibilities (IEC 62443-3-3 SR 2.1, least privilege).
    """
    if role in ("admin", "engineer"):
        return True
    if role == "operator":
        return attribute.startswith(_SERVICE_CONTROL)
    return False


@dataclass(frozen=True)
class Refusal:
    """A refused login, session or write, for the audit trail (never carries a password)."""

    user: str
    action: str
    """``login refused``, ``request refused`` or ``write refused``."""
    object: str
    """The module tag, or ``TAG.Assembly.Attribute`` of a refused write."""
    reason: str
    value: Any = None
    """The value a refused write tried to set."""


RefusalHandler = Callable[[Refusal], None]

_VALUE_ATTRS = frozenset({
    "VMin", "VMax", "VSclMin", "VSclMax", "VAHLim", "VWHLim", "VTHLim", "VTLLim", "VWLLim",
    "VALLim",
})
"""Limits and scales: published in the value's type, although they do not carry the value."""
_VALUE_PREFIXES = ("Rpm", "Pos", "PV", "SP", "MV")
_UINT32_ATTRS = INTEGER_ATTRIBUTES
_BYTE_ATTRS = frozenset({"WQC", "OSLevel"})
_STRING_ATTRS = frozenset({"TagName", "TagDescription", "VState0", "VState1"})
_DOUBLE_ATTRS = frozenset({"VFlutTi", "MonStatTi", "MonDynTi", "P", "Ti", "Td"})
_INT32_ATTRS = frozenset({"VFlutCnt"})


def attribute_variant_type(info: TagInfo) -> ua.VariantType:
    """The OPC UA type an MTP attribute is published with (2658-4 data types, simplified).

    ServiceControl numbers are DWORDs (UInt32); quality codes and OS levels are bytes; the
    value-carrying attributes follow the assembly's kind (Boolean, Int32 for DInt classes,
    String, Double otherwise); the switches (``*Op``, ``*Aut``, ``*Act``, ``*En``) are Boolean.
    """
    attr = info.attribute
    cls = info.assembly.class_
    if info.service is not None:
        if attr in _UINT32_ATTRS:
            return ua.VariantType.UInt32
        if attr in _BYTE_ATTRS:
            return ua.VariantType.Byte
        if attr in _STRING_ATTRS:
            return ua.VariantType.String
        return ua.VariantType.Boolean
    if attr in _BYTE_ATTRS:
        return ua.VariantType.Byte
    if attr in _STRING_ATTRS:
        return ua.VariantType.String
    if attr.endswith("Unit"):
        return ua.VariantType.Int32
    if attr in _DOUBLE_ATTRS:
        return ua.VariantType.Double
    if attr in _INT32_ATTRS:
        return ua.VariantType.Int32
    is_value = carries_value(cls, attr) or attr in _VALUE_ATTRS or (
        attr.startswith(_VALUE_PREFIXES) and not attr.endswith(("En", "Act", "Calc"))
    )
    if is_value:
        if cls in BINARY_CLASSES and attr not in ("VMin", "VMax"):
            return ua.VariantType.Boolean
        if cls in STRING_CLASSES:
            return ua.VariantType.String
        if cls in ("DIntView", "DIntServParam"):
            return ua.VariantType.Int32
        if cls in ANALOG_CLASSES:
            return ua.VariantType.Double
    return ua.VariantType.Boolean


def initial_value(info: TagInfo, vtype: ua.VariantType) -> Any:
    """A sensible start value: defaults and scale limits of the assembly, tag names, zeros."""
    da = info.assembly
    attr = info.attribute
    if vtype is ua.VariantType.String:
        if attr == "TagName":
            return da.name
        if attr == "TagDescription":
            return da.description
        if attr == "VState0":
            return da.state0
        if attr == "VState1":
            return da.state1
        return "" if da.default is None else str(da.default)
    if vtype is ua.VariantType.Boolean:
        if carries_value(da.class_, attr) and isinstance(da.default, bool):
            return da.default
        return False
    if vtype is ua.VariantType.Double:
        if attr in ("VMin", "VSclMin") and (da.min if attr == "VMin" else da.scale_min) is not None:
            return float(da.min if attr == "VMin" else da.scale_min)
        if attr in ("VMax", "VSclMax") and (da.max if attr == "VMax" else da.scale_max) is not None:
            return float(da.max if attr == "VMax" else da.scale_max)
        if carries_value(da.class_, attr) and isinstance(da.default, int | float):
            return float(da.default)
        return 0.0
    if carries_value(da.class_, attr) and isinstance(da.default, int):
        return int(da.default)
    limit = {"VMin": da.min, "VMax": da.max, "VSclMin": da.scale_min,
             "VSclMax": da.scale_max}.get(attr)
    if limit is not None and vtype in (ua.VariantType.Int32, ua.VariantType.Int64):
        return int(limit)  # DInt assemblies publish their limits too, not 0..0
    return 0


ANONYMOUS = "anonymous"
"""The name refusals of an anonymous session are recorded under."""


class _AnonymousViewer(User):
    """An anonymous session admitted read-only (a PEA without security). asyncua's own
    Anonymous role may not even read; the write guard knows this class is a viewer
    whatever a configured user called "anonymous" may be allowed."""


class PasswordUsers(UserManager):
    """Username/password check for a served PEA; anonymous sessions refused or read-only.

    Why a class of our own: asyncua's default user manager accepts everyone, and a test of
    "wrong password is refused" needs a server that refuses. ``anonymous_viewers`` (a PEA
    served without security, ``--insecure``) admits anonymous sessions as viewers: they may
    read, and every write they try is refused and reported like any other refusal.
    """

    def __init__(self, users: Mapping[str, str], *, on_refused: RefusalHandler | None = None,
                 subject: str = "", anonymous_viewers: bool = False) -> None:
        self._users = dict(users)
        self.on_refused = on_refused
        self.subject = subject
        self.anonymous_viewers = anonymous_viewers

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None and self.anonymous_viewers:
            return _AnonymousViewer(role=UserRole.User, name=ANONYMOUS)
        if username is None or self._users.get(username) != password:
            reason = ("anonymous session" if username is None else
                      "unknown user" if username not in self._users else "wrong password")
            if self.on_refused is not None:
                self.on_refused(Refusal(username or ANONYMOUS, "login refused",
                                        self.subject, reason))
            return None
        return User(role=UserRole.User, name=username)


class _NoServiceWithoutSecurity(PermissionRuleset):
    """Rules of a None secure channel on a secured server: discovery only.

    Why: asyncua lets a client open a None channel (needed for GetEndpoints, which is how
    clients fetch the server certificate) even when no None endpoint is offered, and then
    lets that channel create and activate a session and read and write. Sessions are
    checked by the user manager, but every request after activation passes through this
    ruleset, which refuses it.
    """

    def __init__(self, on_refused: RefusalHandler | None, subject: str) -> None:
        self.on_refused = on_refused
        self.subject = subject

    def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
        if self.on_refused is not None:
            name = getattr(user, "name", None) or "anonymous"
            self.on_refused(Refusal(name, "request refused", self.subject,
                                    "request on a channel without security"))
        return False


def _discovery_only_factory(on_refused: RefusalHandler | None,
                            subject: str) -> SecurityPolicyFactory:
    return SecurityPolicyFactory(  # type: ignore[no-untyped-call]
        SecurityPolicyNone, ua.MessageSecurityMode.None_,
                                 permission_ruleset=_NoServiceWithoutSecurity(on_refused,
                                                                              subject))


def _guard_writes(server: Server, by_node: Mapping[ua.NodeId, str], roles: Mapping[str, str],
                  on_refused: RefusalHandler | None, subject: str) -> None:
    """Refuse, node by node, the client writes a user's role does not allow.

    Server-side writes (publishing values, the PEA's own handshakes) do not go through the
    attribute service's ``write`` with a named user, so they are never refused.
    """
    service = server.iserver.attribute_service
    original = service.write

    async def write(params: ua.WriteParameters, user: User | None = None
                    ) -> list[ua.StatusCode]:
        if user is None:
            user = User(role=UserRole.Admin)
        if user.name is None:  # internal session
            return await original(params, user=user)
        # an anonymous session is a viewer whatever a configured user of that name may be
        role = "viewer" if isinstance(user, _AnonymousViewer) else roles.get(user.name, "viewer")
        allowed: list[ua.WriteValue] = []
        verdict: list[bool] = []
        for wv in params.NodesToWrite:
            tag = by_node.get(wv.NodeId)
            attribute = tag.rsplit(".", 1)[-1] if tag is not None else ""
            ok = tag is not None and role_allows(role, attribute)
            verdict.append(ok)
            if ok:
                allowed.append(wv)
            elif on_refused is not None:
                value = wv.Value.Value.Value if wv.Value and wv.Value.Value else None
                obj = f"{subject}.{tag}" if tag is not None else f"{subject}:{wv.NodeId}"
                on_refused(Refusal(user.name, "write refused", obj,
                                   f"role {role} may not write {attribute or 'this node'}",
                                   value))
        results = iter(await original(ua.WriteParameters(NodesToWrite=allowed), user=user)
                       if allowed else [])
        denied = ua.StatusCode(ua.UInt32(StatusCodes.BadUserAccessDenied))
        return [next(results) if ok else denied for ok in verdict]

    service.write = write  # type: ignore[method-assign]


@dataclass
class PeaServer:
    """A running (or ready) OPC UA server publishing one module type."""

    server: Server
    module_type: ModuleType
    url: str
    tags: dict[str, TagInfo]
    node_ids: dict[str, ua.NodeId]
    variant_types: dict[str, ua.VariantType]
    namespaces: dict[str, int]
    read_requests: int = 0
    """External Read service calls served (a batched read counts once)."""
    read_nodes: int = 0
    """Nodes read by those calls."""
    write_requests: int = 0
    _by_node: dict[ua.NodeId, str] = field(default_factory=dict)
    _handlers: list[WriteHandler] = field(default_factory=list)
    _started: bool = False

    async def set(self, tag: str, value: Any) -> None:
        """Publish a value (server side: no session, no write callbacks; subscribers see it).

        Stamped with its source time, as a PEA stamps a sample: a client can then tell how
        old a value is when it arrives (the load bench measures exactly that).
        """
        vtype = self.variant_types[tag]
        dv = ua.DataValue(ua.Variant(_coerce(value, vtype), vtype),
                          SourceTimestamp=ua.DateTime.now(UTC))
        await self.server.write_attribute_value(self.node_ids[tag], dv)

    def get(self, tag: str) -> Any:
        variant = self.server.read_attribute_value(self.node_ids[tag]).Value
        return None if variant is None else variant.Value

    def on_write(self, handler: WriteHandler) -> None:
        """Call ``handler(tag, value)`` after every successful client write (in order)."""
        self._handlers.append(handler)

    async def set_status(self, tag: str, status: int) -> None:
        """Make a node answer with a status code, e.g. ``StatusCodes.BadSensorFailure``."""
        dv = ua.DataValue(StatusCode=ua.StatusCode(ua.UInt32(status)))
        await self.server.write_attribute_value(self.node_ids[tag], dv)

    async def set_read_only(self, tag: str) -> None:
        """Refuse client writes to a node (clients get ``BadNotWritable``), e.g. while a
        parameter is locked or for tests of a driver's bad-status path."""
        level = ua.DataValue(ua.Variant(ua.AccessLevel.CurrentRead.mask, ua.VariantType.Byte))
        for attr in (AttributeIds.AccessLevel, AttributeIds.UserAccessLevel):
            await self.server.write_attribute_value(self.node_ids[tag], level, attr)

    async def start(self) -> None:
        await self.server.start()
        self._started = True
        iserver = self.server.iserver
        if (isinstance(iserver.user_manager, PasswordUsers)
                and ua.AnonymousIdentityToken not in iserver.supported_tokens):
            # The endpoints (built at start) do not offer anonymous sessions. Admitting the
            # anonymous token to the user manager afterwards means an anonymous client is
            # refused by PasswordUsers, which reports it for the audit trail; asyncua would
            # otherwise reject the token silently before any user check.
            iserver.supported_tokens = (  # type: ignore[assignment]
                *iserver.supported_tokens, ua.AnonymousIdentityToken)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.server.stop()

    async def __aenter__(self) -> PeaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _post_read(self, event: Any, _dispatcher: Any) -> None:
        if getattr(event, "is_external", True):
            self.read_requests += 1
            self.read_nodes += len(event.request_params.NodesToRead)

    async def _post_write(self, event: Any, _dispatcher: Any) -> None:
        if not getattr(event, "is_external", True):
            return
        self.write_requests += 1
        results = event.response_params or []
        for wv, status in zip(event.request_params.NodesToWrite, results, strict=False):
            tag = self._by_node.get(wv.NodeId)
            if tag is None or not status.is_good():
                continue
            for handler in self._handlers:
                await handler(tag, wv.Value.Value.Value)


async def build_pea_server(
    module_type: ModuleType,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    namespace_uri: str | None = None,
    certificate: str | Path | None = None,
    private_key: str | Path | None = None,
    users: Mapping[str, str] | None = None,
    allow_insecure: bool = True,
    name: str | None = None,
    clock: bool = False,
    roles: Mapping[str, str] | None = None,
    on_refused: RefusalHandler | None = None,
    subject: str | None = None,
    security_modes: tuple[str, ...] = ("SignAndEncrypt",),
    anonymous_viewers: bool = False,
) -> PeaServer:
    """An asyncua server with one variable per OPC UA tag of ``module_type`` (not started).

    ``namespace_uri`` replaces the type's default namespace (as an endpoint override does).
    With ``certificate`` and ``private_key`` the server offers Basic256Sha256 in the
    ``security_modes`` (default SignAndEncrypt only; ``"Sign"`` may be added) and, if
    ``allow_insecure``, also no security. With ``users`` only those username/password pairs
    may open a session; an anonymous attempt is refused and reported to ``on_refused``, or,
    with ``anonymous_viewers`` (servers without security), admitted read-only. ``clock``
    keeps asyncua's once-a-second update of ServerStatus.CurrentTime (off by default: it
    makes ``stop()`` wait up to 1 s).

    ``roles`` (user -> one of :data:`ROLES`; users not listed are viewers) restricts client
    writes per node (:func:`role_allows`); refused writes get ``BadUserAccessDenied``.
    ``on_refused`` is told of every refused login, request and write (``subject``, default
    the type name, names the module in those records). A secured server without
    ``allow_insecure`` also refuses every request on a None channel after discovery.
    """
    subject = subject or module_type.name
    if anonymous_viewers and not users:
        raise ValueError("anonymous_viewers needs users: without them nobody could write")
    if anonymous_viewers and roles is None:
        roles = dict.fromkeys(users or {}, "admin")  # anonymous writes are always refused
    if roles is not None:
        unknown = sorted({r for r in roles.values() if r not in ROLES})
        if unknown:
            raise ValueError(f"unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"a simulated PEA listens on loopback only, not {host!r}")
    tags = tag_table(module_type, "opcua")
    if not tags:
        raise ValueError(f"module type {module_type.name} has no OPC UA tags (no 'opcua:' "
                         "defaults and no opcua bindings)")
    server = Server()
    await init_server(server)  # standard nodes copied from the process's template
    server.disable_clock(not clock)
    server.set_server_name(name or f"modulecontrol PEA {module_type.name}")
    port = port or free_port(host)
    url = f"opc.tcp://{host}:{port}/modulecontrol/{module_type.name}"
    server.set_endpoint(url)
    if certificate is not None and private_key is not None:
        await server.load_certificate(str(certificate))
        await server.load_private_key(str(private_key))
        unknown_modes = sorted(set(security_modes) - {"Sign", "SignAndEncrypt"})
        if unknown_modes or not security_modes:
            raise ValueError(f"security_modes must be Sign and/or SignAndEncrypt, not "
                             f"{list(security_modes)}")
        policies = [getattr(ua.SecurityPolicyType, f"Basic256Sha256_{m}")
                    for m in ("SignAndEncrypt", "Sign") if m in security_modes]
        if allow_insecure:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        if not allow_insecure:
            server._policies.append(_discovery_only_factory(on_refused, subject))
        cert = x509.load_der_x509_certificate(_der(Path(certificate)))
        uris = san_uris(cert)
        if uris:
            await server.set_application_uri(uris[0])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if users is not None:
        server.iserver.user_manager = PasswordUsers(users, on_refused=on_refused,
                                                    subject=subject,
                                                    anonymous_viewers=anonymous_viewers)
        server.set_identity_tokens([ua.UserNameIdentityToken, ua.AnonymousIdentityToken]
                                   if anonymous_viewers else [ua.UserNameIdentityToken])

    default_uri = module_type.opcua.namespace_uri if module_type.opcua else None
    namespaces: dict[str, int] = {}
    root_ns = await _ns(server, namespaces,
                        namespace_uri or default_uri or f"urn:modulecontrol:{module_type.name}")
    await _reserve_indices(server, module_type.name, tags)
    root = await server.nodes.objects.add_object(root_ns, module_type.name)
    folders: dict[str, Any] = {}
    node_ids: dict[str, ua.NodeId] = {}
    vtypes: dict[str, ua.VariantType] = {}
    for tag, info in tags.items():
        b = info.binding
        assert isinstance(b, OpcUaBinding)
        uri = b.namespace_uri
        if namespace_uri is not None and (uri is None or uri == default_uri):
            uri = namespace_uri
        ns = await _ns(server, namespaces, uri) if uri else 0
        nodeid = node_id_for(b.identifier, ns)
        owner = tag.split(".", 1)[0]
        if owner not in folders:
            folders[owner] = await root.add_folder(ns or root.nodeid.NamespaceIndex, owner)
        vtype = attribute_variant_type(info)
        var = await folders[owner].add_variable(
            nodeid, ua.QualifiedName(info.attribute, nodeid.NamespaceIndex),
            ua.Variant(_coerce(initial_value(info, vtype), vtype), vtype),
        )
        if info.writable:
            await var.set_writable()
        node_ids[tag] = nodeid
        vtypes[tag] = vtype
    pea = PeaServer(server, module_type, url, tags, node_ids, vtypes, namespaces)
    pea._by_node = {nid: tag for tag, nid in node_ids.items()}
    if roles is not None:
        _guard_writes(server, pea._by_node, roles, on_refused, subject)
    from asyncua.common.callback import CallbackType

    server.subscribe_server_callback(CallbackType.PostRead, pea._post_read)
    server.subscribe_server_callback(CallbackType.PostWrite, pea._post_write)
    return pea


def node_id_for(identifier: str, namespace_index: int) -> ua.NodeId:
    """A binding identifier (``s=``, ``i=``, ``g=``, ``b=``, optionally with ``ns=``)."""
    if identifier.startswith("ns="):
        return ua.NodeId.from_string(identifier)
    return ua.NodeId.from_string(f"ns={namespace_index};{identifier}")


async def _reserve_indices(server: Server, name: str, tags: dict[str, TagInfo]) -> None:
    """Make namespace indices that bindings give as ``ns=N;`` (MTP 1.0 manifests write the
    index, not the URI) exist, so the served node ids are the manifest's: placeholder URIs
    fill the namespace array up to the highest index used."""
    wanted = 0
    for info in tags.values():
        b = info.binding
        if isinstance(b, OpcUaBinding) and b.identifier.startswith("ns="):
            wanted = max(wanted, ua.NodeId.from_string(b.identifier).NamespaceIndex)
    array = await server.get_namespace_array()
    for i in range(len(array), wanted + 1):
        await server.register_namespace(f"urn:modulecontrol:{name}:ns{i}")


async def _ns(server: Server, known: dict[str, int], uri: str) -> int:
    if uri not in known:
        known[uri] = await server.register_namespace(uri)
    return known[uri]


def _coerce(value: Any, vtype: ua.VariantType) -> Any:
    if vtype is ua.VariantType.Boolean:
        return bool(value)
    if vtype in (ua.VariantType.Double, ua.VariantType.Float):
        return float(value)
    if vtype is ua.VariantType.String:
        return str(value)
    return int(value)


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def make_certificate(
    directory: str | Path, name: str, application_uri: str, *, server: bool,
    host: str = "localhost", days: int = 30,
) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and its key (PEM) for tests and demos.

    The certificate names ``application_uri`` and ``host`` as subject alternative names, as
    OPC UA applications expect. Returns ``(certificate_path, key_path)``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    use = [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {"organizationName": "modulecontrol"},
        [x509.UniformResourceIdentifier(application_uri), x509.DNSName(host),
         x509.DNSName(socket.gethostname())],
        extended=use, days=days,
    )
    cert_path = directory / f"{name}.der"
    key_path = directory / f"{name}.pem"
    # The private key is the application's identity: owner only, also over an old file
    # that others could read. The certificate is public, but kept owner-only beside it, so
    # a credentials folder holds no file anyone else may read or swap.
    for path, data in ((key_path, cert_gen.dump_private_key_as_pem(key)),
                       (cert_path, cert.public_bytes(Encoding.DER))):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(fd, 0o600)
            f.write(data)
    return cert_path, key_path
