"""librdkafka (confluent-kafka) against a Kafka listener with TLS and tokens.

    python3 secured.py --bootstrap B --ca CA.pem --token T --topic TOPIC

- With SASL/OAUTHBEARER carrying the token: creates TOPIC, produces 100 records and reads
  them back through a consumer group.
- With SASL/PLAIN and the token as the password: reads them back again.
- With a wrong token: the client reports an authentication failure and gets nothing.

Prints "ok" or exits non-zero with what went wrong.
"""

import argparse
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--topic", required=True)
    a = ap.parse_args()

    tls = {"bootstrap.servers": a.bootstrap, "security.protocol": "SASL_SSL", "ssl.ca.location": a.ca}
    oauth = dict(tls, **{"sasl.mechanisms": "OAUTHBEARER", "oauth_cb": lambda _cfg: (a.token, time.time() + 3600)})
    plain = dict(tls, **{"sasl.mechanisms": "PLAIN", "sasl.username": "app", "sasl.password": a.token})

    admin = AdminClient(oauth)
    for _t, f in admin.create_topics([NewTopic(a.topic, 2, 1)]).items():
        f.result(30)
    # The partitions need leaders before a produce can find them.
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(a.topic, timeout=10).topics[a.topic]
        if md.error is None and len(md.partitions) == 2 and all(p.leader >= 0 for p in md.partitions.values()):
            break
        if time.monotonic() > deadline:
            sys.exit(f"no leaders for {a.topic}")
        time.sleep(0.1)

    p = Producer(oauth)
    failed = []
    for i in range(100):
        p.produce(a.topic, key=f"k{i}", value=f"v{i}", on_delivery=lambda e, _m: e and failed.append(e))
    if p.flush(30) != 0 or failed:
        sys.exit(f"produce failed: {failed[:3]}")

    def read_all(conf, group):
        c = Consumer(dict(conf, **{"group.id": group, "auto.offset.reset": "earliest"}))
        c.subscribe([a.topic])
        got = set()
        deadline = time.monotonic() + 60
        while len(got) < 100 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                sys.exit(f"consume failed: {m.error()}")
            got.add(m.value().decode())
        c.close()
        return got

    want = {f"v{i}" for i in range(100)}
    if read_all(oauth, "oauth-readers") != want:
        sys.exit("OAUTHBEARER: not every record read back")
    if read_all(plain, "plain-readers") != want:
        sys.exit("PLAIN: not every record read back")

    # A wrong token: librdkafka reports the authentication failure through its error callback.
    errors = []
    wrong = dict(plain, **{"sasl.password": a.token + "x", "error_cb": errors.append})
    c = Consumer(dict(wrong, **{"group.id": "strangers"}))
    c.subscribe([a.topic])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(e.code() == KafkaError._AUTHENTICATION for e in errors):
        m = c.poll(0.2)
        if m is not None and not m.error():
            sys.exit("a wrong token read a record")
    c.close()
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    if not auth:
        sys.exit(f"a wrong token was not refused: {errors[:3]}")
    if "not accepted" not in auth[0].str():
        sys.exit(f"the refusal does not say why: {auth[0].str()}")
    print("ok")


if __name__ == "__main__":
    main()
