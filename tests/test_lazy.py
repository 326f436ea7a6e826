"""Package attributes imported on first use (lit_colorization/lazy.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lit_colorization.lazy import lazy_attributes


def test_a_listed_name_comes_from_its_submodule_and_an_unlisted_one_is_an_attribute_error() -> None:
    attribute = lazy_attributes("lit_colorization", {"Registry": "registry"})
    from lit_colorization.registry import Registry

    assert attribute("Registry") is Registry
    with pytest.raises(AttributeError, match=r"^module 'lit_colorization' has no attribute 'Missing'$"):
        attribute("Missing")


def test_the_lazy_packages_load_their_config_schemas_without_torch() -> None:
    code = (
        "import sys, lit_colorization.data.data_config, transfer.voc.voc_config; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "import transfer.voc as voc; voc.voc_ap_area; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
