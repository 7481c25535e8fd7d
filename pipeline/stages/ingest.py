"""`framecast ingest`: decode videos with PyAV on a pool of Ray actors into a frame store.

    framecast ingest source=SRC store=URL [ingest.size=64 ingest.fps=10 ...]

SRC is a folder (searched recursively for video files), a glob ('videos/**/*.mp4'), a text file
listing paths or URLs (one a line, '#' comments), a single file, a URL (http(s), rtsp, ...) or a
device / filter source (/dev/video0, "lavfi:testsrc2=d=5"). Folders and globs may be fsspec URLs.

How it works
- The driver resolves SRC to sources, gives each a stable video id (from its path relative to
  SRC), and skips sources committed earlier with the same fingerprint (a local file whose size
  and mtime are unchanged is skipped on a stat; otherwise its content fingerprint decides).
- A pool of actors (`ingest.workers`, default: the CPUs Ray sees) takes one video at a time.
  An actor decodes with `pipeline.io.video.Decoder` and hands whole time-chunks to a background
  thread that compresses and writes them (`FrameStore.writer`): memory stays bounded by a few
  chunks whatever the video's length. The video becomes visible only when its marker is
  committed after the last chunk.
- Faults: an actor killed mid-video is restarted by Ray and the video retried from the start
  under a new generation (`ingest.retries`); a killed driver is finished by running the same
  command again. Half-written generations are invisible, and removed at the end of the run.
- Every source that cannot be ingested gets a one-line reason in the report and in the store's
  failure log; a stream that breaks part-way keeps its frames and is marked partial.

Result (report JSON, also `reports/ingest.json` in the store):
    {"ok": [{"source", "video_id", "num_frames", "partial"}], "failed": [{"source", "error"}],
     "skipped": [{"source", "video_id", "reason"}], "partial": [...], "frames": N,
     "seconds": S, ...}
Exit status: 0 all ingested (or skipped), 3 some sources failed, 2 usage error.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import os
import queue
import re
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from pipeline.core.config import UsageError, required, typed, write_result
from pipeline.core.errors import PartialFailure
from pipeline.core.progress import console, progress, summary
from pipeline.io.store import FrameStore, check_video_id
from pipeline.io.video import (
    INTERPOLATIONS,
    Decoder,
    VideoError,
    is_live,
    no_frames_reason,
    source_kind,
)
from pipeline.runtime.cluster import connect

VIDEO_EXTENSIONS = [
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".asf", ".ogv", ".3gp", ".gif", ".y4m", ".nut", ".mxf", ".vob", ".dv",
]  # fmt: skip
LIST_EXTENSIONS = (".txt", ".lst", ".list")
_HEAD_TAIL = 1 << 20  # bytes hashed at each end of a file for its fingerprint
_CLEAN_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]|_(?!_))*$")


@dataclass
class IngestConfig:
    workers: int | None = None
    threads: int = 0
    size: int | None = None
    resize: str = "crop"
    color: str = "rgb"
    interpolation: str = "area"
    fps: float | None = None
    max_frames: int | None = None
    max_seconds: float | None = None
    label_from: str = "none"
    chunk_frames: int = 0
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    force: bool = False
    retries: int = 2
    timeout: float = 30.0
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """One input: what to open, its name relative to SRC (the id comes from it), its label."""

    source: str
    rel: str
    label: str | None = None
    size: int | None = None  # bytes, local files
    mtime_ns: int | None = None  # local files

    @property
    def video_id(self) -> str:
        return video_id_for(self.rel)


# -------------------------------------------------------------------- video ids
def video_id_for(rel: str) -> str:
    """A stable, filesystem-safe, collision-free video id from a source's relative name.

    Path components are joined with '__'. A name whose components are all "clean" (ASCII
    letters, digits, '.', '-', single '_' inside) maps to itself joined that way, which is
    one-to-one because clean components never contain '__' nor start or end with '_'. Any other
    name (spaces, non-ASCII, '__', URL queries, too long) becomes a readable slug plus '___' and
    a hash of the full name: '___' never occurs in a clean id, so the two kinds cannot collide.
    """
    parts = [p for p in re.split(r"[/\\]+", rel) if p not in ("", ".")]
    if parts and all(_CLEAN_PART.match(p) for p in parts):
        vid = "__".join(parts)
        if len(vid) <= 200:
            return vid
    digest = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    slugs = []
    for p in parts:
        ascii_ = unicodedata.normalize("NFKD", p).encode("ascii", "ignore").decode()
        s = re.sub(r"[^A-Za-z0-9.-]+", "-", ascii_).strip("-.")
        if s:
            slugs.append(s)
    slug = "__".join(slugs)[: 200 - 3 - len(digest)].rstrip("_-.")
    if not slug or not slug[0].isalnum():
        slug = "v" + slug
        slug = slug[: 200 - 3 - len(digest)]
    return check_video_id(f"{slug}___{digest}")


# -------------------------------------------------------------------- sources
def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def _label(parent: str, label_from: str) -> str | None:
    if label_from != "parent":
        return None
    name = os.path.basename(parent.rstrip("/"))
    return name or None


def _local_source(path: str, rel: str, label_from: str) -> Source:
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime = None
    return Source(path, rel, _label(os.path.dirname(path), label_from), size, mtime)


def _url_rel(url: str) -> str:
    return re.sub(r"^[A-Za-z][A-Za-z0-9+.-]*://", "", url)


def _entry_source(entry: str, base: str, label_from: str) -> Source:
    """A line of a list file: a URL / device, or a path relative to the list file's folder."""

    kind = source_kind(entry)
    if kind != "file":
        rel = _url_rel(entry) if kind in ("url", "fsspec") else entry
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        return Source(entry, rel, _label(parent, label_from))
    path = os.path.join(base, os.path.expanduser(entry))
    absolute = os.path.abspath(path)
    rel = os.path.relpath(absolute, base)
    if rel.startswith(".."):
        rel = absolute.lstrip("/")
    return _local_source(absolute, rel, label_from)


