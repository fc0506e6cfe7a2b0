"""A consumer group of two kafka-python consumers; one leaves.

    python3 group_kafka_python.py --bootstrap B --topic T --partitions P --records N

Produces N records, then two consumers of one group (kafka-python's own group coordinator
and its round-robin assignor), each in its own thread, read them and commit each batch
synchronously before the next. Once both hold partitions and some records are read, the
second closes; N more records are produced and the first reads on alone. Checks that every
record was read exactly once, that the survivor ends with every partition, and that the
group's committed offsets are the partitions' ends.

Prints "ok READ" or exits non-zero with what went wrong.
"""

import argparse
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from shared import Reads


def produce(bootstrap, topic, start, n):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    futures = [
        p.send(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode())
        for i in range(start, start + n)
    ]
    p.flush(60)
    for f in futures:
        f.get(timeout=60)
    p.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--group", default="pair")
    a = ap.parse_args()

    produce(a.bootstrap, a.topic, 0, a.records)
    total = 2 * a.records
    r = Reads()
    r.assigned.update({0: set(), 1: set()})
    lock, seen, assigned, errors = r.lock, r.seen, r.assigned, r.errors
    stop = [threading.Event(), threading.Event()]

    def member(i):
        c = KafkaConsumer(
            bootstrap_servers=a.bootstrap,
            group_id=a.group,
            client_id=f"kp-{i}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
            partition_assignment_strategy=[RoundRobinPartitionAssignor],
        )
        c.subscribe([a.topic])
        try:
            while not stop[i].is_set():
                batches = c.poll(timeout_ms=200, max_records=200)
                with lock:
                    assigned[i] = {tp.partition for tp in c.assignment()}
                    for records in batches.values():
                        for rec in records:
                            r.record(rec.partition, rec.offset, rec.value)
                if batches:
                    c.commit()
        except Exception as e:  # noqa: BLE001 - reported, and the run fails
            errors.append(f"member {i}: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()

    wait = r.wait

    wait(
        "two members sharing every partition",
        lambda: all(assigned[i] for i in (0, 1))
        and assigned[0] | assigned[1] == set(range(a.partitions))
        and len(seen) > 0,
    )
    stop[1].set()
    threads[1].join(30)
    produce(a.bootstrap, a.topic, a.records, a.records)
    wait(
        "the first member holding every partition and every record read",
        lambda: len(seen) >= total and assigned[0] == set(range(a.partitions)),
    )
    stop[0].set()
    threads[0].join(30)
    r.check_once(total)
    check = KafkaConsumer(bootstrap_servers=a.bootstrap, group_id=a.group, enable_auto_commit=False)
    parts = [TopicPartition(a.topic, p) for p in range(a.partitions)]
    ends = check.end_offsets(parts)
    for tp in parts:
        got = check.committed(tp)
        if got != ends[tp]:
            sys.exit(f"partition {tp.partition}: committed {got}, end {ends[tp]}")
    check.close()
    print(f"ok {len(seen)}")


if __name__ == "__main__":
    main()
