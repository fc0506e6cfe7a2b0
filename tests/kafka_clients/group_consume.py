"""A consumer group of three librdkafka consumers (confluent-kafka); one leaves.

    python3 group_consume.py --bootstrap B --topic T --partitions P --records N

Produces N keyed records, then runs three consumers of one group, each in its own thread.
Each takes a batch, records what it got, and commits the batch synchronously before taking
the next, so nothing it took goes uncommitted. Once all three hold partitions and half the
records are read, the third closes (leaving the group). N more records are produced, and the
two left read on until every record is read. Checks:

- the first generation split the partitions over three members, the last over two, and the
  two hold every partition;
- every record was read exactly once, none twice: the partitions of the member that left
  were taken over from its committed offsets;
- the group's committed offsets are the ends of the partitions.

With --hold it stops once the three share the topic, prints "holding" and waits for a line
on stdin, the consumers reading on meanwhile: the caller kills an agent then (the group's
coordinator). A commit that fails through that is excused: the records of its batch may be
read twice, no others.

Prints "ok READ MEMBERS_BEFORE MEMBERS_AFTER ..." or exits non-zero with what went wrong.
"""

import argparse
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from shared import Reads


def produce(bootstrap, topic, start, n):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    failed = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    for i in range(start, start + n):
        p.produce(topic, key=f"key-{i}", value=f"value-{i}", on_delivery=delivered)
        p.poll(0)
    if p.flush(60) != 0 or failed:
        sys.exit(f"produce failed: {failed[:3]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--group", default="three")
    ap.add_argument("--assignor", default="range", help="range, roundrobin or cooperative-sticky")
    ap.add_argument(
        "--hold",
        action="store_true",
        help='once three members share the topic, print "holding" and wait for a line on '
        "stdin (the caller kills the group's coordinator meanwhile)",
    )
    a = ap.parse_args()

    produce(a.bootstrap, a.topic, 0, a.records)
    total = 2 * a.records
    r = Reads()
    lock, seen, assigned, errors = r.lock, r.seen, r.assigned, r.errors
    stop = [threading.Event() for _ in range(3)]
    started = time.monotonic()

    def member(i):
        # An eager assignor hands out and revokes whole assignments; the cooperative one
        # adds and takes away a few partitions at a time.
        cooperative = a.assignor == "cooperative-sticky"

        def on_assign(_c, parts):
            with lock:
                now = assigned.get(i, set()) if cooperative else set()
                assigned[i] = now | {p.partition for p in parts}

        def on_revoke(_c, parts):
            with lock:
                gone = {p.partition for p in parts} if cooperative else assigned.get(i, set())
                assigned[i] = assigned.get(i, set()) - gone

        c = Consumer(
            {
                "bootstrap.servers": a.bootstrap,
                "group.id": a.group,
                "client.id": f"member-{i}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "partition.assignment.strategy": a.assignor,
            }
        )
        c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
        try:
            while not stop[i].is_set():
                batch = c.consume(num_messages=200, timeout=0.2)
                good = []
                for m in batch:
                    if m.error():
                        errors.append(f"member {i}: {m.error()}")
                        continue
                    good.append(m)
                if not good:
                    continue
                with lock:
                    for m in good:
                        r.record(m.partition(), m.offset(), m.value())
                try:
                    c.commit(asynchronous=False)
                except KafkaException as e:
                    # A cooperative member reads on while the group rebalances, and a commit
                    # while the leader's plan is awaited is refused (as Kafka does).
                    busy = e.args[0].code() == KafkaError.REBALANCE_IN_PROGRESS
                    if not (a.hold or (cooperative and busy)):
                        errors.append(f"member {i} commit: {e}")
                    # Through a coordinator's death or a rebalance a commit may fail: whoever
                    # takes the partitions over may read this batch again, and only it.
                    with lock:
                        r.excused.update((m.partition(), m.offset()) for m in good)
        finally:
            # Leaves the group: its partitions go to the others at once.
            c.close()

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()

    wait = r.wait

    wait(
        "three members sharing every partition, and half the records read",
        lambda: len(seen) >= a.records // 2
        and sum(1 for s in assigned.values() if s) == 3
        and set().union(*assigned.values()) == set(range(a.partitions)),
    )
    with lock:
        before = sorted(len(s) for s in assigned.values())
    if a.hold:
        print("holding", flush=True)
        sys.stdin.readline()
    stop[2].set()
    threads[2].join(30)
    if threads[2].is_alive():
        sys.exit("the third member did not close")
    produce(a.bootstrap, a.topic, a.records, a.records)
    wait(
        "the two left holding every partition and every record read",
        lambda: len(seen) >= total
        and sum(1 for i, s in assigned.items() if s and i != 2) == 2
        and set().union(*(assigned[i] for i in (0, 1))) == set(range(a.partitions)),
    )
    with lock:
        after = sorted(len(assigned[i]) for i in (0, 1))
    for i in (0, 1):
        stop[i].set()
    for t in threads[:2]:
        t.join(30)

    r.check_once(total)
    # The group's committed offsets are the partitions' ends.
    check = Consumer({"bootstrap.servers": a.bootstrap, "group.id": a.group})
    parts = [TopicPartition(a.topic, p) for p in range(a.partitions)]
    committed = check.committed(parts, timeout=30)
    for tp in committed:
        _lo, hi = check.get_watermark_offsets(tp, timeout=30)
        if tp.offset != hi:
            sys.exit(f"partition {tp.partition}: committed {tp.offset}, end {hi}")
    check.close()
    print(
        f"ok {len(seen)} {before} {after} in {time.monotonic() - started:.1f}s, "
        f"{len(r.twice)} read again after failed commits"
    )


if __name__ == "__main__":
    main()
