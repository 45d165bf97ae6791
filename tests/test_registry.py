"""The plugin registry: discovery from entry points and folders, clear unknown-name errors."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import pytest

from aio.errors import UnknownPluginError
from aio.registry import ENTRY_POINT_GROUP, Registry


def test_builtins_come_through_the_entry_point_group():
    names = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    assert "builtin" in names  # installed with `pip install -e .`
    reg = Registry()
    reg.discover()
    assert "entry-point:builtin" in reg.loaded_sources
    assert "rules" in reg.names("strategy")


def test_unknown_name_lists_known_and_suggests_close_match():
    reg = Registry()
    reg.discover()
    with pytest.raises(UnknownPluginError) as info:
        reg.get("strategy", "rulez")
    msg = str(info.value)
    assert "unknown strategy plugin 'rulez'" in msg
    assert "Did you mean 'rules'?" in msg
    assert "Known strategy plugins: " in msg and "rules" in msg


def test_unknown_kind_is_an_error():
    reg = Registry()
    with pytest.raises(Exception, match="unknown plugin kind 'colour'"):
        reg.add("colour", "red", object())


def test_folder_plugins_register_with_their_config_node(tmp_path):
    (tmp_path / "my_sizer.py").write_text(textwrap.dedent(
        """
        from dataclasses import dataclass

        @dataclass
        class HalfConfig:
            fraction: float = 0.5

        class Half:
            '''Halves every size.'''
            def __init__(self, cfg):
                self.cfg = cfg

        def register(registry):
            registry.add("sizer", "half_test", Half, config=HalfConfig)
        """
    ))
    (tmp_path / "_private.py").write_text("raise RuntimeError('files starting with _ are not plugins')")
    reg = Registry()
    loaded = reg.load_folder(tmp_path)
    assert [p.endswith("my_sizer.py") for p in loaded] == [True]
    plugin = reg.get_plugin("sizer", "half_test")
    assert plugin.source.endswith("my_sizer.py")
    assert plugin.description == "Halves every size."
    from hydra.core.config_store import ConfigStore

    node = ConfigStore.instance().load("sizer/half_test.yaml").node
    assert node.fraction == 0.5


def test_broken_local_plugin_names_the_file(tmp_path):
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    reg = Registry()
    with pytest.raises(Exception, match="broken.py failed to import"):
        reg.load_folder(tmp_path)
