"""What a process tree listens on, from `ss -ltnpH` (the kernel's view, not Ray's config)."""

from __future__ import annotations

import os
import re
import subprocess


def descendants(root: int) -> set[int]:
    """`root` and every process below it (Ray's gcs_server, raylet, agents and workers of a driver)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def listening(pids: set[int]) -> set[tuple[str, str]]:
    """{(local address, process name)} of the TCP listeners owned by `pids`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = set()
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            name = re.search(r'\(\("([^"]+)"', line)
            found.add((line.split()[3], name.group(1) if name else "?"))
    return found


def is_loopback(address: str) -> bool:
    """ "127.0.0.1:80", "[::ffff:127.0.0.1]:80" and "[::1]:80" are loopback; "*:80", "0.0.0.0:80" are not."""
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith(("127.", "::ffff:127.")) or host == "::1"