def resolve_sources(source: str, extensions: list[str], label_from: str = "none") -> list[Source]:
    """The sources SRC names, in a stable order. Raises UsageError when SRC names nothing."""

    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    kind = source_kind(source)
    if kind in ("url", "device"):
        rel = _url_rel(source) if kind == "url" else source
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        return [Source(source, rel, _label(parent, label_from))]
    if kind == "fsspec":
        return _resolve_fsspec(source, exts, label_from)
    path = os.path.expanduser(source)
    if _has_glob(path):
        static = []
        for part in path.split(os.sep):
            if _has_glob(part):
                break
            static.append(part)
        base = os.sep.join(static) or "."
        matches = sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise UsageError(f"source={source}: the pattern matches no files")
        return [_local_source(p, os.path.relpath(p, base), label_from) for p in matches]
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if not f.startswith(".") and f.lower().endswith(exts):
                    p = os.path.join(root, f)
                    found.append(_local_source(p, os.path.relpath(p, path), label_from))
        if not found:
            raise UsageError(
                f"source={source}: no video files in this folder (extensions: {' '.join(exts)})"
            )
        return sorted(found, key=lambda s: s.rel)
    if not os.path.exists(path):
        raise UsageError(f"source={source}: no such file, folder, URL or device")
    if path.lower().endswith(LIST_EXTENSIONS):
        base = os.path.dirname(os.path.abspath(path))
        try:
            with open(path, encoding="utf-8") as f:
                lines = [ln.strip() for ln in f]
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"source={source}: cannot read the list file: {e}") from None
        entries = [ln for ln in lines if ln and not ln.startswith("#")]
        if not entries:
            raise UsageError(f"source={source}: the list file names no videos")
        out, seen = [], set()
        for e in entries:
            s = _entry_source(e, base, label_from)
            if s.source not in seen:
                seen.add(s.source)
                out.append(s)
        return out
    return [_local_source(path, os.path.basename(path), label_from)]


