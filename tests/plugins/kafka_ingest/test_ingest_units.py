"""Server-free parts: config, decoding and validation, transform loading, the checks of a topic that feeds
aggregation views, retries and the breaker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from fs_platform.errors import ConfigError, OnlineStoreUnavailable, OnlineWriteError
from fs_platform.plugins.kafka_ingest.config import IngestConfig, TopicSpec, load_ingest_config
from fs_platform.plugins.kafka_ingest.decode import BadRecord, RecordDecoder
from fs_platform.plugins.kafka_ingest.resilience import BreakerState, CircuitBreaker, with_retries
from fs_platform.plugins.kafka_ingest.transform import load_transform
from tests.conftest import EXAMPLE_REPO, copy_example_repo
from tests.plugins.kafka_ingest.conftest import EVENT_FIELDS, FIXTURES

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
FIELDS = {"customer_id": "int", "amount": "float", "event_timestamp": "timestamp"}


def _decoder(**spec) -> RecordDecoder:
    return RecordDecoder(TopicSpec(topic="t", push_source="p", **spec), FIELDS, EXAMPLE_REPO)


def _reason(decoder, value) -> str:
    with pytest.raises(BadRecord) as e:
        decoder(value, NOW)
    return e.value.reason


def test_valid_json_is_mapped_and_its_event_time_parsed():
    d = _decoder(
        field_mapping={"cust": "customer_id", "ts": "event_timestamp"}, event_time_field="event_timestamp"
    )
    rec = d(json.dumps({"cust": 7, "amount": 3, "ts": "2026-11-01T13:00:00+01:00"}).encode(), NOW)
    assert rec == {"customer_id": 7, "amount": 3, "event_timestamp": datetime(2026, 11, 1, 12, tzinfo=UTC)}


def test_numeric_event_times_use_the_configured_unit():
    d = _decoder(epoch_unit="s")
    rec = d(json.dumps({"customer_id": 1, "amount": 1.5, "event_timestamp": NOW.timestamp()}).encode(), NOW)
    assert rec["event_timestamp"] == NOW


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\x01", "undecodable"),
        (None, "undecodable"),
        (b"[1, 2]", "undecodable"),
        (b'{"amount": 1.0, "event_timestamp": "2026-11-01T00:00:00Z"}', "missing_field"),
        (b'{"customer_id": "7", "amount": 1.0, "event_timestamp": "2026-11-01T00:00:00Z"}', "wrong_type"),
        (b'{"customer_id": true, "amount": 1.0, "event_timestamp": "2026-11-01T00:00:00Z"}', "wrong_type"),
        (b'{"customer_id": 7, "amount": 1.0}', "missing_field"),
        (b'{"customer_id": 7, "amount": 1.0, "event_timestamp": "soon"}', "bad_timestamp"),
        (b'{"customer_id": 7, "amount": NaN, "event_timestamp": "2026-11-01T00:00:00Z"}', "bad_number"),
        (b'{"customer_id": 7, "amount": -Infinity, "event_timestamp": "2026-11-01T00:00:00Z"}', "bad_number"),
        (
            b'{"customer_id": 9223372036854775808, "amount": 1.0, "event_timestamp": "2026-11-01T00:00:00Z"}',
            "bad_number",
        ),
        (
            b'{"customer_id": 100000000000000000000, "amount": 1.0, '
            b'"event_timestamp": "2026-11-01T00:00:00Z"}',
            "bad_number",
        ),
        (b'{"customer_id": 7, "amount": Infinity, "event_timestamp": "2026-11-01T00:00:00Z"}', "bad_number"),
        (b'{"customer_id": 7, "amount": 1e300, "event_timestamp": "2026-11-01T00:00:00Z"}', "bad_number"),
        (b'{"customer_id": 7, "amount": 1.0, "event_timestamp": "2026-11-01T13:00:00Z"}', "future_timestamp"),
    ],
)
def test_bad_messages_get_a_reason(value, reason):
    assert _reason(_decoder(max_future="5m"), value) == reason


def test_numbers_are_checked_against_declared_bounds_and_the_type_in_both_paths():
    d = RecordDecoder(
        TopicSpec(topic="t", push_source="p", bounds={"amount": (0, 100)}, max_abs_float=1e6),
        {"customer_id": "int32", "amount": "float", "other": "float", "event_timestamp": "timestamp"},
        EXAMPLE_REPO,
    )
    base = {"customer_id": 7, "amount": 5.0, "other": 1.0, "event_timestamp": "2026-11-01T00:00:00Z"}
    values = [
        json.dumps({**base, **change}).encode()
        for change in (
            {},
            {"amount": 100},
            {"amount": 100.5},
            {"amount": -0.01},
            {"other": -1e6},
            {"other": 1.5e6},
            {"customer_id": 2**31 - 1},
            {"customer_id": 2**31},
        )
    ]
    ok = [True, True, False, False, True, False, True, False]
    for value, accepted in zip(values, ok, strict=True):
        if accepted:
            d(value, NOW)
        else:
            assert _reason(d, value) == "bad_number"
    _, _, pos, bad = d.decode_batch(values, NOW)  # the batch path gives the per-message verdicts
    assert pos == [i for i, a in enumerate(ok) if a] and {r.reason for _, r in bad} == {"bad_number"}
    with pytest.raises(ValueError, match="min <= max"):
        TopicSpec(topic="t", push_source="p", bounds={"amount": (1, 0)})


def test_reason_details_never_carry_values():
    with pytest.raises(BadRecord) as e:
        _decoder()(
            b'{"customer_id": "secret-4111", "amount": 1.0, "event_timestamp": "2026-11-01T00:00:00Z"}', NOW
        )
    assert "secret" not in e.value.detail and "customer_id" in e.value.detail


def test_avro_messages_decode_with_the_schema_file(tmp_path):
    fastavro = pytest.importorskip("fastavro")
    import io

    schema = {
        "type": "record",
        "name": "Payment",
        "fields": [
            {"name": "customer_id", "type": "long"},
            {"name": "amount", "type": "double"},
            {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    (tmp_path / "payment.avsc").write_text(json.dumps(schema))
    buf = io.BytesIO()
    fastavro.schemaless_writer(
        buf,
        fastavro.parse_schema(schema),
        {"customer_id": 3, "amount": 9.5, "event_timestamp": NOW - timedelta(minutes=1)},
    )
    spec = TopicSpec(topic="t", push_source="p", format="avro", avro_schema="payment.avsc")
    d = RecordDecoder(spec, FIELDS, tmp_path)
    assert d(buf.getvalue(), NOW) == {
        "customer_id": 3,
        "amount": 9.5,
        "event_timestamp": NOW - timedelta(minutes=1),
    }
    assert _reason(d, b"\xff") == "undecodable"


def test_the_example_repo_config_loads_and_env_vars_expand(monkeypatch):
    monkeypatch.setenv("FS_KAFKA_BOOTSTRAP", "broker-a:9092,broker-b:9092")
    config = load_ingest_config(EXAMPLE_REPO)
    assert config.kafka.bootstrap_servers == "broker-a:9092,broker-b:9092"
    topic = config.topics[0]
    assert topic.push_source == "payments_push" and topic.online and topic.offline and topic.transform is None
    assert config.select(["payments"]) == config
    with pytest.raises(ConfigError, match="not declared"):
        config.select(["nope"])


def test_config_mistakes_are_one_line_errors(tmp_path):
    (tmp_path / "ingest.yaml").write_text(
        yaml.safe_dump({"topics": [{"topic": "a", "push_source": "p", "colour": 1}]})
    )
    with pytest.raises(ConfigError, match=r"topics\.0\.colour"):
        load_ingest_config(tmp_path)
    with pytest.raises(ConfigError, match="no ingest.yaml"):
        load_ingest_config(tmp_path / "missing")
    with pytest.raises(ValueError, match="avro_schema"):
        IngestConfig(topics=[{"topic": "a", "push_source": "p", "format": "avro"}])


def test_transforms_load_from_the_repo_and_classes_are_stateful():
    factory = load_transform(FIXTURES, "running_count.py:RunningCount")
    assert factory.stateful and factory.lookback == timedelta(hours=1)
    a, b = factory.new(), factory.new()
    assert a is not b
    pay = {"customer_id": 1, "amount": 10.0, "event_timestamp": NOW}
    assert (
        a(pay)["txn_count"] == 1
        and a(dict(pay, event_timestamp=NOW + timedelta(seconds=1)))["txn_count"] == 2
    )
    assert b(pay)["txn_count"] == 1
    with pytest.raises(ConfigError, match="no function or class"):
        load_transform(FIXTURES, "running_count.py:nope")
    with pytest.raises(ConfigError, match="file.py:name"):
        load_transform(FIXTURES, "../fs/datagen.py")


@pytest.fixture(scope="module")
def applied_repo(tmp_path_factory):
    """A copy of the example repo with its aggregation views applied (file registry; no server is
    contacted while a pipeline is built)."""
    from fs_platform import datagen
    from fs_platform import repo as repo_mod
    from fs_platform.platform import Platform

    path = copy_example_repo(tmp_path_factory.mktemp("agg"))
    datagen.write_tables(datagen.generate(seed=1, customers=5, merchants=2, days=1), path / "data")
    platform = Platform(path)
    contents = repo_mod.parse(path)
    platform.store.apply([*contents.entities, *contents.data_sources, *contents.feature_views])
    (path / "identity.py").write_text("def identity(record):\n    return record\n")
    return platform


@pytest.mark.parametrize(
    ("topic", "error"),
    [
        ({"transform": "identity.py:identity"}, "aggregate the raw events themselves"),
        ({"fields": {}}, "declare its message fields"),
        ({"fields": {k: v for k, v in EVENT_FIELDS.items() if k != "approved"}}, "approved"),
        ({"quality_gate": True}, "quality gates judge feature rows"),
        ({"key_field": None}, "set key_field"),  # two join keys: which one producers key by is declared
        ({"key_field": "card_id"}, "key_field 'card_id' is not among its message fields"),
    ],
)
def test_a_topic_feeding_aggregation_views_carries_declared_raw_events_and_no_transform(
    applied_repo, topic, error
):
    from fs_platform.plugins.kafka_ingest.pipeline import TopicPipeline

    spec = TopicSpec(
        **{
            "topic": "payments",
            "push_source": "payments_push",
            "fields": EVENT_FIELDS,
            "key_field": "customer_id",
            **topic,
        }
    )
    with pytest.raises(ConfigError, match=error):
        TopicPipeline(spec, applied_repo.repo_path, applied_repo.store, "g")
    ok = TopicPipeline(
        TopicSpec(
            topic="payments", push_source="payments_push", fields=EVENT_FIELDS, key_field="customer_id"
        ),
        applied_repo.repo_path,
        applied_repo.store,
        "g",
    )
    assert ok.aggregating and ok.lateness_us == 3_600_000_000
    assert {v.name for v in ok.views} == {
        "customer_txn_aggregates",
        "merchant_txn_aggregates",
        "customer_amount_stats",
        "customer_merchant_spread",
    }


def test_retries_back_off_on_transient_errors_only():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OnlineStoreUnavailable("down")
        return "ok"

    assert with_retries(flaky, attempts=4, base_s=0.1, cap_s=1, sleep=sleeps.append) == "ok"
    assert len(sleeps) == 2 and all(0 <= s <= 0.2 for s in sleeps)
    with pytest.raises(OnlineStoreUnavailable):
        with_retries(
            lambda: (_ for _ in ()).throw(OnlineStoreUnavailable("down")),
            attempts=2,
            base_s=0,
            cap_s=0,
            sleep=lambda s: None,
        )
    terminal = []
    with pytest.raises(OnlineWriteError):
        with_retries(
            lambda: terminal.append(1) or (_ for _ in ()).throw(OnlineWriteError("bad")),
            attempts=5,
            base_s=0,
            cap_s=0,
            sleep=lambda s: None,
        )
    assert len(terminal) == 1


def test_no_retry_starts_past_the_deadline():
    now, calls = [0.0], []

    def hung():  # each attempt takes 1.5 s (a client's socket timeout) and fails
        calls.append(now[0])
        now[0] += 1.5
        raise OnlineStoreUnavailable("timed out")

    with pytest.raises(OnlineStoreUnavailable):
        with_retries(
            hung,
            attempts=4,
            base_s=0.1,
            cap_s=0.1,
            sleep=lambda s: now.__setitem__(0, now[0] + s),
            deadline=2.0,
            clock=lambda: now[0],
        )
    assert len(calls) == 2  # without the deadline: 4 attempts, ~6 s


def test_breaker_opens_half_opens_and_closes():
    now = [0.0]
    b = CircuitBreaker("online", failures=2, reset_s=5, clock=lambda: now[0])
    b.failure()
    assert b.allow() and b.state is BreakerState.CLOSED
    b.failure()
    assert b.state is BreakerState.OPEN and not b.allow() and b.opened == 1
    now[0] = 5
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    b.failure()  # a failed probe re-opens at once
    assert b.state is BreakerState.OPEN and not b.allow()
    now[0] = 10
    assert b.allow()
    b.success()
    assert b.state is BreakerState.CLOSED and b.opened == 2  # the failed probe counts as a re-open


def test_breaker_transitions_are_kept_in_a_delta_table(tmp_path):
    """Every transition goes to the breaker log (a real Delta table), in order, off the caller's thread;
    an unwritable location keeps them queued instead of failing the breaker."""
    from datetime import timedelta

    from fs_platform.plugins.kafka_ingest.breaker_log import BreakerLog, read_transitions
    from fs_platform.timeutil import utcnow

    start = utcnow() - timedelta(seconds=1)
    where = str(tmp_path / "ingest_breakers")
    blog = BreakerLog(where)
    now = [0.0]
    b = CircuitBreaker("online", failures=2, reset_s=5, clock=lambda: now[0], on_change=blog.record)
    b.failure()
    b.failure()  # open
    b.failure()  # still open: no transition
    now[0] = 5
    b.allow()  # half-open
    b.success()  # closed
    blog.close()
    got = read_transitions(where, start, utcnow())
    assert [(t.breaker, t.from_state, t.to_state) for t in got] == [
        ("online", "closed", "open"),
        ("online", "open", "half_open"),
        ("online", "half_open", "closed"),
    ]
    assert got[0].failures == 2 and got[0].at <= got[1].at <= got[2].at
    assert read_transitions(str(tmp_path / "never"), start, utcnow()) == []

    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    stuck = BreakerLog(str(blocked / "ingest_breakers"))
    CircuitBreaker("offline", failures=1, reset_s=5, on_change=stuck.record).failure()  # does not raise
    stuck.close(timeout_s=1.0)
    assert len(stuck._queue) == 1  # kept for the next try, not lost


@pytest.mark.redis
@pytest.mark.kafka
def test_online_batches_keep_the_newest_row_by_event_then_created_time(transform_repo):
    """Two rows of one customer with the same event time in one batch: the one with the newer created
    time is served, whichever arrived last (the sink used to keep the later row and ignore created
    time, so Redis never saw the newer one); the rule is fs.newest's, shared with the backfill."""
    import pyarrow as pa

    from fs_platform.plugins.kafka_ingest.sinks import OnlineSink

    store = transform_repo.platform.store
    sink = OnlineSink(store, [store.get_feature_view("customer_txn_counts")])
    now = datetime.now(UTC).replace(microsecond=0)
    ts = pa.timestamp("us", tz="UTC")
    rows = pa.table(
        {
            "customer_id": pa.array([7, 7, 8, 8], pa.int64()),
            "txn_count": pa.array([2, 1, 5, 6], pa.int64()),
            "amount_total": pa.array([2.0, 1.0, 5.0, 6.0]),
            "event_timestamp": pa.array(
                [now - timedelta(minutes=1)] * 2 + [now - timedelta(minutes=2), now], ts
            ),
            "created_at": pa.array([now, now - timedelta(seconds=30), now, now], ts),
        }
    )
    result = sink.write(rows, now)
    assert (result.written, result.skipped_stale) == (2, 2)
    got = transform_repo.online("customer_txn_counts", "customer_id", [7, 8], ["txn_count"])
    assert got["txn_count"].tolist() == [2, 6]


