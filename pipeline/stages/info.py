"""`framecast info store=URL`: a JSON summary of a frame store on stdout."""

from __future__ import annotations

import json

from omegaconf import DictConfig

from pipeline.core.config import required, write_result
from pipeline.io.store import FrameStore


def run(cfg: DictConfig) -> dict:
    store = FrameStore.open(str(required(cfg, "store")))
    result = store.summary()
    print(json.dumps(result, indent=2, sort_keys=True))
    write_result(cfg, result, None)
    return result