def _resolve_fsspec(source: str, exts: tuple[str, ...], label_from: str) -> list[Source]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(source)
    except (ImportError, ValueError) as e:
        raise UsageError(f"source={source}: {e}") from None

    def url(p: str) -> str:
        return fs.unstrip_protocol(p)

    if _has_glob(path):
        base = path.split("*")[0].split("?")[0].split("[")[0].rsplit("/", 1)[0]
        matches = sorted(p for p in fs.glob(path) if fs.isfile(p))
        if not matches:
            raise UsageError(f"source={source}: the pattern matches no files")
        return [
            Source(url(p), p[len(base) :].lstrip("/"), _label(p.rsplit("/", 1)[0], label_from))
            for p in matches
        ]
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if p.lower().endswith(exts))
        if not files:
            raise UsageError(f"source={source}: no video files under this URL")
        return [
            Source(url(p), p[len(path) :].lstrip("/"), _label(p.rsplit("/", 1)[0], label_from))
            for p in files
        ]
    if not fs.exists(path):
        raise UsageError(f"source={source}: no such file or folder")
    return [Source(source, path.rsplit("/", 1)[-1], _label(path.rsplit("/", 1)[0], label_from))]


# -------------------------------------------------------------------- fingerprints
def fingerprint(source: str) -> str:
    """What identifies a source's content: a local file's size and SHA-256 of its first and last
    MiB (the whole file when it is at most 2 MiB); an fsspec file's size and ETag/mtime; for
    URLs and devices the source string itself (they are re-ingested only with ingest.force)."""

    kind = source_kind(source)
    if kind == "file":
        try:
            size = os.path.getsize(source)
            h = hashlib.sha256(str(size).encode())
            with open(source, "rb") as f:
                if size <= 2 * _HEAD_TAIL:
                    h.update(f.read())
                else:
                    h.update(f.read(_HEAD_TAIL))
                    f.seek(size - _HEAD_TAIL)
                    h.update(f.read(_HEAD_TAIL))
        except OSError:
            return "missing"
        return f"sha256:{size}:{h.hexdigest()[:32]}"
    if kind == "fsspec":
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(source)
            info = fs.info(path)
        except (OSError, ValueError):
            return "missing"
        tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
        return f"info:{info.get('size')}:{tag}"
    return f"source:{source}"


