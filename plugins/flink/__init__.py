"""Aggregation views on Apache Flink (docs/flink.md): the same spec, the same tiles, the same Redis.

The Flink job reads the views' Kafka topics (the Kafka connector, checkpointed offsets) and hands
each batch of records to the ingestor's own decode/validate path and tile writer
(``kafka_ingest.pipeline.TopicPipeline``, ``redis_store.tile_events.prepare_events`` through
``kafka_ingest.sinks.EventSink``) inside a vectorized Python UDF. Tiles live in Redis, keyed and
offset-marked exactly as the ingestor writes them, so a view moves between engines by configuration,
a replay after a restore from a checkpoint adds nothing, and serving is unchanged.

PyFlink cannot share the project's environment (apache-beam<=2.61 pins grpcio<1.66; pyspark[connect]
4.2 needs grpcio>=1.76): it runs in its own environment (``fs stream install-flink``), and the main
environment starts the job there (``runner.run_flink``). Nothing here imports pyflink except
``job.py`` and ``udf.py``, which run in that environment.
"""

from fs_platform.plugins.flink.runner import FlinkRun, run_flink
from fs_platform.plugins.flink.settings import FlinkSettings, load_flink_settings

__all__ = ["FlinkRun", "FlinkSettings", "load_flink_settings", "run_flink"]
