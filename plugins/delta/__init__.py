"""Delta Lake offline store for Feast: ``DeltaSource`` and ``DeltaOfflineStore``."""

from fs_platform.plugins.delta.source import DeltaSource

# Imported for its side effect too: Feast finds saved-dataset storages and logging destinations
# by class registration, so they must be loaded whenever a registry holding them is read.
from fs_platform.plugins.delta.storage import DeltaLoggingDestination, SavedDatasetDeltaStorage

__all__ = ["DeltaLoggingDestination", "DeltaSource", "SavedDatasetDeltaStorage"]
