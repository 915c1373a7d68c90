"""The package's public surface: every module imports and is reachable; unknown names fail clearly."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import retmask_interp


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(retmask_interp.__path__, "retmask_interp."))


def test_every_module_imports_and_is_reachable():
    names = _modules()
    assert "retmask_interp.workflows.experiments" in names and "retmask_interp.core.decode" in names
    for name in names:
        module = importlib.import_module(name)
        # reachable by attribute from the package: retmask_interp.<subpackage>.<module>
        obj = retmask_interp
        for part in name.split(".")[1:]:
            obj = getattr(obj, part)
        assert obj is module, name
    # every subpackage is a name of the curated API
    subpackages = {
        n.split(".")[1] for n in names if n.count(".") == 2 and not n.split(".")[1].startswith("_")
    }
    assert subpackages <= set(retmask_interp.__all__), subpackages - set(retmask_interp.__all__)


def test_unknown_attribute_is_a_clear_attribute_error():
    with pytest.raises(AttributeError, match="retmask_interp.*has no attribute 'effects'"):
        retmask_interp.effects  # noqa: B018  (an old module name)
    assert not hasattr(retmask_interp, "interop")
    for name in retmask_interp.__all__:  # every curated name resolves
        assert getattr(retmask_interp, name) is not None, name
