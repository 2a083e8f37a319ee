"""A requests adapter that connects to one address, checked beforehand, whatever the URL's host name resolves to
now: services/url_loader.py resolves and checks each host once, then fetches through it (imported on the first
fetch, so that an idle server does not hold requests and urllib3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

if TYPE_CHECKING:
    from services.url_loader import Deadline


def _pinned(base: type, address: str, deadline: Deadline) -> type:
    class PinnedConnection(base):
        def _new_conn(self):
            # Connect to the checked address; `self.host` (the name) still goes into Host and TLS (SNI, certificate).
            try:
                sock = create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as error:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out.") from error
            except OSError as error:
                raise NewConnectionError(self, f"Failed to establish a new connection: {error}") from error
            deadline.watch(sock)
            return sock

    return PinnedConnection


class PinnedAdapter(HTTPAdapter):
    def __init__(self, address: str, deadline: Deadline):
        self.address = address
        self.deadline = deadline
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        address, deadline = self.address, self.deadline

        class PinnedHTTPPool(HTTPConnectionPool):
            ConnectionCls = _pinned(HTTPConnection, address, deadline)

        class PinnedHTTPSPool(HTTPSConnectionPool):
            ConnectionCls = _pinned(HTTPSConnection, address, deadline)

        self.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPPool, "https": PinnedHTTPSPool}
