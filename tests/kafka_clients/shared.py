"""What the group scripts share: a group's record of what its member threads read."""

import sys
import threading
import time


class Reads:
    """What a group's members read, under one lock: each record's (partition, offset) and
    value, the ones read twice, each member's partitions, and errors."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}
        self.twice = []
        self.assigned = {}
        self.errors = []
        # Records that may be read twice: their batch's commit failed.
        self.excused = set()

    def record(self, partition, offset, value):
        """Called with the lock held."""
        k = (partition, offset)
        if k in self.seen:
            self.twice.append(k)
        self.seen[k] = value

    def wait(self, what, cond, within=90):
        """Waits until `cond()` (called with the lock held) holds; exits with what was seen if
        it does not within `within` seconds, or at the first error."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                if self.errors:
                    sys.exit(f"errors: {self.errors[:3]}")
                if cond():
                    return
            time.sleep(0.05)
        with self.lock:
            sys.exit(f"timed out waiting for {what}: read {len(self.seen)}, assigned {self.assigned}")

    def check_once(self, total):
        """Exits unless records value-0 .. value-(total-1) were each read, and once only but
        for those whose batch's commit failed."""
        if self.errors:
            sys.exit(f"errors: {self.errors[:5]}")
        unexcused = [k for k in self.twice if k not in self.excused]
        if unexcused:
            sys.exit(f"{len(unexcused)} records read twice, first {unexcused[:5]}")
        values = sorted(int(v.decode().split("-")[1]) for v in self.seen.values())
        if values != list(range(total)):
            sys.exit(f"read {len(values)} distinct records of {total}")
