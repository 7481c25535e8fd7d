"""`from pipeline.store import FrameStore`: the documented import of the frame store API (README,
"The frame store"). The store lives in `pipeline/io/store.py`; this name stays for its users."""

from pipeline.io.store import FrameStore, FrameStoreError, VideoEntry, VideoWriter, check_video_id

__all__ = ["FrameStore", "FrameStoreError", "VideoEntry", "VideoWriter", "check_video_id"]
