"""A run directory on local disk or behind an fsspec URL (`s3://bucket/runs/x`).

Ray Train persists checkpoints to `run_dir` itself (pyarrow's filesystems); this module is what
framecast writes there around them (train.json, metrics.jsonl, last.pt) and how checkpoints are
read back from a URL. Local paths stay plain paths, written atomically (tmp + rename).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path


def is_url(path: str | os.PathLike[str]) -> bool:
    return "://" in str(path)


def resolve(path: str | os.PathLike[str]) -> str:
    """An absolute local path (user and relative parts expanded), or the URL unchanged."""
    if is_url(path):
        return str(path).rstrip("/")
    return str(Path(os.path.expanduser(str(path))).resolve())


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if is_url(base) else str(Path(base, *parts))


def put(local: Path, dest: str) -> None:
    """Copy a local file or folder to `dest` (a path or a URL), replacing what is there; a file
    is renamed into place locally and uploaded as one object remotely: never half-written."""
    if is_url(dest):
        import fsspec

        fs, path = fsspec.core.url_to_fs(dest)
        if local.is_dir():
            if fs.exists(path):
                fs.rm(path, recursive=True)
            fs.put(str(local), path, recursive=True)
        else:
            fs.put_file(str(local), path)
        return
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    if local.is_dir():
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(local, tmp)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        return
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.copyfile(local, tmp)
    os.replace(tmp, target)


def remove(dest: str) -> bool:
    """Delete a file or folder at a path or URL; False when there was nothing."""
    if is_url(dest):
        import fsspec

        fs, path = fsspec.core.url_to_fs(dest)
        if not fs.exists(path):
            return False
        fs.rm(path, recursive=True)
        return True
    target = Path(dest)
    if target.is_dir():
        shutil.rmtree(target)
        return True
    if target.exists():
        target.unlink()
        return True
    return False


def write_text(dest: str, text: str) -> None:
    """Write `text` to a local path (atomically) or a URL."""
    if is_url(dest):
        import fsspec

        with fsspec.open(dest, "w") as f:
            f.write(text)
        return
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, target)


def read_bytes(url: str) -> io.BytesIO | None:
    """The object at `url` in memory, or None when there is none."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    if not fs.isfile(path):
        return None
    return io.BytesIO(fs.cat_file(path))
