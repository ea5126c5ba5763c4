"""A python3 program for `dunk exec` tests: files, json, re, sqlite3 and mmap,
all in the working directory. Its output and the files it leaves depend on
nothing but its code, so a native run and a run in VM mode must agree byte
for byte."""

import hashlib
import json
import mmap
import os
import re
import sqlite3


def files():
    os.mkdir("files")
    with open("files/log.txt", "w") as f:
        for i in range(2000):
            f.write(f"{i:05d} event={['open', 'read', 'write', 'close'][i % 4]} size={i * 37 % 4096}\n")
    with open("files/log.txt", "a") as f:
        f.write("end\n")
    os.rename("files/log.txt", "files/events.log")
    os.symlink("events.log", "files/latest")
    with open("files/latest") as f:
        lines = f.readlines()
    print("files:", sorted(os.listdir("files")), len(lines), os.stat("files/events.log").st_size)
    return "".join(lines)


def regex(text):
    sizes = [int(s) for s in re.findall(r"event=write size=(\d+)", text)]
    print("re: writes", len(sizes), "bytes", sum(sizes))
    redacted = re.sub(r"size=\d+", "size=?", text)
    print("re: redacted sha256", hashlib.sha256(redacted.encode()).hexdigest())


def json_roundtrip():
    doc = {"name": "dunk", "rings": [0, 3], "nested": {"pi": 3.141592653589793, "ok": True, "none": None},
           "text": "caf\u00e9 \u2603", "numbers": list(range(50))}
    with open("doc.json", "w") as f:
        json.dump(doc, f, sort_keys=True, indent=1, ensure_ascii=False)
    with open("doc.json") as f:
        back = json.load(f)
    print("json: roundtrip", back == doc, json.dumps(back["nested"], sort_keys=True))


def database():
    db = sqlite3.connect("data.db")
    db.execute("create table events (id integer primary key, kind text, size integer)")
    db.executemany("insert into events (kind, size) values (?, ?)",
                   [(["open", "read", "write", "close"][i % 4], i * 37 % 4096) for i in range(5000)])
    db.execute("create index by_kind on events (kind)")
    db.commit()
    try:
        with db:
            db.execute("delete from events")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    for kind, count, total in db.execute("select kind, count(*), sum(size) from events group by kind order by kind"):
        print("sqlite3:", kind, count, total)
    db.close()


def mapped():
    size = 1 << 20
    with open("mapped.bin", "wb") as f:
        f.write(bytes(size))
    with open("mapped.bin", "r+b") as f:
        m = mmap.mmap(f.fileno(), size)
        for off in range(0, size, 4096):
            m[off:off + 8] = off.to_bytes(8, "little")
        m.flush()
        m.close()
    with open("mapped.bin", "rb") as f:
        data = f.read()
    anon = mmap.mmap(-1, 3 * 4096)
    anon.write(b"anonymous mapping")
    anon.seek(0)
    print("mmap:", hashlib.sha256(data).hexdigest(), anon.read(17).decode())
    anon.close()


regex(files())
json_roundtrip()
database()
mapped()
