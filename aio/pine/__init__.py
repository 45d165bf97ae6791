"""Pine Script v6 export of rule strategies."""

from aio.pine.builder import PineDoc, build_doc, default_template, export_strategy

__all__ = ["PineDoc", "build_doc", "default_template", "export_strategy", "register"]


def register(registry) -> None:
    registry.add("pine_template", "default", default_template, description="aio's standard Pine v6 layout")
