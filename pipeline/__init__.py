"""framecast's orchestration package (`python -m pipeline STAGE ...`, or `framecast STAGE ...`)."""

import importlib.util
import os
import sys

# The top-level configs/ folder is the package `pipeline.configs`: an installed framecast maps it
# there (pyproject's package-dir). A source checkout that is only on PYTHONPATH (a GPU host
# without an install, a Ray working_dir) registers it here, so Hydra finds the same configs.
if importlib.util.find_spec("pipeline.configs") is None:
    _configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    if os.path.isfile(os.path.join(_configs, "__init__.py")):
        _spec = importlib.util.spec_from_file_location(
            "pipeline.configs",
            os.path.join(_configs, "__init__.py"),
            submodule_search_locations=[_configs],
        )
        if _spec is not None and _spec.loader is not None:
            configs = importlib.util.module_from_spec(_spec)
            sys.modules["pipeline.configs"] = configs
            _spec.loader.exec_module(configs)
