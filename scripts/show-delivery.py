#!/usr/bin/env python3
"""Shows what the service stored for webhook answers: the Kafka record of a `published` answer
(key, headers, value, read with read_committed at the answer's partition and offset) and the
dead-letter record of a `dead_lettered` answer (found in the bucket by its request id).

usage: show-delivery.py ANSWER.json [ANSWER.json ...]
Reads the service's own environment (CXONE_INGEST_KAFKA_BROKERS, CXONE_INGEST_S3_ENDPOINT,
CXONE_INGEST_S3_BUCKET, AWS_*), as scripts/run-local sets it. Needs confluent-kafka and boto3
(the stack's venv has both). Exits non-zero when a record cannot be found.
"""
import json
import os
import sys
import time

import boto3
from botocore.config import Config
from confluent_kafka import Consumer, KafkaError, TopicPartition

DEADLINE_S = 20.0


def show_kafka(answer):
    consumer = Consumer({
        "bootstrap.servers": os.environ["CXONE_INGEST_KAFKA_BROKERS"],
        "group.id": "cxone-ingest-show-delivery",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    consumer.assign([TopicPartition(answer["topic"], answer["partition"], answer["offset"])])
    deadline = time.monotonic() + DEADLINE_S
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"show-delivery: reading {answer['topic']}: {msg.error()}")
            if msg.offset() != answer["offset"]:
                raise SystemExit(f"show-delivery: no record at offset {answer['offset']} (next is {msg.offset()})")
            headers = {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in (msg.headers() or [])}
            print(f"Kafka record {msg.topic()}[{msg.partition()}] offset {msg.offset()} (read_committed):")
            print(f"  key:     {msg.key().decode('utf-8', 'replace') if msg.key() else None}")
            print("  headers:")
            for name, value in headers.items():
                print(f"    {name}: {value}")
            print("  value:")
            print(indent(json.dumps(json.loads(msg.value()), indent=2)))
            return
        raise SystemExit(f"show-delivery: no record at {answer['topic']}[{answer['partition']}]@{answer['offset']} within {DEADLINE_S:.0f} s")
    finally:
        consumer.close()


def s3_client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["CXONE_INGEST_S3_ENDPOINT"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


def records_of(body):
    """Dead-letter records of one object: a JSON object, or JSON lines."""
    text = body.decode("utf-8")
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def show_dead_letter(answer):
    s3, bucket = s3_client(), os.environ["CXONE_INGEST_S3_BUCKET"]
    prefix = os.environ.get("CXONE_INGEST_S3_PREFIX", "data-actions/errors").strip("/") + "/"
    request_id = answer["request_id"]
    # The answer names the object when the service tells it; else look through the newest objects.
    keys = [answer["key"]] if answer.get("key") else None
    if keys is None:
        listed = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            listed += [o for o in page.get("Contents", []) if "/_replayed/" not in o["Key"]]
        listed.sort(key=lambda o: o["LastModified"], reverse=True)
        keys = [o["Key"] for o in listed[:200]]
    for key in keys:
        for record in records_of(s3.get_object(Bucket=bucket, Key=key)["Body"].read()):
            if record.get("request_id") == request_id:
                print(f"Dead-letter record s3://{bucket}/{key}:")
                print(indent(json.dumps(record, indent=2)))
                return
    raise SystemExit(f"show-delivery: no dead-letter record with request id {request_id} under s3://{bucket}/{prefix}")


def indent(text):
    return "\n".join("    " + line for line in text.splitlines())


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for path in sys.argv[1:]:
        with open(path, encoding="utf-8") as f:
            answer = json.load(f)
        status = answer.get("status")
        if status == "published":
            show_kafka(answer)
        elif status == "dead_lettered":
            show_dead_letter(answer)
        else:
            raise SystemExit(f"show-delivery: {path}: nothing stored for status {status!r}: {answer}")
        print()


if __name__ == "__main__":
    main()