# -------------------------------------------------------------------- the actor
class IngestWorker:
    """One decode worker (a Ray actor): opens the store once, ingests one video per call."""

    def __init__(self, store_url: str, opts: dict[str, Any]) -> None:
        self.store = FrameStore.attach(store_url)  # the driver created or opened it
        self.opts = opts

    def ready(self) -> int:
        return os.getpid()

    def cpu_seconds(self) -> float:
        """CPU time this worker process has used (all its threads): for benchmarks."""
        return time.process_time()

    def ingest(self, job: dict[str, Any]) -> dict[str, Any]:
        """Decode and commit one video; never raises for a bad input (status 'failed')."""

        t0 = time.perf_counter()
        src, vid = job["source"], job["video_id"]
        base = {"source": src, "video_id": vid}
        try:
            fp = fingerprint(src)
            if not self.opts["force"] and job.get("known_fingerprint") == fp:
                return {**base, "status": "skipped", "reason": "unchanged (same fingerprint)"}
            out = self._decode_and_write(job, fp)
        except VideoError as e:
            return {**base, "status": "failed", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - a bad file must not end the run
            msg = " ".join(str(e).split()) or "no message"
            return {**base, "status": "failed", "error": f"{type(e).__name__}: {msg}"}
        out.update(base, status="ok", seconds=time.perf_counter() - t0)
        return out

    def _decode_and_write(self, job: dict[str, Any], fp: str) -> dict[str, Any]:
        import av

        o = self.opts
        with Decoder(
            job["source"],
            size=o["size"],
            resize=o["resize"],
            gray=o["color"] == "gray",
            fps=o["fps"],
            max_frames=o["max_frames"],
            max_seconds=o["max_seconds"],
            threads=o["threads"],
            interpolation=o["interpolation"],
            options=o["options"],
            timeout=o["timeout"],
        ) as dec:
            with self.store.writer(job["video_id"], dec.shape, chunk_frames=o["chunk_frames"]) as w:
                _write_in_background(w, dec.batches(o["chunk_frames"]))
                if dec.emitted == 0:
                    raise VideoError(no_frames_reason(dec))
                info = dec.info
                partial = dec.partial_reason()
                attrs = {
                    "source": job["source"],
                    "rel_path": job["rel"],
                    "fingerprint": fp,
                    "source_bytes": job.get("size"),
                    "source_mtime_ns": job.get("mtime_ns"),
                    "fps": dec.out_fps,
                    "source_fps": info.fps,
                    "original_width": info.width,
                    "original_height": info.height,
                    "original_frames": None if dec.stopped_early else dec.decoded,
                    "declared_frames": info.frames,
                    "stored_frames": dec.emitted,
                    "duration": info.duration,
                    "codec": info.codec,
                    "container": info.format,
                    "pix_fmt": info.pix_fmt,
                    "partial": partial is not None,
                    "partial_reason": partial,
                    "decode_errors": dec.decode_errors,
                    "stopped_early": dec.stopped_early,
                    "settings": _settings(o),
                    "decoder": f"PyAV {av.__version__}",
                }
                if job.get("label") is not None:
                    attrs["label"] = job["label"]
                w.commit(attrs)
        return {"num_frames": dec.emitted, "decoded": dec.decoded, "partial": partial}


def _write_in_background(writer: Any, batches: Any, depth: int = 2) -> None:
    """Decode in this thread while another compresses and writes the previous chunks (zstd and
    file I/O release the GIL). At most `depth` chunks wait: memory stays bounded."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []

    def drain() -> None:
        while True:
            item = q.get()
            if item is None:
                return
            if not failure:
                try:
                    writer.append(item)
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller
                    failure.append(e)

    t = threading.Thread(target=drain, name="chunk-writer", daemon=True)
    t.start()
    try:
        for batch in batches:
            if failure:
                break
            q.put(batch)
    finally:
        q.put(None)
        t.join()
    if failure:
        raise failure[0]


# -------------------------------------------------------------------- the driver
def options_from(c: IngestConfig) -> dict[str, Any]:
    if c.resize not in ("crop", "pad", "stretch"):
        raise UsageError(f"ingest.resize={c.resize}: use crop, pad or stretch")
    if c.color not in ("rgb", "gray"):
        raise UsageError(f"ingest.color={c.color}: use rgb or gray")
    if c.label_from not in ("none", "parent"):
        raise UsageError(f"ingest.label_from={c.label_from}: use none or parent")

    if c.interpolation not in INTERPOLATIONS:
        raise UsageError(f"ingest.interpolation={c.interpolation}: use {', '.join(INTERPOLATIONS)}")
    for key, value, low in (
        ("size", c.size, 1),
        ("max_frames", c.max_frames, 1),
        ("chunk_frames", c.chunk_frames, 0),
        ("workers", c.workers, 1),
        ("threads", c.threads, 0),
        ("retries", c.retries, 0),
    ):
        if value is not None and value < low:
            raise UsageError(f"ingest.{key}={value}: must be >= {low}")
    for key, fvalue in (("fps", c.fps), ("max_seconds", c.max_seconds), ("timeout", c.timeout)):
        if fvalue is not None and fvalue <= 0:
            raise UsageError(f"ingest.{key}={fvalue}: must be > 0")
    return {
        "size": c.size,
        "resize": c.resize,
        "color": c.color,
        "interpolation": c.interpolation,
        "fps": c.fps,
        "max_frames": c.max_frames,
        "max_seconds": c.max_seconds,
        "threads": c.threads,
        "chunk_frames": c.chunk_frames,
        "force": c.force,
        "timeout": c.timeout,
        "options": dict(c.options),
    }


def plan_jobs(
    sources: list[Source], store: FrameStore, opts: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict], list[dict]]:
    """(jobs for the actors, largest file first; skipped; failed) for these sources.

    A local file committed earlier with the same path, size, mtime and settings is skipped
    here on a stat; other committed sources carry their fingerprint to the actor, which skips
    them when the content is unchanged. Two sources with one video id: the second fails.
    """
    jobs: list[dict[str, Any]] = []
    skipped: list[dict] = []
    failed: list[dict] = []
    owner: dict[str, str] = {}
    settings = _settings(opts)
    for s in sources:
        vid = s.video_id
        if vid in owner:
            failed.append(
                {"source": s.source, "error": f"video id {vid} is already used by {owner[vid]}"}
            )
            continue
        owner[vid] = s.source
        known = store.entry(vid).attrs if vid in store else None
        if known is not None and (opts["force"] or known.get("settings") != settings):
            known = None
        if (
            known is not None
            and s.size is not None
            and known.get("source") == s.source
            and known.get("source_bytes") == s.size
            and known.get("source_mtime_ns") == s.mtime_ns
        ):
            skipped.append({"source": s.source, "video_id": vid, "reason": "unchanged (stat)"})
            continue
        jobs.append(
            {
                "source": s.source,
                "rel": s.rel,
                "video_id": vid,
                "label": s.label,
                "size": s.size,
                "mtime_ns": s.mtime_ns,
                "known_fingerprint": None if known is None else known.get("fingerprint"),
            }
        )
    jobs.sort(key=lambda j: -(j["size"] or 0))
    return jobs, skipped, failed


def _settings(opts: dict[str, Any]) -> dict[str, Any]:
    """The options that change stored frames: a video ingested with others is redone."""
    keys = ("size", "resize", "color", "interpolation", "fps", "max_frames", "max_seconds")
    out = {k: opts[k] for k in keys}
    if not out["size"]:
        out["resize"] = None
    return out


class WorkerPool:
    """Actors that each take the next video when free (two calls queued per actor, so an actor
    never waits for the driver). Videos are handed out largest first, for an even finish."""

    def __init__(self, store_url: str, opts: dict[str, Any], workers: int, retries: int) -> None:
        import ray

        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        num_cpus = min(1.0, cpus / workers)
        actor_cls = ray.remote(IngestWorker).options(
            num_cpus=num_cpus, max_restarts=-1, max_task_retries=retries
        )
        self.actors = [actor_cls.remote(store_url, opts) for _ in range(workers)]
        try:
            ray.get([a.ready.remote() for a in self.actors], timeout=300)
        except ray.exceptions.RayActorError as e:
            raise UsageError(f"ingest workers could not start: {_one_line(e)}") from None

    def run(self, jobs: list[dict[str, Any]], on_result: Any) -> None:
        import ray

        pending = list(reversed(jobs))  # pop() from the end: the first job goes first
        inflight: dict[Any, tuple[int, dict[str, Any]]] = {}
        load = [0] * len(self.actors)

        def fill(i: int) -> None:
            # Two calls queued per actor hide the driver's round trip; near the end only one,
            # so that no video waits behind another while an actor is idle.
            depth = 2 if len(pending) > 2 * len(self.actors) else 1
            while pending and load[i] < depth:
                job = pending.pop()
                inflight[self.actors[i].ingest.remote(job)] = (i, job)
                load[i] += 1

        for i in range(len(self.actors)):
            fill(i)
        while inflight:
            done, _ = ray.wait(list(inflight), num_returns=1)
            ref = done[0]
            i, job = inflight.pop(ref)
            load[i] -= 1
            fill(i)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as e:
                result = {
                    "source": job["source"],
                    "video_id": job["video_id"],
                    "status": "failed",
                    "error": f"the worker process died on this video: {_one_line(e)}",
                }
            on_result(result)

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)


def _pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys}


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _remove_orphans(store: FrameStore, video_ids: list[str]) -> int:
    """Delete generations of these videos that no marker points to (writers that died); the
    caller has refreshed the store's catalog."""
    return sum(store.remove_orphans(vid) for vid in video_ids)


def run(cfg: DictConfig) -> dict:

    c = typed(cfg.get("ingest"), IngestConfig, "ingest")
    opts = options_from(c)
    src = str(required(cfg, "source"))
    url = str(required(cfg, "store"))
    sources = resolve_sources(src, c.extensions, c.label_from)
    for s in sources:
        if is_live(s.source) and c.max_frames is None and c.max_seconds is None:
            raise UsageError(
                f"source {s.source} is live (no end): set ingest.max_frames or ingest.max_seconds"
            )
    store = FrameStore.create(url)
    if not opts["chunk_frames"]:  # auto: the store's kind decides
        opts["chunk_frames"] = store.default_chunk_frames
    t0 = time.perf_counter()

    ok: list[dict] = []
    jobs, skipped, failed = plan_jobs(sources, store, opts)
    for f in failed:
        store.record_failure(f["source"], f["error"])

    partial: list[dict] = []
    frames = 0
    workers = 0
    startup = 0.0  # starting the worker actors (processes, imports, store clients)
    if jobs:
        started = connect(cfg)  # cluster.address, $RAY_ADDRESS or a local instance
        import ray

        pool = None
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            workers = min(c.workers or max(1, cpus), len(jobs))
            if c.threads == 0:  # auto: share the CPUs between the actors
                opts["threads"] = max(1, cpus // workers)
            t_pool = time.perf_counter()
            pool = WorkerPool(url, opts, workers, c.retries)
            startup = time.perf_counter() - t_pool
            with progress("ingest", len(sources), "videos") as bar:
                bar.advance(len(sources) - len(jobs))

                def on_result(r: dict[str, Any]) -> None:
                    nonlocal frames
                    st = r["status"]
                    if st == "ok":
                        frames += r["num_frames"]
                        row = {k: r[k] for k in ("source", "video_id", "num_frames", "partial")}
                        ok.append(row)
                        if r["partial"]:
                            partial.append(
                                {**_pick(r, "source", "video_id"), "reason": r["partial"]}
                            )
                    elif st == "skipped":
                        skipped.append({k: r[k] for k in ("source", "video_id", "reason")})
                    else:
                        failed.append({"source": r["source"], "error": r["error"]})
                        store.record_failure(r["source"], r["error"])
                    bar.advance(1, fps=frames / max(bar.seconds, 1e-9), failed=len(failed))

                pool.run(jobs, on_result)
        finally:
            if pool is not None:
                pool.close()
            if started:
                ray.shutdown()
        # A commit already removed its video's other generations; what a worker that failed
        # or died left behind is removed here.
        store.refresh()
        done = {r["video_id"] for r in ok} | {r["video_id"] for r in skipped}
        _remove_orphans(store, [j["video_id"] for j in jobs if j["video_id"] not in done])
    store.consolidate(refresh=not jobs)
    seconds = time.perf_counter() - t0
    by_source = {s.source: i for i, s in enumerate(sources)}
    for lst in (ok, failed, skipped, partial):
        lst.sort(key=lambda r: by_source.get(r["source"], 0))
    result = {
        "stage": "ingest",
        "source": src,
        "store": url,
        "ok": ok,
        "failed": failed,
        "skipped": skipped,
        "partial": partial,
        "videos": len(sources),
        "frames": frames,
        "seconds": round(seconds, 3),
        "frames_per_s": round(frames / max(seconds, 1e-9), 1),
        "startup_seconds": round(startup, 3),
        # The rate once the workers are up: what a long ingest approaches (the start-up is
        # paid once per run).
        "frames_per_s_after_startup": round(frames / max(seconds - startup, 1e-9), 1),
        "workers": workers,
        "options": {k: v for k, v in opts.items() if k != "force"},
    }
    store.write_report("ingest", result)
    write_result(cfg, result, None)
    summary(
        f"ingest {src} -> {url}",
        {
            "videos": len(sources),
            "ingested": len(ok),
            "partial": len(partial),
            "skipped": len(skipped),
            "failed": len(failed),
            "frames": frames,
            "seconds": round(seconds, 2),
            "frames/s": round(frames / max(seconds, 1e-9), 1),
            "workers": workers,
        },
    )
    if failed:
        for f in failed[:20]:
            console.print(f"failed {f['source']}: {f['error']}", markup=False, highlight=False)
        if len(failed) > 20:
            console.print(f"... and {len(failed) - 20} more (see the report)")
        raise PartialFailure(f"{len(failed)} of {len(sources)} sources failed (see the report)")
    return result


__all__ = [
    "IngestConfig",
    "IngestWorker",
    "Source",
    "WorkerPool",
    "fingerprint",
    "options_from",
    "plan_jobs",
    "resolve_sources",
    "run",
    "video_id_for",
]
