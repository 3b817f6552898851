"""The operator station: a browser HMI served by the control service at its root URL.

Public API::

    mount(app)      # add the station's page and assets to a control service's FastAPI app
    ASSETS          # the folder of the shipped script and style sheet

The station is a client of the service's HTTP API and event stream like any other: the page
logs in with ``POST /api/v1/token`` and sends the token with every request, so roles,
refusals and the audit trail are the service's own. It imports nothing of the service; the
composition root (``modulecontrol serve``, the test fixtures) mounts it. Everything it needs
ships in this package (no CDN, no build step). See docs/operator-station.md.
"""

from modulecontrol.station._pages import ASSETS, mount

__all__ = ["ASSETS", "mount"]
