"""Every catalogued metric shows up in a real scrape, and every scraped metric is catalogued."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from exporter.catalogue import CATALOGUE
from tests.support import DaemonProcess, family_of, scrape_with_families
from tests.topology import Topology

# Present only in situations this single scrape does not create, each proven elsewhere.
SITUATIONAL = {
    # PgBouncer 1.21+ only; the shared topology runs 1.18: checked live on 1.24 by
    # tests/integration/test_pgbouncer.py::test_columns_of_newer_versions_are_exported
    **dict.fromkeys((
        "tierwatch_pgbouncer_server_assignments_total",
        "tierwatch_pgbouncer_database_client_connections",
        "tierwatch_pgbouncer_database_max_client_connections",
        "tierwatch_pgbouncer_user_server_connections",
        "tierwatch_pgbouncer_user_max_server_connections",
        "tierwatch_pgbouncer_user_client_connections",
        "tierwatch_pgbouncer_user_max_client_connections",
        "tierwatch_pgbouncer_client_parses_total",
        "tierwatch_pgbouncer_server_parses_total",
        "tierwatch_pgbouncer_binds_total",
    ), "test_columns_of_newer_versions_are_exported"),
    # a Redis replica / a master with replicas: tests/integration/test_redis.py
    "tierwatch_redis_replica_lag_bytes": "test_replication_views_of_master_and_replica",
    "tierwatch_redis_replica_processed_offset_bytes":
        "test_replication_views_of_master_and_replica",
    "tierwatch_redis_master_link_up": "test_replication_views_of_master_and_replica",
    "tierwatch_redis_master_last_io_seconds": "test_replication_views_of_master_and_replica",
    # a Patroni cluster: tests/integration/test_patroni.py (static clusters have neither)
    "tierwatch_patroni_up": "test_three_members_one_leader_and_a_monitor_role",
    "tierwatch_patroni_member_info": "test_three_members_one_leader_and_a_monitor_role",
}


def test_catalogue_and_scrape_agree(
    topology: Topology, daemon_factory: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    # a slot WAL limit, so safe_wal_size is reported; restored below
    topology.psql(topology.primary, "ALTER SYSTEM SET max_slot_wal_keep_size = '1GB'")
    topology.psql(topology.primary, "SELECT pg_reload_conf()")
    try:
        files = tmp_path / "clusters.d"
        files.mkdir()
        (files / "none.yaml").write_text("[]\n")
        config = yaml.safe_load(topology.tierwatch_config(poll_interval=1.0))
        config["cluster_files"] = [str(files / "*.yaml")]
        daemon = daemon_factory(yaml.safe_dump(config))
        scrape = scrape_with_families(daemon, topology, set(CATALOGUE) - set(SITUATIONAL), 20)
    finally:
        topology.psql(topology.primary, "ALTER SYSTEM RESET max_slot_wal_keep_size")
        topology.psql(topology.primary, "SELECT pg_reload_conf()")

    uncatalogued = {n for n in scrape.names() if family_of(n) not in CATALOGUE}
    assert not uncatalogued, uncatalogued
    # types agree with the catalogue (the parser strips _total from counter family names)
    for name, spec in CATALOGUE.items():
        family = name.removesuffix("_total") if spec.type == "counter" else name
        if family in scrape.types:
            assert scrape.types[family] == spec.type, name
    # the daemon's own series carry exactly the catalogued labels
    for sample in scrape.samples:
        spec = CATALOGUE[family_of(sample.name)]
        expected = set(spec.labels) | ({"cluster", "target"} if spec.per_target else set())
        if sample.name.endswith("_bucket"):
            expected.add("le")
        assert set(sample.labels) == expected, (sample.name, sample.labels)
