"""Kafka push-source ingestor: Kafka events into the online store and Delta, nothing lost under faults.

Declarations live in ``<repo>/ingest.yaml`` (``config.py``); ``Ingestor`` is the consumer-group
member (``ingestor.py``); ``broker.EmbeddedBroker`` starts a local tansu broker. See docs/ingest.md.
"""

from fs_platform.plugins.kafka_ingest.config import IngestConfig, TopicSpec, load_ingest_config
from fs_platform.plugins.kafka_ingest.ingestor import Health, Ingestor
from fs_platform.plugins.kafka_ingest.metrics import IngestStats

__all__ = ["Health", "IngestConfig", "IngestStats", "Ingestor", "TopicSpec", "load_ingest_config"]
