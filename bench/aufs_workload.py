#!/usr/bin/env python3
"""The workload of bench/aufs.sh.

  aufs_workload.py populate DIR   makes the lower layer
  aufs_workload.py run MOUNT      runs the phases on a union of it, prints seconds per phase
"""
import json
import os
import sys
import time

SMALL_FILES = 3000
BIG_FILES = 4
BIG_SIZE = 64 << 20
BIG_DIR_ENTRIES = 10000
TREE_DIRS, TREE_FILES = 50, 100


def populate(d):
    os.makedirs(f"{d}/big", exist_ok=True)
    chunk = bytes(range(256)) * 4096
    for i in range(BIG_FILES):
        with open(f"{d}/big/f{i}", "wb") as f:
            for _ in range(BIG_SIZE // len(chunk)):
                f.write(chunk)
    os.makedirs(f"{d}/bigdir", exist_ok=True)
    for i in range(BIG_DIR_ENTRIES):
        open(f"{d}/bigdir/entry-{i:05}", "wb").close()
    for i in range(TREE_DIRS):
        os.makedirs(f"{d}/tree/d{i}", exist_ok=True)
        for j in range(TREE_FILES):
            with open(f"{d}/tree/d{i}/f{j}", "wb") as f:
                f.write(b"x" * 100)


def timed(fn):
    # Start each phase with nothing dirty, so earlier writes (this side's or another's) are
    # not flushed on its time.
    os.sync()
    t = time.perf_counter()
    fn()
    return round(time.perf_counter() - t, 4)


def small_creates(m):
    os.mkdir(f"{m}/small")
    data = b"y" * 1024
    for i in range(SMALL_FILES):
        with open(f"{m}/small/s{i}", "wb") as f:
            f.write(data)


def copy_up(m):
    for i in range(BIG_FILES):
        with open(f"{m}/big/f{i}", "ab") as f:
            f.write(b"appended")
            f.flush()
            os.fsync(f.fileno())


def readdir(m):
    for _ in range(20):
        n = sum(1 for _ in os.scandir(f"{m}/bigdir"))
        assert n == BIG_DIR_ENTRIES, n


def stats(m):
    for _ in range(3):
        for i in range(TREE_DIRS):
            base = f"{m}/tree/d{i}"
            for j in range(TREE_FILES):
                os.lstat(f"{base}/f{j}")
        time.sleep(0)


def run(m):
    out = {
        "small-file creates": timed(lambda: small_creates(m)),
        "large-file copy-up": timed(lambda: copy_up(m)),
        "readdir big dirs": timed(lambda: readdir(m)),
        "metadata stats": timed(lambda: stats(m)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    {"populate": populate, "run": run}[sys.argv[1]](sys.argv[2])
