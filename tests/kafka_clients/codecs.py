"""kafka-python (PyPI) producing and consuming with each compression codec.

    python3 codecs.py --bootstrap HOST:PORT --topic T

For each of none, gzip, snappy, lz4 and zstd, a producer (acks=all) sends 500 keyed records
with a header to partition 0, and a consumer assigned to it reads them back from where they
began: keys, values, headers and order equal. Prints "ok CODEC..." or exits non-zero.
"""

import argparse
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    a = p.parse_args()
    tp = TopicPartition(a.topic, 0)
    done = []
    for codec in [None, "gzip", "snappy", "lz4", "zstd"]:
        producer = KafkaProducer(bootstrap_servers=a.bootstrap, acks="all",
                                 compression_type=codec, linger_ms=5)
        futures = [
            producer.send(a.topic, partition=0, key=f"k{i}".encode(),
                          value=(f"{codec}-{i}-" + "x" * 200).encode(),
                          headers=[("codec", str(codec).encode())])
            for i in range(500)
        ]
        producer.flush(30)
        offsets = [f.get(timeout=30).offset for f in futures]
        producer.close()
        if offsets != list(range(offsets[0], offsets[0] + 500)):
            sys.exit(f"{codec}: offsets not dense: {offsets[:5]}...")
        consumer = KafkaConsumer(bootstrap_servers=a.bootstrap, enable_auto_commit=False,
                                 consumer_timeout_ms=10_000)
        consumer.assign([tp])
        consumer.seek(tp, offsets[0])
        got = []
        for m in consumer:
            got.append(m)
            if len(got) == 500:
                break
        consumer.close()
        if len(got) != 500:
            sys.exit(f"{codec}: read {len(got)} of 500")
        for i, m in enumerate(got):
            want = (f"k{i}".encode(), (f"{codec}-{i}-" + "x" * 200).encode())
            if (m.key, m.value) != want or m.offset != offsets[i]:
                sys.exit(f"{codec}: record {i} is {m.key!r} {m.value[:20]!r} at {m.offset}")
            if list(m.headers) != [("codec", str(codec).encode())]:
                sys.exit(f"{codec}: record {i} headers {m.headers!r}")
        done.append(str(codec))
    print("ok " + " ".join(done), flush=True)


if __name__ == "__main__":
    main()