def test_a_partial_take_covers_the_offsets_of_its_rows_only():
    """``Buffer.take(max_rows)``: the oldest rows (a chunk split where the cap falls); each partition's
    offsets are covered up to its last row taken while rows of it stay behind, in full otherwise (a
    partition with only dead letters in the buffer included), and the two takes together are the buffer."""
    import numpy as np
    import pyarrow as pa
    from kafka import TopicPartition

    from fs_platform.plugins.kafka_ingest.buffers import Buffer, Chunk

    p0, p1, p2 = (TopicPartition("t", i) for i in range(3))

    def chunk(tp, offsets):
        return Chunk(tp, pa.table({"offset": offsets}), np.array(offsets))

    buf = Buffer()
    buf.chunks = [chunk(p0, [10, 11, 12]), chunk(p1, [5, 7]), chunk(p0, [14, 15, 16]), chunk(p1, [9])]
    buf.n, buf.since = 9, 1.0
    buf.through = {p0: 17, p1: 9, p2: 40}  # p0's 17 and p2's 40: records that made no rows

    first = buf.take(6)
    assert first.n == 6 and first.table().column("offset").to_pylist() == [10, 11, 12, 5, 7, 14]
    assert first.through == {p0: 14, p1: 7, p2: 40} and first.since == 1.0
    assert buf.n == 3 and buf.table().column("offset").to_pylist() == [15, 16, 9]
    assert buf.through == {p0: 17, p1: 9, p2: 40}

    rest = buf.take(6)  # what is left fits: taken whole
    assert rest.n == 3 and rest.through == {p0: 17, p1: 9, p2: 40}
    assert buf.n == 0 and not buf.chunks and not buf.through and buf.since is None

    again = Buffer()  # a failed first piece goes back in front of the rest
    again.chunks, again.n, again.through, again.since = [chunk(p0, [1, 2, 3])], 3, {p0: 3}, 2.0
    piece = again.take(2)
    assert piece.through == {p0: 2}
    again.restore(piece)
    assert again.table().column("offset").to_pylist() == [1, 2, 3] and again.through == {p0: 3}


