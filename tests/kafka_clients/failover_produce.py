"""An idempotent librdkafka producer (confluent-kafka) through an agent's kill -9.

    python3 failover_produce.py --bootstrap B --topic T --records N --partitions P

Sends N keyed records (Kafka's murmur2 partitioner), printing "acked K" every 1,000
acknowledgements so the test can kill an agent mid-run, then reads every partition back from
the start to its end and checks: each acknowledged record is there exactly once, at the
partition and offset it was acknowledged at, on the partition Kafka's partitioner picks for
its key. Prints "ok SENT ACKED" or exits non-zero with what went wrong.
"""

import argparse
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--partitions", type=int, required=True)
    a = p.parse_args()

    producer = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "message.timeout.ms": 120_000,
        }
    )
    acked = {}
    errors = []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
            return
        acked[msg.value()] = (msg.partition(), msg.offset(), msg.key())
        if len(acked) % 1000 == 0:
            print(f"acked {len(acked)}", flush=True)

    for i in range(a.records):
        while True:
            try:
                producer.produce(a.topic, f"value-{i}".encode(), f"key-{i % 997}".encode(),
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        # At most a few thousand outstanding, so the run spans the kill rather than
        # queueing everything before it.
        while len(producer) > 2000:
            producer.poll(0.001)
    left = producer.flush(120)
    if left or errors:
        sys.exit(f"{left} records undelivered, {len(errors)} failed: {errors[:3]}")

    consumer = Consumer({"bootstrap.servers": a.bootstrap, "group.id": "unused",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    ends = {}
    for part in range(a.partitions):
        # Right after the kill the client may still name the dead agent as a leader: ask
        # again, as an application would, until the new leader answers.
        deadline = time.time() + 60
        while part not in ends:
            try:
                _, ends[part] = consumer.get_watermark_offsets(
                    TopicPartition(a.topic, part), timeout=5)
            except KafkaException:
                if time.time() > deadline:
                    raise
                # A leader named before the kill may be the dead agent: ask for the
                # metadata again, as an application does when a leader cannot be reached.
                consumer.list_topics(a.topic, timeout=5)
                time.sleep(0.2)
    consumer.assign([TopicPartition(a.topic, part, 0) for part in range(a.partitions)])
    seen = {}
    done = set(part for part, end in ends.items() if end == 0)
    deadline = time.time() + 120
    while len(done) < a.partitions:
        if time.time() > deadline:
            sys.exit(f"reading back timed out; {len(seen)} records read")
        m = consumer.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # partition EOF
                if m.offset() >= ends[m.partition()]:
                    done.add(m.partition())
                continue
            if m.error().fatal():
                raise KafkaException(m.error())
            # Transient (a leader moving after the kill): the consumer carries on, as
            # applications do.
            continue
        if m.value() in seen:
            sys.exit(f"{m.value()!r} stored twice: at {seen[m.value()]} and "
                     f"{(m.partition(), m.offset())}")
        seen[m.value()] = (m.partition(), m.offset())
    consumer.close()

    for value, (part, offset, key) in acked.items():
        if seen.get(value) != (part, offset):
            sys.exit(f"{value!r} acknowledged at {(part, offset)}, read at {seen.get(value)}")
    keys = {}
    for value, (part, _, key) in acked.items():
        if keys.setdefault(key, part) != part:
            sys.exit(f"key {key!r} on partitions {keys[key]} and {part}")
    print("partitions " + " ".join(f"{k.decode()}={p}" for k, p in sorted(keys.items())))
    print(f"ok {a.records} {len(acked)}", flush=True)


if __name__ == "__main__":
    main()
