"""A small stdlib client of `framecast serve`: `Client` (HTTP, keep-alive) and `RemoteSession`
(a live stream session over a WebSocket or POSTs), used by `framecast stream stream.server=URL`,
the serve benchmark and the tests."""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np

from pipeline.core.errors import ServeClientError


class Client:
    """A small stdlib client of `framecast serve` (one keep-alive connection per object)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        u = urlsplit(url if "://" in url else f"http://{url}")
        if u.scheme not in ("http", "https"):
            raise ValueError(f"{url}: use an http:// or https:// URL")
        self.url = url.rstrip("/")
        self.scheme, self.host, self.port = u.scheme, u.hostname or "127.0.0.1", u.port
        self.prefix = u.path.rstrip("/")
        self.token, self.timeout = token, timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            https = self.scheme == "https"
            cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body); raises ServeClientError for 4xx/5xx or no connection."""
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        url = self.prefix + path + (f"?{urlencode(query)}" if query else "")
        for attempt in (0, 1):  # a keep-alive connection the server closed: retry once
            conn = self._connection()
            try:
                conn.request(method, url, body=body, headers=h)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as e:
                self.close()
                if attempt:
                    raise ServeClientError(0, f"{self.url}: {type(e).__name__}: {e}") from None
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status >= 400:
            try:
                msg = json.loads(data)["detail"]
            except (ValueError, KeyError, TypeError):
                msg = data.decode(errors="replace")[:300]
            raise ServeClientError(resp.status, str(msg))
        return resp.status, hdrs, data

    def json(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        return json.loads(self.request(method, path, data, hdrs)[2])

    def healthz(self) -> dict[str, Any]:
        return self.json("GET", "/healthz")

    def metrics(self) -> dict[str, Any]:
        return self.json("GET", "/metrics")

    def session(self, transport: str = "ws") -> RemoteSession:
        """A new stream session; its frames go over a WebSocket ("ws") or POSTs ("http")."""
        return RemoteSession(self, self.json("POST", "/v1/sessions"), transport)

    def generate(self, **req: Any) -> list[dict[str, Any]]:
        """Generated videos: [{"index", "format", "seed", "data": bytes}, ...]."""
        _, _, body = self.request(
            "POST", "/v1/generate", json.dumps(req).encode(), {"Content-Type": "application/json"}
        )
        out = []
        for line in body.decode().splitlines():
            if line.strip():
                item = json.loads(line)
                item["data"] = base64.b64decode(item["data"])
                out.append(item)
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class RemoteSession:
    """A stream session on a `framecast serve`: the FramePredictor of `stream.server=URL`.

    `transport="ws"` (the default) keeps one WebSocket open for the session: a frame costs one
    message each way. Over "http" every push is a POST whose body Ray Serve's replica fetches
    from the proxy with a second actor call, a few milliseconds more per frame."""

    def __init__(self, client: Client, info: dict[str, Any], transport: str = "ws") -> None:
        if transport not in ("ws", "http"):
            raise ValueError(f"transport={transport!r}: use ws or http")
        self.client, self.info, self.transport = client, info, transport
        self.id = str(info["session"])
        self.frame_size, self.channels = int(info["frame_size"]), int(info["channels"])
        self._ws: Any = None
        self._ws_horizon: int | None = None

    def push(self, frame: np.ndarray, horizon: int) -> np.ndarray:
        """Send uint8 frames ((H, W, C) or (N, H, W, C)); the next `horizon` frames back."""
        a = np.ascontiguousarray(frame, dtype=np.uint8)
        if a.ndim == 3:
            a = a[None]
        if self.transport == "ws":
            return self._push_ws(a, horizon)
        _, hdrs, body = self.client.request(
            "POST",
            f"/v1/sessions/{self.id}/frames",
            a.tobytes(),
            {
                "Content-Type": "application/octet-stream",
                "X-Frame-Shape": ",".join(map(str, a.shape)),
            },
            {"horizon": horizon},
        )
        if horizon == 0:
            return np.zeros((0, *a.shape[1:]), np.uint8)
        shape = tuple(int(d) for d in hdrs["x-frame-shape"].split(","))
        return np.frombuffer(body, np.uint8).reshape(shape)

    def _ws_reply(self) -> bytes | dict[str, Any]:
        from websockets.exceptions import WebSocketException

        try:
            msg = self._ws.recv(timeout=self.client.timeout)
        except (TimeoutError, WebSocketException, OSError) as e:
            self._close_ws()
            raise ServeClientError(0, f"{self.client.url}: WebSocket: {e}") from None
        if isinstance(msg, bytes):
            return msg
        reply = json.loads(msg)
        if "error" in reply:
            raise ServeClientError(int(reply.get("status", 400)), str(reply["error"]))
        return reply

    def _push_ws(self, a: np.ndarray, horizon: int) -> np.ndarray:
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        if self._ws is None:
            scheme = "wss" if self.client.scheme == "https" else "ws"
            host = f"[{self.client.host}]" if ":" in self.client.host else self.client.host
            url = f"{scheme}://{host}:{self.client.port}{self.client.prefix}"
            url += f"/v1/sessions/{self.id}/ws?horizon={horizon}"
            auth = {"Authorization": f"Bearer {self.client.token}"} if self.client.token else {}
            try:
                self._ws = connect(
                    url,
                    additional_headers=auth,
                    max_size=None,
                    open_timeout=self.client.timeout,
                    compression=None,  # raw frames: deflate costs time and gains little
                )
            except (WebSocketException, OSError, TimeoutError) as e:
                raise ServeClientError(0, f"{url}: {type(e).__name__}: {e}") from None
            self._ws_horizon = horizon
        elif self._ws_horizon != horizon:
            self._ws.send(json.dumps({"horizon": horizon}))
            self._ws_reply()  # {"horizon": K}
            self._ws_horizon = horizon
        try:
            self._ws.send(a.tobytes())
        except (WebSocketException, OSError) as e:
            self._close_ws()
            raise ServeClientError(0, f"{self.client.url}: WebSocket: {e}") from None
        reply = self._ws_reply()
        if isinstance(reply, dict):  # horizon 0: {"frames_seen": N}
            return np.zeros((0, *a.shape[1:]), np.uint8)
        return np.frombuffer(reply, np.uint8).reshape(horizon, *a.shape[1:])

    def _close_ws(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # noqa: BLE001 - a socket already gone is closed enough
                pass
            self._ws = None

    def close(self) -> None:
        self._close_ws()
        try:
            self.client.request("DELETE", f"/v1/sessions/{self.id}")
        except ServeClientError:
            pass
        self.client.close()