def test_a_write_that_keeps_answering_is_not_counted_against_its_deadline():
    """The online deadline counts silence, not length: a write whose round trips keep answering runs
    past several deadlines uncounted; once it stops answering, each deadline of silence is one failure
    (and ``breaker_failures`` of them open the breaker)."""
    import threading
    import time
    from concurrent.futures import Future

    from fs_platform.plugins.kafka_ingest.buffers import Buffer
    from fs_platform.plugins.kafka_ingest.config import BatchSettings, RetrySettings
    from fs_platform.plugins.kafka_ingest.guard import WriteGuard
    from fs_platform.plugins.kafka_ingest.recorder import Recorder
    from fs_platform.plugins.kafka_ingest.writes import Write, Writers

    recorder = Recorder()
    guard = WriteGuard(RetrySettings(online_deadline_ms=100, breaker_failures=2), recorder)
    writers = Writers(guard, offsets=None, recorder=recorder, batch=BatchSettings())
    beat, answering = [time.monotonic()], threading.Event()
    answering.set()

    def round_trips():  # a long write: one answer every 30 ms while ``answering``
        while answering.is_set():
            beat[0] = time.monotonic()
            time.sleep(0.03)

    thread = threading.Thread(target=round_trips, daemon=True)
    thread.start()
    writers.online = Write(pipe=None, taken=Buffer(), generation=0, future=Future(), beat=beat)
    end = time.monotonic() + 0.6  # six deadlines long
    while time.monotonic() < end:
        writers.watch_deadlines()
        time.sleep(0.01)
    assert writers.online.missed == 0 and guard.breakers["online"].state.name == "CLOSED"
    assert writers.stalled() == []

    answering.clear()  # the target stops answering (a hung Redis)
    thread.join()
    end = time.monotonic() + 0.35
    while time.monotonic() < end:
        writers.watch_deadlines()
        time.sleep(0.01)
    assert writers.online.missed >= 2 and guard.breakers["online"].state.name == "OPEN"
    assert writers.stalled() == ["online"]


