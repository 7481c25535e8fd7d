"""FrameStore: videos as chunked uint8 zarr v3 arrays, on a local path or any fsspec URL.

Layout of a store (a zarr v3 group; every name below is relative to its root):

    zarr.json                          group metadata; attributes {"framecast_format": 1, ...}
    videos/<id>/<gen>/frames           uint8 (T, H, W, C), chunks (chunk_frames, H, W, C), zstd
    videos/<id>/<gen>/keypoints        float32 (T, K, 2), same time chunking (optional)
    catalog/<id>@<gen>.json            the commit marker: attributes and where the arrays live
    catalog.json                       consolidated markers (a cache; written by one process)
    failures/<token>.json              the failure log: {"source", "error", "time"}
    reports/<stage>.json               result JSON of the stages that wrote this store

Why this shape:
- *Atomic visibility.* A video is visible only through its marker, written after its last chunk.
  A writer that dies leaves arrays nobody points to; a rerun writes a new generation `<gen>`
  and its own marker, so nothing half-written is ever read. Replacing a video (a changed source)
  writes the new generation first and then its marker: readers see the old or the new, never a
  mix. Markers are one small object each: a single PUT on object stores, tmp + rename locally.
- *Lock-free concurrent writers.* Every video has its own arrays and its own marker, so writers
  of different videos share no chunk, no shard and no file.
- *Scale.* Opening a store lists `catalog/` once (names carry the generation, so entries already
  in `catalog.json` are not re-read); reads never list. No file per frame: one per chunk.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.sync import sync

from pipeline.core.errors import FrameStoreError

FORMAT_VERSION = 1
FORMAT_KEY = "framecast_format"
DEFAULT_CHUNK_FRAMES = 32
# On object stores every chunk is a request, with a round trip and CPU (signing, checksums) on
# both ends: 4x larger chunks there (128 frames, 1.5 MB raw at 64x64 RGB: still one chunk a
# training clip reads whole).
OBJECT_STORE_CHUNK_FRAMES = 128
MAX_FRAMES = 2**31 - 1  # a video's declared length while it is written (see VideoWriter)
_VIDEO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


@dataclass(frozen=True)
class VideoEntry:
    """One committed video as recorded in the catalog."""

    video_id: str
    gen: str
    num_frames: int
    frame_shape: tuple[int, int, int]  # (H, W, C)
    num_keypoints: int | None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"videos/{self.video_id}/{self.gen}"

    def to_json(self) -> dict[str, Any]:
        return {
            "video_id": self.video_id,
            "gen": self.gen,
            "num_frames": self.num_frames,
            "frame_shape": list(self.frame_shape),
            "num_keypoints": self.num_keypoints,
            "attrs": self.attrs,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VideoEntry:
        return cls(
            video_id=d["video_id"],
            gen=d["gen"],
            num_frames=int(d["num_frames"]),
            frame_shape=tuple(d["frame_shape"]),  # type: ignore[arg-type]
            num_keypoints=d.get("num_keypoints"),
            attrs=d.get("attrs", {}),
        )


def check_video_id(video_id: str) -> str:
    """Video ids become path segments: letters, digits, '.', '_' and '-' only."""
    if not isinstance(video_id, str) or not _VIDEO_ID.match(video_id):
        raise ValueError(
            f"invalid video id {video_id!r}: use 1-200 of [A-Za-z0-9._-], starting alphanumeric"
        )
    return video_id


def _new_gen() -> str:
    # Sortable by creation time, unique across concurrent writers.
    return f"{time.time_ns():x}{secrets.token_hex(3)}"


class FrameStore:
    """A framecast frame store. Open with `FrameStore.open(url)` or `FrameStore.create(url)`."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = str(url)
        self.storage_options = dict(storage_options or {})
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        except (ImportError, ValueError) as e:  # e.g. s3:// without s3fs, an unknown protocol
            raise FrameStoreError(f"store {self.url}: {_one_line(e)}") from None
        self._local = "file" in _protocols(self.fs)
        self._entries: dict[str, VideoEntry] = {}
        self._arrays: dict[tuple[str, str], zarr.Array] = {}
        self._zstore: Any = None

    # ---------------------------------------------------------------- opening
    @classmethod
    def create(
        cls, url: str, storage_options: dict[str, Any] | None = None, exist_ok: bool = True
    ) -> FrameStore:
        """Create a new store at `url` (or open an existing framecast store when `exist_ok`)."""
        store = cls(url, storage_options)
        with store._access("creating it"):
            if store._exists():
                if not exist_ok:
                    raise FrameStoreError(f"store {url} already exists")
                return cls.open(url, storage_options)
            # Object stores: never create a bucket as a side effect (a typo would make one).
            store._check_bucket()
            store.fs.makedirs(store.root, exist_ok=True)
            zarr.open_group(
                store._zarr_store(),
                mode="w-",
                attributes={FORMAT_KEY: FORMAT_VERSION, "created": time.time()},
            )
            store.refresh()
        return store

    @classmethod
    def open(cls, url: str, storage_options: dict[str, Any] | None = None) -> FrameStore:
        """Open an existing store; a clear FrameStoreError if it is missing, foreign or too new."""
        store = cls(url, storage_options)
        with store._access("opening it"):
            store._open_checks()
        return store

    @classmethod
    def attach(cls, url: str, storage_options: dict[str, Any] | None = None) -> FrameStore:
        """Open a store that this stage's driver has just created or opened (and so checked):
        the workers of a stage skip the existence and format checks (5 requests each on an
        object store) and only read the catalog."""
        store = cls(url, storage_options)
        with store._access("opening it"):
            store.refresh()
        return store

    def _open_checks(self) -> None:
        url = self.url
        store = self
        if not store.fs.exists(store.root):
            store._check_bucket()
            raise FrameStoreError(f"store {url} does not exist")
        if not store._exists():
            raise FrameStoreError(f"{url} is not a framecast store (no zarr.json at its root)")
        try:
            meta = json.loads(store.fs.cat_file(store._key("zarr.json")))
        except (ValueError, UnicodeDecodeError) as e:
            raise FrameStoreError(f"{url} is not a framecast store (unreadable zarr.json)") from e
        version = meta.get("attributes", {}).get(FORMAT_KEY)
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "group" or version is None:
            raise FrameStoreError(f"{url} is a zarr node but not a framecast store")
        if version != FORMAT_VERSION:
            raise FrameStoreError(
                f"store {url} has format version {version}; this framecast reads version "
                f"{FORMAT_VERSION}"
            )
        store.refresh()

    @property
    def is_object_store(self) -> bool:
        """Whether the store lives in an object store (s3://, gs://, ...)."""
        return bool(set(_protocols(self.fs)) & _OBJECT_STORES)

    @property
    def default_chunk_frames(self) -> int:
        """Frames per chunk for videos written here when the caller has no preference."""
        return OBJECT_STORE_CHUNK_FRAMES if self.is_object_store else DEFAULT_CHUNK_FRAMES

    # ------------------------------------------------------- object-store errors
    def _bucket(self) -> str | None:
        """The bucket (container) of an object-store URL; None for other file systems."""
        if not self.is_object_store:
            return None
        return self.root.strip("/").split("/", 1)[0] or None

    def _check_bucket(self) -> None:
        """A FrameStoreError when the URL's bucket does not exist (object stores only)."""
        bucket = self._bucket()
        if bucket is None:
            return
        try:
            self.fs.info(bucket)
        except FileNotFoundError:
            raise FrameStoreError(
                f"store {self.url}: bucket '{bucket}' does not exist (create it first; "
                "framecast never creates buckets)"
            ) from None
        except PermissionError:
            pass  # no right to look at the bucket itself: the object operations will tell

    @contextmanager
    def _access(self, action: str) -> Iterator[None]:
        """Turn the storage's errors while `action` into one FrameStoreError naming the URL."""
        try:
            yield
        except FrameStoreError:
            raise
        except PermissionError as e:
            raise FrameStoreError(
                f"store {self.url}: access denied while {action} ({_one_line(e)}); check the "
                "credentials this process gets from its environment (AWS_ACCESS_KEY_ID / "
                "AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, ...) and the bucket's policy"
            ) from None
        except Exception as e:
            if _is_connection_error(e):
                raise FrameStoreError(
                    f"store {self.url}: cannot reach the storage while {action} "
                    f"({_one_line(e)}); check the endpoint (AWS_ENDPOINT_URL) and the network"
                ) from None
            raise

    def _exists(self) -> bool:
        return self.fs.exists(self._key("zarr.json"))

    def _key(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def _zarr_store(self) -> Any:
        if self._zstore is None:
            if self._local:
                self._zstore = zarr.storage.LocalStore(self.root)
            else:
                self._zstore = zarr.storage.FsspecStore.from_url(
                    self.url, storage_options=self.storage_options or None
                )
        return self._zstore

    # ---------------------------------------------------------------- catalog
    def refresh(self) -> None:
        """Re-read the catalog: one listing of catalog/ plus the markers not yet consolidated."""
        consolidated: dict[str, VideoEntry] = {}
        try:
            raw = self.fs.cat_file(self._key("catalog.json"))
            for d in json.loads(raw)["videos"]:
                e = VideoEntry.from_json(d)
                consolidated[e.video_id] = e
        except FileNotFoundError:
            pass
        except (ValueError, KeyError):
            consolidated = {}  # a torn cache is ignored: the markers are the truth
        newest: dict[str, str] = {}
        for name in self._list("catalog"):
            base = name.rsplit("/", 1)[-1]
            if not base.endswith(".json") or "@" not in base:
                continue
            vid, gen = base[: -len(".json")].split("@", 1)
            if gen > newest.get(vid, ""):
                newest[vid] = gen
        entries: dict[str, VideoEntry] = {}
        unread: dict[str, str] = {}  # marker key -> video id, for markers not in catalog.json
        for vid in sorted(newest):
            gen = newest[vid]
            cached = consolidated.get(vid)
            if cached is not None and cached.gen == gen:
                entries[vid] = cached
            else:
                unread[self._key(f"catalog/{vid}@{gen}.json")] = vid
        if unread:
            # One batched read: object-store file systems fetch the keys concurrently.
            found = self.fs.cat(list(unread), on_error="omit")
            for key, vid in unread.items():
                try:
                    entries[vid] = VideoEntry.from_json(json.loads(found[key]))
                except (KeyError, ValueError, TypeError):
                    continue  # a marker being replaced right now, or torn: not visible
        self._entries = dict(sorted(entries.items()))

    def _list(self, prefix: str) -> list[str]:
        try:
            return list(self.fs.ls(self._key(prefix), detail=False))
        except FileNotFoundError:
            return []

    def consolidate(self, refresh: bool = True) -> None:
        """Write catalog.json (call from one process, e.g. the driver after a run); `refresh`:
        re-read the catalog first (False: this process has just done so)."""
        if refresh:
            self.refresh()
        body = {"videos": [e.to_json() for e in self._entries.values()], "time": time.time()}
        self._put_json("catalog.json", body)

    def _put_json(self, name: str, obj: Any) -> None:
        data = json.dumps(obj, sort_keys=True).encode()
        key = self._key(name)
        if self._local:
            # Rename is atomic on a local file system; a reader never sees a torn marker.
            os.makedirs(os.path.dirname(key), exist_ok=True)
            tmp = f"{key}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, key)
        else:
            self.fs.pipe_file(key, data)  # a single PUT: atomic on object stores

    # ---------------------------------------------------------------- reading
    def video_ids(self) -> list[str]:
        """Committed videos only, in a stable (sorted) order."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._entries

    def entry(self, video_id: str) -> VideoEntry:
        try:
            return self._entries[video_id]
        except KeyError:
            raise KeyError(f"no committed video {video_id!r} in store {self.url}") from None

    def entries(self) -> list[VideoEntry]:
        return list(self._entries.values())

    def attrs(self, video_id: str) -> dict[str, Any]:
        """Per-video attributes: always "source" and "num_frames"; "fps", "label" when known."""
        e = self.entry(video_id)
        return {**e.attrs, "num_frames": e.num_frames}

    def num_frames(self, video_id: str) -> int:
        return self.entry(video_id).num_frames

    def frame_array(self, video_id: str) -> zarr.Array:
        """The (T, H, W, C) uint8 zarr array; handles are opened once and kept."""
        return self._array(video_id, "frames")

    def _array(self, video_id: str, name: str) -> zarr.Array:
        e = self.entry(video_id)
        key = (f"{e.path}/{name}", e.gen)
        arr = self._arrays.get(key)
        if arr is None:
            arr = zarr.open_array(self._zarr_store(), path=f"{e.path}/{name}", mode="r")
            self._arrays[key] = arr
        return arr

    def frames(self, video_id: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of a video: np.ndarray (T, H, W, C) uint8."""
        e = self.entry(video_id)
        stop = e.num_frames if stop is None else stop
        return np.asarray(self.frame_array(video_id)[start:stop])

    def keypoints(self, video_id: str) -> np.ndarray | None:
        """Per-frame keypoints (T, K, 2) float32, or None when the video has none."""
        e = self.entry(video_id)
        if e.num_keypoints is None:
            return None
        return np.asarray(self._array(video_id, "keypoints")[: e.num_frames])

    # ---------------------------------------------------------------- writing
    def writer(
        self,
        video_id: str,
        frame_shape: tuple[int, int, int],
        num_keypoints: int | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    ) -> VideoWriter:
        """A writer for one video; append frames in pieces, then `commit(attrs)`."""
        return VideoWriter(self, check_video_id(video_id), frame_shape, num_keypoints, chunk_frames)

    def write_video(
        self,
        video_id: str,
        frames: np.ndarray,
        attrs: dict[str, Any],
        keypoints: np.ndarray | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    ) -> VideoEntry:
        """Write and commit a whole video held in memory (T, H, W, C) uint8."""
        frames = _check_frames(frames)
        k = None if keypoints is None else int(keypoints.shape[1])
        with self.writer(video_id, frames.shape[1:], k, chunk_frames) as w:
            w.append(frames, keypoints)
            return w.commit(attrs)

    def _commit(self, entry: VideoEntry) -> None:
        self._put_json(f"catalog/{entry.video_id}@{entry.gen}.json", entry.to_json())
        old = self._entries.get(entry.video_id)
        self._entries = dict(sorted({**self._entries, entry.video_id: entry}.items()))
        # The replaced generation is garbage now that the new marker is in place (readers take
        # the newest marker of an id, so a marker this process has not seen does no harm).
        if old is not None and old.gen != entry.gen:
            try:
                self.fs.rm_file(self._key(f"catalog/{old.video_id}@{old.gen}.json"))
            except FileNotFoundError:
                pass
        self.remove_orphans(entry.video_id, keep=entry.gen)

    def remove_orphans(self, video_id: str, keep: str | None = None) -> int:
        """Delete the array generations of `video_id` other than `keep` (default: the committed
        one): attempts that died before their commit and replaced versions. Only call it while
        no writer of this video is running. Returns how many generations were removed."""
        if keep is None:
            keep = self._entries[video_id].gen if video_id in self._entries else None
        removed = 0
        for name in self._list(f"videos/{video_id}"):
            gen = name.rstrip("/").rsplit("/", 1)[-1]
            if gen != keep and gen != "zarr.json":
                self._remove_tree(f"videos/{video_id}/{gen}")
                removed += 1
        return removed

    def _remove_tree(self, path: str) -> None:
        try:
            self.fs.rm(self._key(path), recursive=True)
        except FileNotFoundError:
            pass

    def record_failure(self, source: str, error: str) -> None:
        """Append to the store's failure log (one object per failure: no shared file)."""
        name = f"failures/{time.time_ns():x}-{secrets.token_hex(4)}.json"
        self._put_json(name, {"source": source, "error": error, "time": time.time()})

    def failures(self) -> list[dict[str, Any]]:
        out = []
        for name in sorted(self._list("failures")):
            try:
                out.append(json.loads(self.fs.cat_file(name)))
            except (FileNotFoundError, ValueError):
                continue
        return out

    def write_report(self, stage: str, result: dict[str, Any]) -> str:
        """Keep a stage's result JSON inside the store (`reports/<stage>.json`); returns its URL."""
        self._put_json(f"reports/{stage}.json", result)
        return self._key(f"reports/{stage}.json")

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        """What `framecast info` prints."""
        entries = self.entries()
        shapes: dict[str, int] = {}
        labels: dict[str, int] = {}
        splits: dict[str, int] = {}
        for e in entries:
            shapes["x".join(map(str, e.frame_shape))] = (
                shapes.get("x".join(map(str, e.frame_shape)), 0) + 1
            )
            if e.attrs.get("label") is not None:
                lab = str(e.attrs["label"])
                labels[lab] = labels.get(lab, 0) + 1
            if e.attrs.get("split") is not None:
                splits[str(e.attrs["split"])] = splits.get(str(e.attrs["split"]), 0) + 1
        try:
            size = int(self.fs.du(self.root, total=True))
        except (FileNotFoundError, NotImplementedError):
            size = None
        return {
            "store": self.url,
            "format": FORMAT_VERSION,
            "videos": len(entries),
            "frames": int(sum(e.num_frames for e in entries)),
            "frame_shapes": shapes,
            "with_keypoints": sum(e.num_keypoints is not None for e in entries),
            "labels": labels,
            "splits": splits,
            "size_bytes": size,
            "failures": len(self._list("failures")),
        }


class VideoWriter:
    """Writes one video in time-chunks without holding it in memory; nothing is visible until
    `commit`. Used as a context manager: leaving without a commit removes what was written."""

    def __init__(
        self,
        store: FrameStore,
        video_id: str,
        frame_shape: tuple[int, int, int],
        num_keypoints: int | None,
        chunk_frames: int,
    ) -> None:
        if len(frame_shape) != 3 or min(frame_shape) < 1:
            raise ValueError(
                f"frame shape must be (H, W, C) with positive sizes, got {frame_shape}"
            )
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.store = store
        self.video_id = video_id
        self.frame_shape = tuple(int(x) for x in frame_shape)
        self.num_keypoints = num_keypoints
        self.chunk_frames = int(chunk_frames)
        self.gen = _new_gen()
        self.path = f"videos/{video_id}/{self.gen}"
        self.num_frames = 0
        self._pending: list[np.ndarray] = []
        self._pending_kp: list[np.ndarray] = []
        self._done = False
        zs = store._zarr_store()
        h, w, c = self.frame_shape
        # The arrays are declared MAX_FRAMES long and cut to their length once, at commit:
        # appending would rewrite the array's metadata with every chunk (a second PUT per chunk
        # on an object store). Nothing reads them before the commit marker, so their metadata
        # is first stored then (see _create_array).
        self._frames = _create_array(
            zs,
            f"{self.path}/frames",
            shape=(MAX_FRAMES, h, w, c),
            chunks=(self.chunk_frames, h, w, c),
            dtype="uint8",
            compressors=ZstdCodec(level=3),
            fill_value=0,
        )
        self._kp = None
        if num_keypoints is not None:
            self._kp = _create_array(
                zs,
                f"{self.path}/keypoints",
                shape=(MAX_FRAMES, num_keypoints, 2),
                chunks=(self.chunk_frames, num_keypoints, 2),
                dtype="float32",
                compressors=ZstdCodec(level=3),
                fill_value=float("nan"),
            )

    def append(self, frames: np.ndarray, keypoints: np.ndarray | None = None) -> None:
        """Add frames (t, H, W, C) uint8 (and their keypoints (t, K, 2) when the video has them)."""
        frames = _check_frames(frames)
        if frames.shape[1:] != self.frame_shape:
            raise ValueError(
                f"video {self.video_id}: frames of shape {frames.shape[1:]} do not match "
                f"{self.frame_shape}"
            )
        if (keypoints is None) != (self._kp is None):
            raise ValueError(f"video {self.video_id}: keypoints must be given iff declared")
        if keypoints is not None:
            keypoints = np.asarray(keypoints, dtype=np.float32)
            if keypoints.shape != (len(frames), self.num_keypoints, 2):
                raise ValueError(
                    f"video {self.video_id}: keypoints shape {keypoints.shape}, expected "
                    f"{(len(frames), self.num_keypoints, 2)}"
                )
            self._pending_kp.append(keypoints)
        self._pending.append(frames)
        if sum(len(f) for f in self._pending) >= self.chunk_frames:
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        # Write whole chunks only (no read-modify-write of a chunk), the remainder at the end.
        if not self._pending:
            return
        block = np.concatenate(self._pending)
        kp = np.concatenate(self._pending_kp) if self._pending_kp else None
        n = len(block) if final else (len(block) // self.chunk_frames) * self.chunk_frames
        if n:
            t = self.num_frames
            if t + n > MAX_FRAMES:
                raise ValueError(f"video {self.video_id}: more than {MAX_FRAMES} frames")
            self._frames[t : t + n] = block[:n]
            if kp is not None and self._kp is not None:
                self._kp[t : t + n] = kp[:n]
            self.num_frames += n
        self._pending = [block[n:]] if n < len(block) else []
        self._pending_kp = [kp[n:]] if kp is not None and n < len(block) else []

    def commit(self, attrs: dict[str, Any]) -> VideoEntry:
        """Flush and make the video visible atomically. `attrs` must be JSON-serialisable."""
        if self._done:
            raise RuntimeError(f"video {self.video_id} already committed or aborted")
        attrs = {k: v for k, v in attrs.items() if k != "num_frames"}
        json.dumps(attrs)  # fail before anything becomes visible
        total = self.num_frames + sum(len(f) for f in self._pending)
        if total == 0:
            raise ValueError(f"video {self.video_id}: no frames to commit")
        if total > MAX_FRAMES:
            raise ValueError(f"video {self.video_id}: more than {MAX_FRAMES} frames")
        # Cut the arrays to their true length first (no chunk lies beyond it: none to delete),
        # then write the remainder: it is now the array's last, boundary chunk, which zarr writes
        # whole; written into the long array it would be a partial chunk, read before written.
        for array in (self._frames, self._kp):
            if array is not None:
                shape = (total, *array.shape[1:])
                sync(array.async_array.resize(shape, delete_outside_chunks=False))
        self._flush(final=True)
        entry = VideoEntry(
            self.video_id, self.gen, self.num_frames, self.frame_shape, self.num_keypoints, attrs
        )
        self.store._commit(entry)
        self._done = True
        return entry

    def abort(self) -> None:
        """Drop what was written; the store is as if this writer never ran."""
        if not self._done:
            self._done = True
            self.store._remove_tree(self.path)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _create_array(zs: Any, path: str, **spec: Any) -> zarr.Array:
    """A new array at `path` without a request: its metadata is rendered in memory, and its
    document (zarr.json) is first written by the resize at commit, with the true length. Chunks
    need no metadata in the store to be written, and nothing reads the array before the commit
    marker. (`zarr.create_array` on the store itself lists the path for existing keys and
    checks or writes every parent group first: about 25 requests per video on an object store,
    against 5 chunk writes for 150 frames. The path is a fresh generation's, so nothing can
    exist there, and readers open arrays by path: no parent group is needed.)"""
    from zarr.core.array import AsyncArray

    draft = zarr.create_array(zarr.storage.MemoryStore(), name="a", **spec)
    target = zarr.storage.StorePath(zs, path)
    return zarr.Array(AsyncArray(draft.metadata, target, draft.async_array.config))


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(
            f"frames must be uint8 (T, H, W, C), got {frames.dtype} with shape {frames.shape}"
        )
    return frames


# fsspec protocols whose first path segment is a bucket (container) that must exist
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "oci", "r2"}


def _is_connection_error(e: BaseException) -> bool:
    # botocore's EndpointConnectionError, aiohttp's ClientConnectorError, OSError's own ...
    return isinstance(e, ConnectionError) or any(
        "Connect" in c.__name__ or "Timeout" in c.__name__ for c in type(e).__mro__
    )


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300] + ("..." if len(text) > 300 else "")


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)
