"""The single list of every metric tierwatch exports: name, type, labels and help.

Collectors take their families from here; the README metrics table and the coverage test
are generated from it. Every family also carries `cluster` and `target` labels (added by the
renderer) except `tierwatch_build_info`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from exporter.model import Metric

MetricType = Literal["gauge", "counter", "histogram"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()  # beyond cluster and target
    section: str = ""
    per_target: bool = True  # False: no cluster/target labels (build info)

    def __call__(self, value: float, *labels: str) -> Metric:
        """A sample of this family; label values in the order of `labels`."""
        if len(labels) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {len(labels)} values")
        # a number or None where a name belongs would make the renderer fail, and with it
        # /metrics for every target: refuse it here, inside the collector's guarded parse
        if not all(isinstance(label, str) for label in labels):
            raise TypeError(f"{self.name}: label values must be text")
        return Metric(self, labels, float(value))


CATALOGUE: dict[str, MetricSpec] = {}


def _spec(
    name: str,
    type_: MetricType,
    help_: str,
    labels: tuple[str, ...] = (),
    *,
    section: str,
    per_target: bool = True,
) -> MetricSpec:
    if name in CATALOGUE:
        raise ValueError(f"{name} catalogued twice")
    if (type_ == "counter") != name.endswith("_total"):
        raise ValueError(f"{name}: counters and only counters end in _total")
    spec = MetricSpec(name, type_, help_, labels, section, per_target)
    CATALOGUE[name] = spec
    return spec


# --- daemon and targets ------------------------------------------------------------------
D = "daemon"
UP = _spec("tierwatch_up", "gauge", "1 if the last poll of the target succeeded, else 0.",
           ("kind",), section=D)
POLL_DURATION = _spec("tierwatch_poll_duration_seconds", "histogram",
                      "Wall time of each poll of the target in seconds.", ("kind",), section=D)
POLL_ERRORS = _spec("tierwatch_poll_errors_total", "counter",
                    "Failed polls of the target.", ("kind",), section=D)
LAST_SUCCESS = _spec("tierwatch_last_poll_success_timestamp_seconds", "gauge",
                     "Unix time in seconds of the last successful poll of the target.",
                     ("kind",), section=D)
POOL_CONNECTIONS = _spec("tierwatch_pool_connections", "gauge",
                         "The daemon's own connections to the target, by state.",
                         ("kind", "state"), section=D)
POOL_MAX_CONNECTIONS = _spec("tierwatch_pool_max_connections", "gauge",
                             "The daemon's own connection pool limit for the target.",
                             ("kind",), section=D)
COLLECTOR_SUCCESS = _spec("tierwatch_collector_success", "gauge",
                          "1 if the collector's query succeeded in the last poll, else 0.",
                          ("kind", "collector"), section=D)
BUILD_INFO = _spec("tierwatch_build_info", "gauge",
                   "Always 1; the tierwatch version and the Python version running it.",
                   ("version", "python_version"), section=D, per_target=False)
CLUSTER_FILE_VALID = _spec("tierwatch_cluster_file_valid", "gauge",
                           "1 if the cluster file parsed at its last change, else 0 "
                           "(its last good clusters stay watched).",
                           ("file",), section=D, per_target=False)
SHARD_INFO = _spec("tierwatch_shard_info", "gauge",
                   "Always 1; this process's shard index and the shard count.",
                   ("shard_index", "shard_count"), section=D, per_target=False)

# --- PostgreSQL ---------------------------------------------------------------------------
P = "postgres"
PG_IN_RECOVERY = _spec("tierwatch_pg_in_recovery", "gauge",
                       "1 on a replica (in recovery), 0 on a primary.", section=P)
PG_CONNECTIONS = _spec("tierwatch_pg_connections", "gauge",
                       "Client backends by pg_stat_activity state.", ("state",), section=P)
PG_MAX_CONNECTIONS = _spec("tierwatch_pg_max_connections", "gauge",
                           "The server's max_connections setting.", section=P)
PG_SERVER_INFO = _spec("tierwatch_pg_server_info", "gauge",
                       "Always 1; the server's PostgreSQL version (from server_version_num).",
                       ("version",), section=P)
PG_BLOCKS_HIT = _spec("tierwatch_pg_blocks_hit_total", "counter",
                      "Shared buffer hits, in blocks.", ("datname",), section=P)
PG_BLOCKS_READ = _spec("tierwatch_pg_blocks_read_total", "counter",
                       "Blocks read from disk or the OS cache.", ("datname",), section=P)
PG_CACHE_HIT_RATIO = _spec("tierwatch_pg_cache_hit_ratio", "gauge",
                           "Blocks hit / (hit + read) between the last two polls (0-1).",
                           ("datname",), section=P)
PG_APPLICATION_CONNECTIONS = _spec(
    "tierwatch_pg_application_connections", "gauge",
    "Client backends per application_name (20 largest, the rest as 'other').",
    ("application_name",), section=P)
PG_OLDEST_TRANSACTION = _spec("tierwatch_pg_oldest_transaction_seconds", "gauge",
                              "Age in seconds of the oldest open client transaction (0 if none).",
                              section=P)

# --- replication, primary view --------------------------------------------------------------
R = "replication-primary"
PG_REPLICAS_STREAMING = _spec("tierwatch_pg_replicas_streaming", "gauge",
                              "Rows of pg_stat_replication in state streaming.", section=R)
PG_REPLICATION_LAG_BYTES = _spec("tierwatch_pg_replication_lag_bytes", "gauge",
                                 "Current WAL LSN minus the replica's LSN at that stage, in bytes.",
                                 ("replica", "stage"), section=R)
PG_REPLICATION_LAG_SECONDS = _spec("tierwatch_pg_replication_lag_seconds", "gauge",
                                   "pg_stat_replication lag at that stage in seconds "
                                   "(0 when the stage's byte lag is 0).",
                                   ("replica", "stage"), section=R)
PG_SLOT_RETAINED_BYTES = _spec("tierwatch_pg_replication_slot_retained_bytes", "gauge",
                               "WAL held back by the replication slot, in bytes.",
                               ("slot", "slot_type"), section=R)
PG_SLOT_ACTIVE = _spec("tierwatch_pg_replication_slot_active", "gauge",
                       "1 if the replication slot is in use.", ("slot", "slot_type"), section=R)

# --- replication, replica view --------------------------------------------------------------
V = "replication-replica"
PG_REPLICA_LAG_SECONDS = _spec("tierwatch_pg_replica_lag_seconds", "gauge",
                               "How far behind the primary the replica's visible data is, "
                               "in seconds.", section=V)
PG_REPLICA_LAG_BYTES = _spec("tierwatch_pg_replica_lag_bytes", "gauge",
                             "Primary's WAL LSN (or the replica's receive LSN) minus the "
                             "replica's replay LSN, in bytes.", section=V)
PG_WAL_RECEIVER_UP = _spec("tierwatch_pg_wal_receiver_up", "gauge",
                           "1 if the replica's WAL receiver is streaming.", section=V)
PG_REPLAY_PAUSED = _spec("tierwatch_pg_replay_paused", "gauge",
                         "1 if WAL replay is paused on the replica.", section=V)

# --- PgBouncer ------------------------------------------------------------------------------
B = "pgbouncer"
BOUNCER_CLIENTS = _spec("tierwatch_pgbouncer_clients", "gauge",
                        "Client connections per pool by state (SHOW POOLS cl_*).",
                        ("database", "user", "state"), section=B)
BOUNCER_SERVERS = _spec("tierwatch_pgbouncer_servers", "gauge",
                        "Server connections per pool by state (SHOW POOLS sv_*).",
                        ("database", "user", "state"), section=B)
BOUNCER_MAX_WAIT = _spec("tierwatch_pgbouncer_max_wait_seconds", "gauge",
                         "Age in seconds of the oldest waiting client of the pool.",
                         ("database", "user"), section=B)
BOUNCER_POOL_SIZE = _spec("tierwatch_pgbouncer_pool_size", "gauge",
                          "Effective pool size of the database (SHOW DATABASES).",
                          ("database",), section=B)
BOUNCER_SATURATION = _spec("tierwatch_pgbouncer_pool_saturation_ratio", "gauge",
                           "(Active server connections + waiting clients) / pool size; "
                           ">= 1 means clients queue.", ("database", "user"), section=B)
BOUNCER_CLIENT_CONNECTIONS = _spec("tierwatch_pgbouncer_client_connections", "gauge",
                                   "All client connections to PgBouncer.", section=B)
BOUNCER_MAX_CLIENT_CONNECTIONS = _spec("tierwatch_pgbouncer_max_client_connections", "gauge",
                                       "PgBouncer's max_client_conn setting.", section=B)
BOUNCER_TRANSACTIONS = _spec("tierwatch_pgbouncer_transactions_total", "counter",
                             "Transactions pooled by PgBouncer (SHOW STATS).", ("database",),
                             section=B)
BOUNCER_QUERIES = _spec("tierwatch_pgbouncer_queries_total", "counter",
                        "Queries pooled by PgBouncer (SHOW STATS).", ("database",), section=B)
BOUNCER_WAIT_SECONDS = _spec("tierwatch_pgbouncer_wait_seconds_total", "counter",
                             "Time in seconds clients spent waiting for a server.",
                             ("database",), section=B)

# --- Redis ----------------------------------------------------------------------------------
X = "redis"
REDIS_HITS = _spec("tierwatch_redis_keyspace_hits_total", "counter",
                   "Successful key lookups (INFO keyspace_hits).", section=X)
REDIS_MISSES = _spec("tierwatch_redis_keyspace_misses_total", "counter",
                     "Failed key lookups (INFO keyspace_misses).", section=X)
REDIS_HIT_RATIO = _spec("tierwatch_redis_cache_hit_ratio", "gauge",
                        "Hits / (hits + misses) between the last two polls (0-1).", section=X)
REDIS_EVICTED = _spec("tierwatch_redis_evicted_keys_total", "counter",
                      "Keys evicted because of maxmemory.", section=X)
REDIS_EXPIRED = _spec("tierwatch_redis_expired_keys_total", "counter",
                      "Keys removed because their TTL passed.", section=X)
REDIS_MEMORY_USED = _spec("tierwatch_redis_memory_used_bytes", "gauge",
                          "Memory used by Redis in bytes (used_memory).", section=X)
REDIS_MEMORY_MAX = _spec("tierwatch_redis_memory_max_bytes", "gauge",
                         "The maxmemory setting in bytes (0 = no limit).", section=X)
REDIS_POLICY = _spec("tierwatch_redis_maxmemory_policy_info", "gauge",
                     "Always 1; the maxmemory-policy in force.", ("policy",), section=X)
REDIS_CLIENTS = _spec("tierwatch_redis_connected_clients", "gauge",
                      "Client connections (INFO connected_clients).", section=X)
REDIS_MAX_CLIENTS = _spec("tierwatch_redis_max_clients", "gauge",
                          "The maxclients setting.", section=X)
REDIS_REJECTED = _spec("tierwatch_redis_rejected_connections_total", "counter",
                       "Connections rejected because of maxclients.", section=X)
REDIS_KEYS = _spec("tierwatch_redis_keys", "gauge", "Keys per database.", ("db",), section=X)
REDIS_KEYS_EXPIRING = _spec("tierwatch_redis_keys_expiring", "gauge",
                            "Keys with a TTL per database.", ("db",), section=X)

# --- extras beyond the contract, one block per collector module ------------------------------
# (collector authors: add your own specs below under a comment naming your module)

# --- PgBouncer and Redis extras (collectors/pgbouncer_*.py, redis_*.py) ----------------------
BOUNCER_CANCEL_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_cancel_connections", "gauge",
    "Connections busy with cancel requests per pool (SHOW POOLS *_cancel*, PgBouncer 1.18+).",
    ("database", "user", "state"), section=B)
BOUNCER_RESERVE_POOL_SIZE = _spec("tierwatch_pgbouncer_reserve_pool_size", "gauge",
                                  "Extra server connections the database may open under load.",
                                  ("database",), section=B)
BOUNCER_DB_SERVER_CONNECTIONS = _spec("tierwatch_pgbouncer_database_server_connections", "gauge",
                                      "Server connections open for the database.",
                                      ("database",), section=B)
BOUNCER_DB_MAX_SERVER_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_database_max_server_connections", "gauge",
    "max_db_connections of the database (0 = no limit).", ("database",), section=B)
BOUNCER_DB_PAUSED = _spec("tierwatch_pgbouncer_database_paused", "gauge",
                          "1 if the database is paused (PAUSE).", ("database",), section=B)
BOUNCER_DB_DISABLED = _spec("tierwatch_pgbouncer_database_disabled", "gauge",
                            "1 if the database is disabled (DISABLE).", ("database",), section=B)
BOUNCER_DB_CLIENT_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_database_client_connections", "gauge",
    "Client connections to the database (SHOW DATABASES, PgBouncer 1.24+).", ("database",),
    section=B)
BOUNCER_DB_MAX_CLIENT_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_database_max_client_connections", "gauge",
    "max_db_client_connections of the database (0 = no limit; PgBouncer 1.24+).",
    ("database",), section=B)
BOUNCER_USER_SERVER_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_user_server_connections", "gauge",
    "Server connections open for the user, across its pools (SHOW USERS, 1.23+).", ("user",),
    section=B)
BOUNCER_USER_MAX_SERVER_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_user_max_server_connections", "gauge",
    "max_user_connections of the user (0 = no limit; SHOW USERS, 1.23+).", ("user",),
    section=B)
BOUNCER_USER_CLIENT_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_user_client_connections", "gauge",
    "Client connections of the user (SHOW USERS, PgBouncer 1.24+).", ("user",), section=B)
BOUNCER_USER_MAX_CLIENT_CONNECTIONS = _spec(
    "tierwatch_pgbouncer_user_max_client_connections", "gauge",
    "max_user_client_connections of the user (0 = no limit; PgBouncer 1.24+).", ("user",),
    section=B)
BOUNCER_CLIENT_PARSES = _spec("tierwatch_pgbouncer_client_parses_total", "counter",
                              "Prepared-statement Parse messages from clients (1.21+).",
                              ("database",), section=B)
BOUNCER_SERVER_PARSES = _spec("tierwatch_pgbouncer_server_parses_total", "counter",
                              "Parse messages PgBouncer sent to servers (1.21+).",
                              ("database",), section=B)
BOUNCER_BINDS = _spec("tierwatch_pgbouncer_binds_total", "counter",
                      "Bind messages of prepared statements (1.21+).", ("database",), section=B)
BOUNCER_RECEIVED_BYTES = _spec("tierwatch_pgbouncer_received_bytes_total", "counter",
                               "Network traffic received from clients, in bytes.",
                               ("database",), section=B)
BOUNCER_SENT_BYTES = _spec("tierwatch_pgbouncer_sent_bytes_total", "counter",
                           "Network traffic sent to clients, in bytes.", ("database",), section=B)
BOUNCER_TRANSACTION_SECONDS = _spec("tierwatch_pgbouncer_transaction_seconds_total", "counter",
                                    "Time in seconds server connections spent in transactions.",
                                    ("database",), section=B)
BOUNCER_QUERY_SECONDS = _spec("tierwatch_pgbouncer_query_seconds_total", "counter",
                              "Time in seconds server connections spent running queries.",
                              ("database",), section=B)
BOUNCER_SERVER_ASSIGNMENTS = _spec("tierwatch_pgbouncer_server_assignments_total", "counter",
                                   "Times a server connection was assigned to a client "
                                   "(PgBouncer 1.23+).", ("database",), section=B)
BOUNCER_AVG_WAIT = _spec("tierwatch_pgbouncer_avg_wait_seconds", "gauge",
                         "Average wait in seconds of clients served in the last stats_period.",
                         ("database",), section=B)
BOUNCER_SERVER_CONNECTIONS = _spec("tierwatch_pgbouncer_server_connections", "gauge",
                                   "All server connections of PgBouncer (SHOW LISTS used_servers).",
                                   section=B)
BOUNCER_LOGIN_CLIENTS = _spec("tierwatch_pgbouncer_login_clients", "gauge",
                              "Client connections still logging in.", section=B)
BOUNCER_POOLS = _spec("tierwatch_pgbouncer_pools", "gauge",
                      "Pools PgBouncer holds, including its own admin pool.", section=B)

REDIS_FRAGMENTATION = _spec("tierwatch_redis_memory_fragmentation_ratio", "gauge",
                            "Resident memory / used memory (INFO mem_fragmentation_ratio).",
                            section=X)
REDIS_MEMORY_RSS = _spec("tierwatch_redis_memory_rss_bytes", "gauge",
                         "Resident memory of the server process in bytes.", section=X)
REDIS_EVICTED_CLIENTS = _spec("tierwatch_redis_evicted_clients_total", "counter",
                              "Clients evicted because of maxmemory-clients (Redis 7.0+).",
                              section=X)
REDIS_UPTIME = _spec("tierwatch_redis_uptime_seconds", "gauge",
                     "Seconds since the server started.", section=X)
REDIS_BLOCKED_CLIENTS = _spec("tierwatch_redis_blocked_clients", "gauge",
                              "Clients waiting in a blocking command (BLPOP, WAIT, ...).",
                              section=X)
REDIS_COMMANDS = _spec("tierwatch_redis_commands_processed_total", "counter",
                       "Commands the server processed.", section=X)
REDIS_CONNECTIONS_RECEIVED = _spec("tierwatch_redis_connections_received_total", "counter",
                                   "Client connections the server accepted.", section=X)
REDIS_SERVER_INFO = _spec("tierwatch_redis_server_info", "gauge",
                          "Always 1; the server software (redis or valkey) and its version.",
                          ("server", "version"), section=X)
REDIS_IS_REPLICA = _spec("tierwatch_redis_is_replica", "gauge",
                         "1 if the server is a replica (role slave), 0 on a master.", section=X)
REDIS_CONNECTED_REPLICAS = _spec("tierwatch_redis_connected_replicas", "gauge",
                                 "Replicas connected to this server.", section=X)
REDIS_REPL_OFFSET = _spec("tierwatch_redis_replication_offset_bytes", "gauge",
                          "The server's replication stream position (master_repl_offset), "
                          "in bytes.", section=X)
REDIS_REPLICA_OFFSET = _spec("tierwatch_redis_replica_processed_offset_bytes", "gauge",
                             "On a replica: replication stream position applied "
                             "(slave_repl_offset), in bytes.", section=X)
REDIS_REPLICA_LAG_BYTES = _spec("tierwatch_redis_replica_lag_bytes", "gauge",
                                "On a master: its offset minus the replica's acknowledged "
                                "offset, in bytes.", ("replica",), section=X)
REDIS_MASTER_LINK_UP = _spec("tierwatch_redis_master_link_up", "gauge",
                             "On a replica: 1 if the link to its master is up.", section=X)
REDIS_MASTER_LAST_IO = _spec("tierwatch_redis_master_last_io_seconds", "gauge",
                             "On a replica: seconds since the last interaction with its master.",
                             section=X)

# --- PostgreSQL extras (collectors/pg_*.py) ---------------------------------------------------
PG_SESSIONS = _spec("tierwatch_pg_sessions_total", "counter",
                    "Sessions established to the database (pg_stat_database.sessions, 14+); "
                    "its rate is the connection rate.", ("datname",), section=P)
PG_SESSIONS_ABANDONED = _spec("tierwatch_pg_sessions_abandoned_total", "counter",
                              "Sessions ended because the client went away.", ("datname",),
                              section=P)
PG_SESSIONS_FATAL = _spec("tierwatch_pg_sessions_fatal_total", "counter",
                          "Sessions ended by a fatal error.", ("datname",), section=P)
PG_SESSIONS_KILLED = _spec("tierwatch_pg_sessions_killed_total", "counter",
                           "Sessions terminated by the operator (pg_terminate_backend).",
                           ("datname",), section=P)
PG_FROZEN_XID_AGE = _spec("tierwatch_pg_database_frozen_xid_age", "gauge",
                          "Transactions since the database's oldest unfrozen XID "
                          "(age(datfrozenxid)); wraparound stops writes near 2^31.",
                          ("datname",), section=P)
PG_WAL_POSITION = _spec("tierwatch_pg_wal_position_bytes", "gauge",
                        "WAL position in bytes: the current WAL LSN on a primary, the replay "
                        "LSN on a replica (rate() is the WAL rate).", section=P)
PG_SLOT_SAFE_WAL_SIZE = _spec("tierwatch_pg_replication_slot_safe_wal_size_bytes", "gauge",
                              "WAL the slot may still fall behind before "
                              "max_slot_wal_keep_size invalidates it, in bytes (absent when "
                              "unlimited).", ("slot", "slot_type"), section=R)
PG_SLOT_WAL_STATUS = _spec("tierwatch_pg_replication_slot_wal_status", "gauge",
                           "1 for the slot's wal_status (reserved, extended, unreserved, "
                           "lost), 0 for the others.", ("slot", "slot_type", "wal_status"),
                           section=R)
PG_REPLICA_LAG_FROM_PRIMARY = _spec("tierwatch_pg_replica_lag_from_primary", "gauge",
                                    "1 if replica lag was measured against the primary's "
                                    "recent WAL positions, 0 if it fell back to the "
                                    "replica's own view.", section=V)

# --- cluster roles and Patroni (CONTRACT §6) ----------------------------------------------
K = "cluster"
PG_TIMELINE_ID = _spec("tierwatch_pg_timeline_id", "gauge",
                       "The server's current timeline; it grows by one at every promotion.",
                       section=P)
# cluster-level series: per_target=False, the `cluster` label is their own (the daemon
# publishes them beside the snapshots: clusterroles.py, patronimembers.py)
CLUSTER_PRIMARIES = _spec("tierwatch_cluster_primaries", "gauge",
                          "PostgreSQL targets of the cluster that are up and not in recovery "
                          "(1 when healthy; 2+ a split brain, 0 none).",
                          ("cluster",), section=K, per_target=False)
PATRONI_UP = _spec("tierwatch_patroni_up", "gauge",
                   "1 if a member's Patroni REST API answered /cluster at the last refresh.",
                   ("cluster",), section=K, per_target=False)
PATRONI_MEMBER_INFO = _spec("tierwatch_patroni_member_info", "gauge",
                            "Always 1; the member's role and state as Patroni's /cluster last "
                            "reported them (absent while Patroni does not answer).",
                            ("cluster", "target", "role", "state"), section=K,
                            per_target=False)
