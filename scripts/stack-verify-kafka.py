#!/usr/bin/env python3
"""Verify a Kafka-protocol broker with librdkafka itself (confluent-kafka).

Used by scripts/start-stack. Creates the listed topics through the admin API
(CreateTopics; "already exists" is fine), then proves exactly-once works end
to end: a transactional produce + commit, and a read_committed read of that
record through partition assignment (no consumer group join: slow on tansu).
With --aborts-hidden, an aborted transaction comes first and its record must
not reach the read_committed reader (noida-db filters aborts; tansu does not).

usage: stack-verify-kafka.py [--aborts-hidden] BOOTSTRAP [TOPIC:PARTITIONS ...]
Exits non-zero with a message on any failure or when the deadline passes.
"""
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

DEADLINE_S = 60.0


def fail(msg):
    print(f"stack-verify-kafka: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    args = sys.argv[1:]
    aborts_hidden = bool(args) and args[0] == "--aborts-hidden"
    if aborts_hidden:
        args = args[1:]
    if not args:
        fail("usage: stack-verify-kafka.py [--aborts-hidden] BOOTSTRAP [TOPIC:PARTITIONS ...]")
    bootstrap = args[0]
    wanted = []
    for spec in args[1:]:
        name, _, parts = spec.partition(":")
        wanted.append((name, int(parts or "3")))
    deadline = time.monotonic() + DEADLINE_S

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    check_topic = f"stack-verify-{uuid.uuid4().hex[:12]}"
    topics = wanted + [(check_topic, 1)]
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(n, num_partitions=p, replication_factor=1) for n, p in topics if n not in existing]
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=10, request_timeout=15).items():
            try:
                fut.result(timeout=20)
            except KafkaException as e:
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    fail(f"CreateTopics {name}: {e}")
    # Metadata must show every topic with its partitions.
    while True:
        md = admin.list_topics(timeout=10).topics
        missing = [n for n, p in topics if n not in md or len(md[n].partitions) < p]
        if not missing:
            break
        if time.monotonic() > deadline:
            fail(f"topics not visible in metadata: {missing}")
        time.sleep(0.2)

    value = uuid.uuid4().hex.encode()
    aborted_value = b"aborted-" + uuid.uuid4().hex.encode()
    producer = Producer({
        "bootstrap.servers": bootstrap, "log_level": 3,
        "transactional.id": f"stack-verify-{uuid.uuid4().hex[:12]}",
        "enable.idempotence": True,
        "acks": "all",
    })
    try:
        producer.init_transactions(20)
        if aborts_hidden:
            producer.begin_transaction()
            producer.produce(check_topic, key=b"stack-verify", value=aborted_value, partition=0)
            producer.flush(20)
            producer.abort_transaction(20)
        producer.begin_transaction()
        producer.produce(check_topic, key=b"stack-verify", value=value, partition=0)
        producer.commit_transaction(20)
    except KafkaException as e:
        fail(f"transactional produce: {e}")

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "log_level": 3,
        "group.id": "stack-verify",  # required by the client; never joined (assign only)
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(check_topic, 0, 0)])
    try:
        while True:
            if time.monotonic() > deadline:
                fail("committed record not read back with read_committed before the deadline")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                fail(f"consume: {msg.error()}")
            if msg.value() == value:
                break
            if msg.value() == aborted_value:
                fail("a record of an aborted transaction reached a read_committed reader")
            fail(f"unexpected record {msg.value()!r}")
    finally:
        consumer.close()
    # Leave no clutter: the check topic is removed (best effort).
    try:
        for _, fut in admin.delete_topics([check_topic], operation_timeout=10).items():
            fut.result(timeout=15)
    except Exception:
        pass


if __name__ == "__main__":
    main()
