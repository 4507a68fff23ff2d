"""What /proc says about a server process and the machine: the process tree, the TCP
ports it listens on, the CPU it has used, and how busy all cores are.

Linux only, like the rest of the benches (they read /proc, and start servers on port 0
to learn the bound port here: nothing else can take a port between a pick and a bind).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

_PROC = Path("/proc")
_SOCKET = re.compile(r"^socket:\[(\d+)\]$")
_LISTEN = "0A"  # the TCP state in /proc/net/tcp{,6}


def _stats() -> dict[int, list[str]]:
    """pid -> the fields of /proc/pid/stat after the command name (state first)."""
    found: dict[int, list[str]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
    return found


def _tree(root: int, stats: dict[int, list[str]]) -> set[int]:
    parents = {pid: int(fields[1]) for pid, fields in stats.items()}
    tree = {root}
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return tree


def process_tree(root: int) -> set[int]:
    """Process ``root`` and its descendants (those alive now)."""
    return _tree(root, _stats())


def cpu_seconds(root: int) -> float:
    """User + system CPU of process ``root`` and its descendants, from /proc."""
    stats = _stats()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(
        (int(stats[pid][11]) + int(stats[pid][12])) / tick
        for pid in _tree(root, stats)
        if pid in stats
    )


def listening_ports(root: int) -> set[int]:
    """The TCP ports that process ``root`` or a descendant holds a listening socket on."""
    inodes: set[str] = set()
    for pid in process_tree(root):
        try:
            fds = list((_PROC / str(pid) / "fd").iterdir())
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                found = _SOCKET.match(os.readlink(fd))
            except OSError:
                continue  # closed meanwhile
            if found:
                inodes.add(found[1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / str(root) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue  # no IPv6, or the process is gone
        for line in lines:
            fields = line.split()
            # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid
            # timeout inode ...
            if fields[3] == _LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def machine_busy(seconds: float) -> float:
    """The share of all cores' time spent working during ``seconds``, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in (_PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    total, idle = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle) / max(1, total_after - total)
