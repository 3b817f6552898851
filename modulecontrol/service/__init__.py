"""The control service: a line operated as a long-running process with an HTTP API.

Public API::

    ControlService, ServiceOptions, ServiceError, COMMANDS     # the service
    ApiServer, BindOptions, check_bind, create_app             # its HTTP API (FastAPI, uvicorn)
    Extension                                                  # what runs beside it (Sparkplug)
    EventStream, StreamEvent                                   # the event stream
    ServiceStore, QueuedRun, Role, Scope, ROLE_SCOPES, hash_password   # queue, users, roles
    Signer, SignaturePolicy, SignRefused, SIGNED_ACTIONS, LoginLimiter  # signatures
    serve                                                      # ``modulecontrol serve``

See docs/api.md and docs/operations.md.
"""

from modulecontrol.service._api import create_app
from modulecontrol.service._auth import ROLE_SCOPES, LoginLimiter, Role, Scope, hash_password
from modulecontrol.service._server import ApiServer, BindOptions, Extension, check_bind, serve
from modulecontrol.service._service import (
    COMMANDS,
    ControlService,
    ServiceError,
    ServiceOptions,
)
from modulecontrol.service._signing import (
    SIGNED_ACTIONS,
    SignaturePolicy,
    Signer,
    SignRefused,
)
from modulecontrol.service._store import QueuedRun, ServiceStore
from modulecontrol.service._stream import EventStream, StreamEvent

__all__ = [
    "COMMANDS",
    "ROLE_SCOPES",
    "SIGNED_ACTIONS",
    "ApiServer",
    "BindOptions",
    "ControlService",
    "EventStream",
    "Extension",
    "LoginLimiter",
    "QueuedRun",
    "Role",
    "Scope",
    "ServiceError",
    "ServiceOptions",
    "ServiceStore",
    "SignRefused",
    "SignaturePolicy",
    "Signer",
    "StreamEvent",
    "check_bind",
    "create_app",
    "hash_password",
    "serve",
]
