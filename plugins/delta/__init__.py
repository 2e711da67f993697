"""Delta Lake offline store for Feast: ``DeltaSource`` and ``DeltaOfflineStore``."""

from plugins.delta.source import DeltaSource

__all__ = ["DeltaSource"]