def test_the_batch_path_gives_every_message_the_per_message_outcome():
    """The batch path parses with orjson, the per-message path with the standard parser; what orjson
    refuses must still get the standard parser's verdict (accepted or its exact reason), in order."""
    d = _decoder(max_future="5m")
    ts = '"event_timestamp": "2026-11-01T00:00:00Z"'
    values = [
        f'{{"customer_id": 7, "amount": 1.5, {ts}}}'.encode(),
        f'{{"customer_id": 7, "amount": NaN, {ts}}}'.encode(),  # orjson refuses the literal
        f'{{"customer_id": 7, "amount": -Infinity, {ts}}}'.encode(),
        f'{{"customer_id": 100000000000000000000, "amount": 1.0, {ts}}}'.encode(),  # past 64 bits
        f'{{"customer_id": 18446744073709551615, "amount": 1.0, {ts}}}'.encode(),  # u64, past int64
        f'{{"customer_id": 7, "amount": 2.0, "note": "\\ud800", {ts}}}'.encode(),  # lone surrogate
        f'{{"customer_id": 8, "amount": 3.0, {ts}}}'.encode("utf-16"),  # the standard parser reads it
        f'{{"customer_id": 9, "amount": 1e400, {ts}}}'.encode(),  # inf in the standard parser
        b'{"customer_id": 7, "amount": 1.0, "event_timestamp": "2026-11-01T00:00:00Z"',  # truncated
        b"\xff\xfe\x00",
        None,
        b"[1, 2]",
        f'{{"customer_id": 7, "customer_id": 10, "amount": 4.0, {ts}}}'.encode(),  # the last one wins
        "[" * 5000 + "]" * 5000,
    ]
    values[-1] = values[-1].encode()
    expected_ok, expected_bad = [], []
    for i, v in enumerate(values):
        try:
            expected_ok.append((i, d(v, NOW)))
        except BadRecord as e:
            expected_bad.append((i, e.reason, e.detail))
    recs, _, pos, bad = d.decode_batch(values, NOW)
    assert list(zip(pos, recs, strict=True)) == expected_ok
    assert [(i, e.reason, e.detail) for i, e in bad] == expected_bad
    assert [i for i, _ in expected_ok] == [0, 5, 6, 12]  # the standard parser's accepted messages
