"""Acknowledgement latency through librdkafka (confluent-kafka from PyPI), for kafka_benchmark.

    python3 demos/kafka_benchmark.py --bootstrap HOST:PORT --topic T [--rate 10000]
        [--seconds 10] [--value-size 100]

Sends --rate records per second for --seconds, keyed over 1,000 keys, from an idempotent
producer with librdkafka's defaults otherwise (linger.ms 5), and times each record from
produce() to its delivery report. The delivery reports are served by poll(0) after every
produce, so a report waits at most one produce call. The producer is warmed up first (its
producer id fetched), as StreamHouse's is by the runs before its own latency run. Prints one
line of JSON: count, errors, and p50, p99, p99.9 and max in milliseconds.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Producer


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--rate", type=int, default=10_000)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--value-size", type=int, default=100)
    a = p.parse_args()

    producer = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    latencies = []
    errors = []

    def report(sent):
        def delivered(err, _msg):
            if err is not None:
                errors.append(str(err))
            else:
                latencies.append(time.perf_counter() - sent)

        return delivered

    value = (b'{"event":"benchmark","n":' + b"0" * a.value_size)[: a.value_size]
    keys = [f"key-{i}".encode() for i in range(1000)]
    # Warm up first: librdkafka's idempotent producer waits about half a second for its
    # producer id, which is start-up, not acknowledgement latency.
    for k in keys[:8]:
        producer.produce(a.topic, value, k)
    if producer.flush(30):
        sys.exit("the warm-up records were not delivered within 30 s")
    total = a.rate * a.seconds
    start = time.perf_counter()
    for i in range(total):
        due = start + i / a.rate
        while True:
            now = time.perf_counter()
            if now >= due:
                break
            producer.poll(min(due - now, 0.001))
        producer.produce(a.topic, value, keys[i % 1000], on_delivery=report(time.perf_counter()))
        producer.poll(0)
    left = producer.flush(60)
    if left:
        errors.append(f"{left} records not delivered within 60 s")

    latencies.sort()

    def q(f):
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(f * len(latencies)))] * 1000, 2)

    json.dump(
        {
            "count": len(latencies),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "p50": q(0.50),
            "p99": q(0.99),
            "p999": q(0.999),
            "max": round(latencies[-1] * 1000, 2) if latencies else None,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
