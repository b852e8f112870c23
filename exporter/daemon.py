"""Builds the pollers from the settings, schedules them, serves HTTP, reloads on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from exporter.clusterroles import ClusterPrimaries
from exporter.clusterstate import ClusterState
from exporter.config import ConfigError, Settings, load_settings
from exporter.httpserver import HttpServer
from exporter.inventory import Inventory, Watched
from exporter.model import TargetId
from exporter.patronimembers import PatroniMembers
from exporter.patroniwatch import PatroniWatch, refresh_all
from exporter.poller import TargetPoller
from exporter.render import render
from exporter.scheduler import PollScheduler
from exporter.snapshot import SnapshotStore, TargetSnapshot

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0


def _signature(settings: Settings, watched: Watched) -> tuple[object, ...]:
    """What a poller depends on: a reload keeps a poller whose signature did not change."""
    return (
        watched.config,
        settings.poll_interval,
        settings.poll_timeout,
        settings.poll_jitter,
        settings.connect_timeout,
        settings.statement_timeout,
        settings.pool_max_connections,
    )


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.inventory = Inventory(settings)
        self.patroni = PatroniMembers()
        self.inventory.origins.append(self.patroni)
        self.primaries = ClusterPrimaries()
        self._discovery_task: asyncio.Task[None] | None = None
        self._patroni_task: asyncio.Task[None] | None = None
        # the Patroni refresh and a reload may both apply: one at a time
        self._apply_lock = asyncio.Lock()
        self.store = SnapshotStore(render)
        self.scheduler = PollScheduler()
        self.pollers: dict[TargetId, TargetPoller] = {}
        self._signatures: dict[TargetId, tuple[object, ...]] = {}
        self.clusters: dict[str, ClusterState] = {}
        self._heartbeat = time.monotonic()
        self._heartbeat_task: asyncio.Task[None] | None = None

    @property
    def settings(self) -> Settings:
        return self.inventory.settings

    def healthy(self) -> bool:
        # read from HTTP threads: both are plain attribute reads
        fresh = time.monotonic() - self._heartbeat < 10 * HEARTBEAT_SECONDS
        return self.scheduler.running and fresh

    async def start(self) -> None:
        self.scheduler.start()
        self._heartbeat_task = asyncio.create_task(self._beat(), name="heartbeat")
        await self._refresh_inventory()
        await self._apply_inventory(initial=True)
        self._discovery_task = asyncio.create_task(self._discover(), name="cluster files")

    async def reload(self, settings: Settings) -> None:
        """A new settings file (SIGHUP): re-apply with the discovered clusters."""
        self.inventory.reconfigure(settings)
        await self._refresh_inventory()
        await self._apply_inventory()

    async def _apply_inventory(self, initial: bool = False) -> None:
        """Apply the inventory; Patroni clusters never read are read first, so that their
        members are watched from the start rather than one refresh later."""
        clusters = self.inventory.clusters()
        new = [c for c in clusters if self.patroni.pending(c)]
        if new:
            await refresh_all(self.patroni, new, self.settings.connect_timeout)
        await self.apply(initial=initial)
        if self._patroni_task is None and any(c.patroni is not None for c in clusters):
            # the background refresh starts with the first Patroni cluster (none without)
            watch = PatroniWatch(self.inventory, self.patroni, self._members_changed,
                                 self.publish_daemon_metrics)
            self._patroni_task = asyncio.create_task(watch.run(), name="patroni")

    async def _members_changed(self) -> None:
        await self.apply(reason="Patroni members changed")

    def publish_daemon_metrics(self) -> None:
        """The process-wide series: cluster files, shard, Patroni, primaries per cluster."""
        self.store.set_daemon_metrics([
            *self.inventory.daemon_metrics(), *self.patroni.metrics(),
            *self.primaries.metrics(),
        ])

    async def _discover(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cluster_files_refresh)
            if await self._refresh_inventory():
                await self._apply_inventory()

    async def _refresh_inventory(self) -> bool:
        if self.inventory.files is None:
            return False  # nothing to read: no worker thread (and its memory) for nothing
        # file reads run off the event loop: a slow disk must not delay a poll
        return await asyncio.to_thread(self.inventory.refresh)

    async def _beat(self) -> None:
        while True:
            self._heartbeat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def apply(self, initial: bool = False, reason: str = "configuration reloaded"
                    ) -> None:
        """Make the running pollers match the inventory; unchanged targets keep pool and data."""
        async with self._apply_lock:
            await self._apply(initial, reason)

    async def _apply(self, initial: bool, reason: str) -> None:
        settings = self.settings
        watched = {w.id: w for w in self.inventory.targets()}
        wanted = {target_id: _signature(settings, w) for target_id, w in watched.items()}
        removed = [t for t in self.pollers if self._signatures.get(t) != wanted.get(t)]
        for target_id in removed:
            await self._remove(target_id)
        self._update_clusters(watched.values())
        self.store.expect(wanted)
        self.primaries.expect(wanted)
        self.publish_daemon_metrics()
        added = [t for t in wanted if t not in self.pollers]
        for target_id in added:
            await self._add(watched[target_id], wanted[target_id], settings)
        if not initial:
            log.info(
                "%s: %d targets (%d added, %d removed)", reason,
                len(wanted), len(added), len([t for t in removed if t not in wanted]),
            )

    def _update_clusters(self, watched: Iterable[Watched]) -> None:
        names = {w.cluster for w in watched}
        for name in names - set(self.clusters):
            self.clusters[name] = ClusterState(name)
        for name in set(self.clusters) - names:
            del self.clusters[name]

    async def _add(
        self, watched: Watched, signature: tuple[object, ...], settings: Settings
    ) -> None:
        poller = TargetPoller(self.clusters[watched.cluster], watched.config, settings)
        self.pollers[poller.id] = poller
        self._signatures[poller.id] = signature
        await poller.open()
        self.scheduler.add(str(poller.id), self._job(poller), poller.interval, poller.jitter,
                           group=poller.phase_group)

    def _job(self, poller: TargetPoller) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                snapshot: TargetSnapshot = await poller.poll()
            except asyncio.CancelledError:
                # only at shutdown; APScheduler would log the cancelled job as an ERROR.
                # The task ends either way, so nothing waits on the cancellation.
                return
            self.store.publish(snapshot)
            if self.primaries.observe(snapshot):
                self.publish_daemon_metrics()

        return run

    async def _remove(self, target_id: TargetId) -> None:
        self.scheduler.remove(str(target_id))
        poller = self.pollers.pop(target_id)
        self._signatures.pop(target_id, None)
        state = self.clusters.get(target_id.cluster)
        if state is not None:
            state.forget(target_id.target)
        await poller.close()

    async def stop(self) -> None:
        self.scheduler.shutdown()
        for task in (self._heartbeat_task, self._discovery_task, self._patroni_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(p.close() for p in self.pollers.values()), return_exceptions=True
        )
        self.pollers.clear()


def _serve(settings: Settings, path: Path, daemon: Daemon) -> HttpServer:
    web = None
    if settings.web_config_file:
        from exporter.webconfig import load_web_config  # only where a web-config is given

        web = load_web_config(settings.web_config_file)
    try:
        http = HttpServer(
            settings.listen_host, settings.listen_port, daemon.store, daemon.healthy,
            web=web, web_path=settings.web_config_file,
            health_without_auth=settings.health_without_auth,
            routing=lambda: daemon.settings.routing,
        )
    except OSError as exc:
        raise ConfigError(
            f"{path}: listen: cannot listen on {settings.listen}: {exc.strerror}"
        ) from None
    http.start()
    return http


async def _reload(path: Path, daemon: Daemon) -> None:
    try:
        # off the event loop: a slow disk or a FIFO must not delay a poll
        new = await asyncio.to_thread(load_settings, path)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return
    if new.listen != daemon.settings.listen:
        log.warning("listen changed to %s: takes effect after a restart", new.listen)
    await daemon.reload(new)


async def run_daemon(settings: Settings, path: Path) -> int:
    """Runs until SIGTERM or SIGINT; SIGHUP re-reads `path`. Returns the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    reload_requested = asyncio.Event()
    # handlers only set flags; the loop below does the work
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)

    daemon = Daemon(settings)
    http = _serve(settings, path, daemon)
    host, port = http.address
    log.info("tierwatch listening on %s://%s:%d/metrics, %d targets",
             http.scheme, host, port, len(daemon.inventory.targets()))
    await daemon.start()
    try:
        while not stop.is_set():
            waiter = asyncio.create_task(reload_requested.wait())
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if reload_requested.is_set() and not stop.is_set():
                reload_requested.clear()
                await _reload(path, daemon)
    finally:
        log.info("shutting down")
        http.stop()
        await daemon.stop()
    return 0
