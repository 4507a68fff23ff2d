"""Real failovers on loopback: a Postgres primary with a streaming replica, and a Redis
primary with a replica under three Sentinels.

The proxy (chaos/_proxy.py) makes a dependency fail the way the network does; these
make it fail the way a cluster does: the primary goes away and another server takes
its role (a promoted standby, a replica the Sentinels elect), at another address. Both
context managers start every server they need, listening on 127.0.0.1 only (on free
ports), with their files in a temporary folder of their own; on exit, however it
comes (an error, a cancellation, Ctrl-C), every process is killed and the folder is
removed. Servers are also told to stop if this process dies without a clean exit
(Linux's parent-death signal).

async with postgres_pair(synchronous=True) as pg:   # a primary and a streaming replica
    url = await pg.create_database("lomash")   # migrated, seeded, on the replica too
    pg.url / pg.replica_url              # postgres database: multi-host URL / replica only
    pg.url_for("lomash"), pg.replica_url_for("lomash")
    await pg.stop_primary()              # an immediate shutdown (a crash), or kill=True
    await pg.promote()                   # the replica becomes a writable primary
    await pg.wait_replicated()           # the replica has replayed all the primary wrote
    await pg.sql(pg.replica_port, "SELECT 1")  # one statement through psql

async with redis_sentinel_group() as rs:   # primary, replica, three Sentinels
    rs.url                               # redis+sentinel://127.0.0.1:S1,S2,S3/lomash
    await rs.kill_primary()              # SIGKILL
    await rs.wait_promoted()             # the Sentinels name the replica as master
    await rs.restart_old_primary()       # back, and made a replica by the Sentinels
    await rs.command("KEYS", "*")        # one command to the current primary

Postgres refuses to run as root: when we are root, its servers and tools run as the
``postgres`` user (``POSTGRES_USER``), which then owns the temporary folder; the
parent folder must be reachable by that user (when it is not, the system's temporary
folder is used). Replication is asynchronous unless ``synchronous=True``: then a
commit waits for the replica, and a promotion loses nothing that was confirmed (with
asynchronous replication the last commits before a crash can be lost: a 201 that the
promoted replica never heard of). The multi-host URL relies on libpq-style
``target_session_attrs`` (asyncpg tries each host in turn and keeps the one that
takes writes; adapters/_postgres.py gives each host its own share of the connect
timeout, so a silent old primary does not hide the promoted one).

Sentinels: quorum 2 of 3, ``down-after-milliseconds`` 1000 and ``failover-timeout``
5000, so a failover takes a few seconds; they are told of each other and of the
replica at start, and the replica's first sync starts at once, so the group is ready
in well under a second. Servers run with ``--save "" --appendonly no``.

Control queries go through ``psql`` and a minimal RESP client (``redis_command``),
not through asyncpg / redis-py, so these helpers work in any trio task; only
``create_database`` (migrations and the seed) needs an asyncio loop, and opens one
if the caller has none. Ports are free ones picked at start (one taken meanwhile is
replaced by another). Servers are started from the calling (trio) thread, not a
worker thread, since the parent-death signal follows the thread that forked.
"""

from __future__ import annotations

from chaos._postgres_pair import PostgresPair, postgres_pair
from chaos._sentinels import (
    SENTINEL_SERVICE,
    RedisReplyError,
    Reply,
    SentinelGroup,
    redis_command,
    redis_sentinel_group,
)
from chaos._servers import POSTGRES_USER, ClusterError, find_postgres_bin, find_redis_server

__all__ = [
    "POSTGRES_USER",
    "SENTINEL_SERVICE",
    "ClusterError",
    "PostgresPair",
    "RedisReplyError",
    "Reply",
    "SentinelGroup",
    "find_postgres_bin",
    "find_redis_server",
    "postgres_pair",
    "redis_command",
    "redis_sentinel_group",
]
