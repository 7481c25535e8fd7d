"""The wire format of `framecast serve`: frames in (raw uint8, PNG, JPEG, base64 JSON) and
predictions out (raw, a PNG strip). Every check raises `BadInput` (a 4xx status and one line)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np

from pipeline.core.errors import BadInput


def _image_to_array(data: bytes, size: int, channels: int, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:  # Image.open reads the header only: the size is checked before any pixel is decoded
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadInput(413, f"{what}: {e}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BadInput(400, f"{what}: not a readable PNG or JPEG image ({e})") from None
    if img.format not in ("PNG", "JPEG"):
        raise BadInput(415, f"{what}: a {img.format} image; send PNG or JPEG")
    if img.size != (size, size):
        raise BadInput(
            422, f"{what}: image is {img.size[0]}x{img.size[1]}, the model takes {size}x{size}"
        )
    try:
        img.load()
    except (OSError, ValueError) as e:
        raise BadInput(400, f"{what}: not a readable PNG or JPEG image ({e})") from None
    have = {"L": 1, "1": 1, "RGB": 3}.get(img.mode)
    if have != channels:
        want = "gray (L)" if channels == 1 else "RGB"
        raise BadInput(
            422,
            f"{what}: image mode {img.mode} ({len(img.getbands())} channels), "
            f"the model takes {channels} channel{'s' if channels > 1 else ''}: {want}",
        )
    arr = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    return arr.reshape(size, size, channels)


def parse_frames(
    body: bytes, content_type: str, size: int, channels: int, shape: str | None, max_batch: int
) -> np.ndarray:
    """uint8 (N, H, W, C) frames of a request body; BadInput with a clear message otherwise."""
    ctype = (content_type or "application/octet-stream").split(";")[0].strip().lower()
    if not body:
        raise BadInput(400, "empty request body: send frames (raw uint8, PNG or JPEG)")
    frame_bytes = size * size * channels
    if ctype in ("image/png", "image/jpeg", "image/jpg"):
        frames = _image_to_array(body, size, channels, ctype)[None]
    elif ctype == "application/json":
        try:
            items = json.loads(body)["frames"]
            if not isinstance(items, list) or not items:
                raise ValueError("'frames' must be a non-empty list")
            if len(items) > max_batch:
                raise BadInput(413, f"{len(items)} frames in one request (max {max_batch})")
            decoded = [base64.b64decode(s, validate=True) for s in items]
            frames = np.stack(
                [_image_to_array(d, size, channels, f"frame {i}") for i, d in enumerate(decoded)]
            )
        except BadInput:
            raise
        except (ValueError, KeyError, TypeError) as e:
            raise BadInput(
                400, f'JSON body must be {{"frames": [base64 PNG or JPEG, ...]}} ({e})'
            ) from None
    elif ctype in ("application/octet-stream", "application/x-raw", "video/raw"):
        if shape:
            try:
                dims = tuple(int(d) for d in shape.replace("x", ",").split(","))
            except ValueError:
                raise BadInput(400, f"X-Frame-Shape {shape!r}: expected N,H,W,C") from None
            if len(dims) == 3:
                dims = (1, *dims)
            if len(dims) != 4:
                raise BadInput(400, f"X-Frame-Shape {shape!r}: expected N,H,W,C")
            if dims[1:3] != (size, size):
                raise BadInput(
                    422, f"frames are {dims[2]}x{dims[1]}, the model takes {size}x{size}"
                )
            if dims[3] != channels:
                raise BadInput(422, f"frames have {dims[3]} channels, the model takes {channels}")
            if len(body) != int(np.prod(dims)):
                raise BadInput(
                    400,
                    f"raw body of {len(body)} bytes does not match X-Frame-Shape {shape} "
                    f"({int(np.prod(dims))} bytes)",
                )
        elif len(body) % frame_bytes:
            raise BadInput(
                422,
                f"raw body of {len(body)} bytes is not a whole number of {size}x{size}x"
                f"{channels} uint8 frames ({frame_bytes} bytes each): wrong size or channels?",
            )
        n = len(body) // frame_bytes
        if n > max_batch:
            raise BadInput(413, f"{n} frames in one request (max {max_batch})")
        frames = np.frombuffer(body, np.uint8).reshape(n, size, size, channels)
    else:
        raise BadInput(
            415,
            f"unsupported Content-Type {ctype!r}: use application/octet-stream (raw uint8 "
            "frames), image/png, image/jpeg or application/json",
        )
    if len(frames) > max_batch:
        raise BadInput(413, f"{len(frames)} frames in one request (max {max_batch})")
    return frames


def encode_png(frames: np.ndarray) -> bytes:
    """One PNG of uint8 frames (K, H, W, C) side by side."""
    from PIL import Image

    strip = np.concatenate(list(frames), axis=1)
    img = Image.fromarray(strip[:, :, 0] if strip.shape[2] == 1 else strip)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
