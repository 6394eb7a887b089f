"""Runs inside a lab guest (python3, standard library): on which NUMA node is each page of a file?

Input on stdin, JSON:
  {"path": FILE, "pid": PID or null, "ranges": [[first_page, end_page, node], ...]}
With a pid, the pages are looked up in that process's mappings of FILE, as it maps them. Without one, this process maps FILE and reads one byte of every page that is
already in the page cache (mincore), so nothing new is allocated, then looks them up.
Lookups use move_pages(2) with no target nodes, which only reports.

Output, JSON: per range of expected pages, how many are on the node ("placed"), elsewhere
("wrong") or not present ("absent"); and "by_node": every page of the file by node.
"""

import ctypes
import json
import os
import sys

SYS_MOVE_PAGES = 279  # x86_64
PAGE = os.sysconf("SC_PAGE_SIZE")
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]


def page_nodes(pid, addrs):
    """Node of the page at each address in process pid (0: this one); negative: absent."""
    out = []
    chunk = 16384
    for first in range(0, len(addrs), chunk):
        part = addrs[first:first + chunk]
        pages = (ctypes.c_void_p * len(part))(*part)
        status = (ctypes.c_int * len(part))()
        rc = libc.syscall(SYS_MOVE_PAGES, ctypes.c_int(pid), ctypes.c_ulong(len(part)), pages, None, status, ctypes.c_int(0))
        if rc < 0:
            raise OSError(ctypes.get_errno(), "move_pages")
        out += list(status)
    return out


def mapped_addresses(pid, path, n_pages):
    """The address of each file page in pid's mappings of path (None where it maps none)."""
    addrs = [None] * n_pages
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6 or parts[5] != path:
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            first = int(parts[2], 16) // PAGE
            for i in range(min((end - start) // PAGE, n_pages - first)):
                if addrs[first + i] is None:
                    addrs[first + i] = start + i * PAGE
    if all(a is None for a in addrs):
        raise SystemExit(f"process {pid} does not map {path}")
    return addrs


def map_cached(path, size):
    fd = os.open(path, os.O_RDONLY)
    base = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
    if base in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    n = (size + PAGE - 1) // PAGE
    vec = (ctypes.c_ubyte * n)()
    if libc.mincore(ctypes.c_void_p(base), ctypes.c_size_t(size), vec) != 0:
        raise OSError(ctypes.get_errno(), "mincore")
    for i in range(n):
        if vec[i] & 1:
            ctypes.string_at(base + i * PAGE, 1)  # maps the cached page; allocates nothing
    return base


def main():
    req = json.load(sys.stdin)
    path, pid = req["path"], req["pid"]
    size = os.stat(path).st_size
    n_pages = (size + PAGE - 1) // PAGE
    if pid:
        addrs = mapped_addresses(pid, path, n_pages)
    else:
        base, pid = map_cached(path, size), 0
        addrs = [base + i * PAGE for i in range(n_pages)]
    found = page_nodes(pid, [a for a in addrs if a is not None])
    it = iter(found)
    nodes = [next(it) if a is not None else -2 for a in addrs]  # -2 (ENOENT): not mapped
    by_node = {}
    for s in nodes:
        key = str(s) if s >= 0 else "absent"
        by_node[key] = by_node.get(key, 0) + 1
    ranges = []
    for first, end, node in req["ranges"]:
        got = nodes[first:end]
        placed = sum(1 for s in got if s == node)
        absent = sum(1 for s in got if s < 0)
        ranges.append({"placed": placed, "wrong": len(got) - placed - absent, "absent": absent})
    json.dump({"page_size": PAGE, "pages": n_pages, "by_node": by_node, "ranges": ranges}, sys.stdout)


main()
