"""The engine registry: every `--engine` value is one entry, a module with its engine class and `run`."""

from __future__ import annotations

import importlib
import inspect

from streamprep import engines
from streamprep.engines import driver
from streamprep.options import Engine


def test_every_engine_the_option_takes_is_one_entry_whose_module_runs_it():
    assert sorted(engines.ENGINES) == sorted(e.value for e in Engine)
    for module_name in engines.ENGINES.values():
        module = importlib.import_module(module_name, engines.__name__)
        assert list(inspect.signature(module.run).parameters) == ["options", "passthrough", "progress"]


def test_the_local_engine_gives_the_driver_what_its_engine_protocol_names():
    from streamprep.engines.local import LocalEngine

    wanted = {n for n in vars(driver.Engine) if not n.startswith("_")} | set(driver.Engine.__annotations__)
    assert wanted == {"name", "walk", "write"}
    assert LocalEngine.name == "local" and all(callable(getattr(LocalEngine, step)) for step in ("walk", "write"))
    for step in ("walk", "write"):
        assert list(inspect.signature(getattr(LocalEngine, step)).parameters) == \
            list(inspect.signature(getattr(driver.Engine, step)).parameters)
