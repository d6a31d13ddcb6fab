"""The device agent: one loop that keeps the programme synced, plays it, records plays and delivers them.

Threads: the MQTT link's network thread and a sync thread hand their results to the main loop through a queue; all
state changes happen in the main loop. Events go into the outbox before anything else is done with them, and leave
it only when the server's ack covers them.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

from playlists import topics
from playlists.manifest import Manifest, ManifestError, format_utc, parse_manifest
from playlists.payloads import decode_config, decode_notify

from device_agent import commands, events, schedule
from device_agent.link import Link, LinkOptions
from device_agent.outbox import Outbox
from device_agent.player import Player
from device_agent.store import AgentStore
from device_agent.sync import Syncer, SyncResult, metadata_expiry
from device_agent.timekeeping import TimeKeeper

log = logging.getLogger(__name__)
AGENT_VERSION = "0.4.0"  # 0.4.0: reads manifest schema 2 (slot days) as well as 1
CONFIG_FILE = "config.json"


@dataclass
class AgentOptions:
    """Knobs with defaults for a real device; tests shorten them."""

    tick_s: float = 1.0  # main loop period, in device-clock seconds
    progress_interval_s: float = 60.0
    batch_size: int = 200
    window: int = 5  # batches in flight before an ack
    resend_after_s: float = 30.0  # real seconds without ack progress before unacked events are sent again
    sync_every_s: float = 6 * 3600.0
    status_every_s: Optional[float] = None  # default: the config's report_interval
    outbox_capacity: int = 100_000
    quota_bytes: Optional[int] = None
    retry_first_s: float = 30.0  # a sync the network broke is tried again after about this long, then 2x, 4x...
    retry_cap_s: float = 1800.0
    link: LinkOptions = field(default_factory=LinkOptions)


@dataclass
class Backoff:
    """Waits before retrying a sync the network broke: FIRST_S, doubling up to CAP_S, each drawn from the upper half
    of its step so that a county's devices do not all come back in the same second after an outage."""

    first_s: float
    cap_s: float
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        """Seconds to wait after one more failure."""
        step = min(self.cap_s, self.first_s * 2 ** min(self.failures, 32))
        self.failures += 1
        return step / 2 + self.rng.random() * step / 2

    def reset(self) -> None:
        """A sync got through: the next failure waits FIRST_S again."""
        self.failures = 0


def _start_thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    """Run TARGET(*ARGS) in a daemon thread of its own (a device runs one sync at a time)."""
    thread = threading.Thread(target=target, args=args, name="sync", daemon=True)
    thread.start()
    return thread


class Agent:
    """Everything one device does, over its store and hardware."""

    def __init__(self, store: AgentStore, hw, options: AgentOptions = AgentOptions(),
                 reboot: Callable[[], None] = lambda: None, rng: Optional[random.Random] = None, *,
                 link_factory: Callable[..., Link] = Link, spawn: Optional[Callable[..., Any]] = None):
        """LINK_FACTORY builds the MQTT link and SPAWN(fn, *args) runs a sync off the main loop and returns a handle;
        the fleet simulator passes links driven by its one event loop and a thread pool's submit."""
        self.store = store
        self.hw = hw
        self.options = options
        self.reboot = reboot
        store.ensure()
        self.creds = store.credentials()
        self.device = self.creds["device"]
        self.config: dict[str, Any] = store.read_json(CONFIG_FILE) or dict(self.creds.get("config") or {})
        self.time = TimeKeeper(hw.clock, store, signed_expiry=metadata_expiry(store))
        self.outbox = Outbox(store.outbox_path, capacity=options.outbox_capacity)
        epoch = int(self.config.get("sequence_epoch", 1))
        if epoch > self.outbox.epoch:
            self.outbox.set_epoch(epoch)
        self.player = Player(hw, self.outbox, store, self.time, progress_interval=options.progress_interval_s)
        self.syncer = Syncer(store, hw.storage, self.time, quota_bytes=options.quota_bytes)
        self.inbox: queue.Queue = queue.Queue()
        self.wake = threading.Event()
        self.link = link_factory(self.creds, self._on_message, options=options.link, on_connect=self._on_connect)
        self._spawn = spawn or _start_thread
        self.link.channel = self.config.get("channel")
        self.manifest: Optional[Manifest] = self._load_manifest()
        self.sync_state, self.sync_reason, self.stale = "idle", "", False
        self._sync_thread: Any = None  # the running sync's thread (or future); None when none runs
        self._sync_wanted: Optional[bool] = None  # None: no sync wanted; else whether to force it
        self._sync_forced = False  # whether the running sync ignores the download window
        self._last_sync = -1e18
        self._retry = Backoff(options.retry_first_s, options.retry_cap_s, rng or random.Random())
        self._retry_at: Optional[float] = None  # device-clock monotonic time of the next retry, if one is due
        self._retry_force = False
        self._sent_upto: dict[int, int] = {}
        self._last_ack_progress = 0.0
        self._last_status: Optional[dict] = None
        self._last_status_at = -1e18
        self._reboot_requested = False
        self._reported_sync_error: Optional[str] = None
        self.stopped = threading.Event()

    # -- startup ------------------------------------------------------------------------------------------------
    def _load_manifest(self) -> Optional[Manifest]:
        data = self.store.current_manifest()
        if data is None:
            return None
        try:
            return parse_manifest(data)
        except ManifestError:
            log.exception("the stored manifest cannot be read; waiting for a new sync")
            return None

    def start(self) -> None:
        """Close what a power cut interrupted, connect, and ask for a first sync."""
        self.player.recover()
        self.link.start()
        self.request_sync(force=self.manifest is None)

    # -- inputs from other threads ----------------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes, properties) -> None:
        self.inbox.put(("message", topic, payload))
        self.wake.set()

    def _on_connect(self) -> None:
        self.inbox.put(("connected", None, None))
        self.wake.set()

    def request_sync(self, force: bool = False) -> None:
        """Sync as soon as possible (FORCE ignores the download window)."""
        self._sync_wanted = bool(force or self._sync_wanted)
        self.wake.set()

    def request_reboot(self) -> None:
        """Restart the device after this loop round (events are already safe in the outbox)."""
        self._reboot_requested = True

    # -- the loop --------------------------------------------------------------------------------------------------------
    def run(self, stop: Optional[threading.Event] = None) -> None:
        """Run until STOP is set."""
        from device_agent.watchdog import Watchdog

        stop = stop or threading.Event()
        watchdog = Watchdog()
        self.start()
        watchdog.ready()
        try:
            while not stop.is_set():
                self.step()
                watchdog.alive()
                if self._reboot_requested:
                    self._reboot_requested = False
                    self.reboot()
                self.hw.clock.wait(self.wake, self.options.tick_s)
                self.wake.clear()
        finally:
            self.close()

    def close(self) -> None:
        """Stop playback cleanly, disconnect and close the outbox."""
        self.player.stop("stopped")
        self.link.stop()
        self.time.save()
        self.outbox.close()
        self.stopped.set()

    def step(self) -> None:
        """One round: messages, sync results, keys and schedule, playback, sync timer, delivery, status."""
        self._drain_inbox()
        self._inputs()
        self.player.tick()
        self._maybe_sync()
        self.deliver()
        self.publish_status()
        self._show()

    def display_text(self) -> str:
        """The one line the device's display or status LED shows."""
        if self.player.playing is not None:
            return f"▶ {self.player.playing['item']['title']}"
        if self.manifest is None:
            if self.sync_state != "error":
                return "等待节目 waiting for the first programme"
            reason = self.sync_reason if len(self.sync_reason) <= 120 else self.sync_reason[:119] + "…"
            return f"同步失败 sync failed: {reason}"
        mark = " (过期 stale)" if self.stale else ""
        return f"■ {len(self.manifest.items)} 课 lessons, v{self.manifest.version}{mark}"

    def _show(self) -> None:
        text = self.display_text()
        if text != self.hw.display.last:
            self.hw.display.show(text)

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, topic, payload = self.inbox.get_nowait()
            except queue.Empty:
                return
            try:
                if kind == "connected":
                    self._sent_upto.clear()  # whatever is unacked goes again on every reconnect
                    self._last_status = None
                    self.request_sync()
                elif kind == "synced":
                    self._synced(payload)
                else:
                    self._message(topic, payload)
            except Exception as exc:  # a bad message must not stop the device; it is reported instead
                log.exception("handling %s failed", topic)
                self.outbox.record(events.error(self.time, "message_failed", f"{topic}: {exc}"))

    def _message(self, topic: str, payload: bytes) -> None:
        kind = topics.parse(topic).kind
        if kind == "config":
            if payload:
                self._apply_config(json.loads(payload))
        elif kind == "notify":
            notify = decode_notify(payload)
            if self.manifest is None or notify.manifest_version > self.manifest.version:
                self.request_sync(force=notify.urgent)  # urgent: "download now", whatever the download window
        elif kind == "ack":
            ack = json.loads(payload)
            if self.outbox.ack(int(ack["epoch"]), int(ack["seq"])):
                self._last_ack_progress = self.hw.clock.monotonic()
        elif kind == "cmd":
            commands.handle(self, payload)

    def _apply_config(self, raw: dict) -> None:
        config = decode_config(json.dumps(raw).encode())  # validates; unknown fields are dropped
        if config.revoked:
            log.error("the county revoked this device; it stops using its credentials")
            self.link.stop()
        old_channel = self.config.get("channel")
        self.config = raw
        self.store.write_json(CONFIG_FILE, raw)
        if config.sequence_epoch > self.outbox.epoch:
            self.outbox.set_epoch(config.sequence_epoch)
        if config.channel != old_channel:
            self.link.follow_channel(config.channel)
            self.request_sync(force=True)
        if self.hw.audio.volume != config.volume:
            self.hw.audio.set_volume(config.volume)

    def _inputs(self) -> None:
        for key in self.hw.keys.poll():
            self._key(key)
        if self.hw.checkin is not None:
            # A meeting's members at the door are one commit, not one fsync each (a terminal on an SD card).
            self.outbox.record_many([events.checkin(self.time, method, credential)
                                     for method, credential in self.hw.checkin.poll()])
        if self.manifest is not None and self.hw.kind == "terminal" and self.player.playing is None:
            zone = ZoneInfo(self.config.get("timezone") or "Asia/Shanghai")
            local = self.time.now().astimezone(zone).replace(tzinfo=None)
            decision = schedule.decide(self.manifest, local, self.player.state, "terminal")
            if decision.play:
                self.player.state.last_slot = decision.slot_key
                self._play(decision.item, "schedule", position=0.0,
                           slot_kind=decision.slot.kind if decision.slot is not None else None)

    def _play(self, item, trigger: str, position: Optional[float] = None, slot_kind: Optional[str] = None) -> None:
        from firmware_stub.hal import AudioError

        try:
            self.player.start(item, trigger, position, slot_kind)
        except AudioError as exc:
            self.outbox.record(events.error(self.time, "play_failed", f"{item.title}: {exc}"))

    def _key(self, key: str) -> None:
        if self.manifest is None:
            return
        today = self.time.now().astimezone(ZoneInfo(self.config.get("timezone") or "Asia/Shanghai")).date()
        mandatory = schedule.radio_playlist(self.manifest, today)
        current = self.player.playing["item"]["sha256"] if self.player.playing else self.player.state.current
        audio = self.hw.audio
        if key == "play_pause":
            if self.player.playing is not None:
                self.player.pause_toggle()
            elif mandatory:
                item = next((i for i in mandatory if i.sha256 == current), None) or self._first_unfinished(mandatory)
                self._play(item, "key")
        elif key in ("next", "previous") and mandatory:
            item = schedule.next_item(mandatory, current, 1 if key == "next" else -1)
            if item is not None:
                self._play(item, "key")
        elif key == "menu":
            menu = schedule.radio_menu(self.manifest, today)
            if menu:
                choice = schedule.next_item(menu, self.player.state.menu_choice, 1)
                self.player.state.menu_choice = choice.sha256
                self._play(choice, "key")
        elif key in ("volume_up", "volume_down"):
            step = 10 if key == "volume_up" else -10
            audio.set_volume(max(0, min(100, audio.volume + step)))

    def _first_unfinished(self, items):
        return next((i for i in items if i.sha256 not in self.player.state.completed), items[0])

    def find_item(self, programme: Any, position: Any):
        """The current manifest's item by programme code and position, or None."""
        if self.manifest is None:
            return None
        return next((i for i in self.manifest.items if i.programme == programme and i.position == position), None)

    # -- sync ------------------------------------------------------------------------------------------------------------
    def _maybe_sync(self) -> None:
        now = self.hw.clock.monotonic()
        if self._sync_thread is not None or not self.config.get("channel"):
            return
        due = now - self._last_sync >= self.options.sync_every_s
        retry = self._retry_at is not None and now >= self._retry_at
        if self._sync_wanted is None and not due and not retry:
            return
        force = bool(self._sync_wanted) or (retry and self._retry_force)
        self._sync_wanted, self._retry_at, self._sync_forced = None, None, force
        self._last_sync = now
        self.sync_state = "checking"
        config = dict(self.config)
        self._sync_thread = self._spawn(self._sync_worker, config, force)

    def _sync_worker(self, config: dict, force: bool) -> None:
        try:
            result = self.syncer.run(config, force=force)
        except Exception as exc:  # reported in status; the old programme keeps playing
            log.exception("sync crashed")
            result = SyncResult("error", reason=f"{type(exc).__name__}: {exc}")
        self.inbox.put(("synced", None, result))
        self.wake.set()

    def _synced(self, result: SyncResult) -> None:
        self._sync_thread = None
        self.sync_state, self.sync_reason = result.state, result.reason
        self.stale = result.stale
        if result.switched:
            self.manifest = self._load_manifest()
            log.info("now playing manifest v%s", self.manifest.version if self.manifest else None)
        self._log_and_retry(result)
        if result.state == "error" and result.reason != self._reported_sync_error:
            # Once per distinct problem: a boat retrying every few hours must not fill its outbox with the same error.
            self.outbox.record(events.error(self.time, "sync_failed", result.reason))
        self._reported_sync_error = result.reason if result.state == "error" else None

    def _log_and_retry(self, result: SyncResult) -> None:
        """The journal line for a failed sync, and a retry soon when the network was to blame."""
        if result.state != "error":
            self._retry.reset()
            return
        if result.transient:
            delay = self._retry.next_delay()
            # A broken link heals in real time, so a simulated clock running faster than real time waits as long.
            self._retry_at = self.hw.clock.monotonic() + delay * self._speed()
            self._retry_force = self._sync_forced
            log.warning("sync failed: %s; trying again in %.0f s", result.reason, delay)
            return
        self._retry.reset()
        log.warning("sync %s: %s", "refused" if result.problem == "refused" else "failed", result.reason)

    # -- delivery ----------------------------------------------------------------------------------------------------------
    def deliver(self) -> None:
        """Send unacked events in batches; send again whatever an ack has not covered in time."""
        if not self.link.connected.is_set():
            return
        now = self.hw.clock.monotonic()
        pending = self.outbox.pending(self.options.batch_size * self.options.window)
        if not pending:
            self._last_ack_progress = now
            return
        if self._sent_upto and now - self._last_ack_progress > self.options.resend_after_s * self._speed():
            self._sent_upto.clear()  # the broker may have dropped them: send again from the first unacked
            self._last_ack_progress = now
        if not self._sent_upto:
            self._last_ack_progress = now
        batches: list[list[dict]] = []
        for event in pending:
            epoch = event["epoch"]
            if event["seq"] <= self._sent_upto.get(epoch, 0):
                continue
            if batches and (len(batches[-1]) >= self.options.batch_size or batches[-1][0]["epoch"] != epoch):
                batches.append([])
            if not batches:
                batches.append([])
            batches[-1].append(event)
        for batch in batches[: self.options.window]:
            epoch, first, last = batch[0]["epoch"], batch[0]["seq"], batch[-1].get("seq_last") or batch[-1]["seq"]
            body = json.dumps({"device": self.device, "epoch": epoch, "events": batch}, ensure_ascii=False,
                              separators=(",", ":")).encode()
            props = [("device", self.device), ("epoch", str(epoch)), ("seq", f"{first}-{last}")]
            if not self.link.publish(topics.events(self.device), body, user_properties=props):
                return
            self._sent_upto[epoch] = last

    def _speed(self) -> float:
        return getattr(self.hw.clock, "speed", 1.0)

    # -- status ------------------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What staff see about this device."""
        battery = self.hw.battery.level()
        expiry = metadata_expiry(self.store)
        stale = self.stale or (expiry is not None and self.time.now() > expiry)
        return {
            "online": True,
            "battery": None if battery is None else int(battery),
            "storage_free_mb": self.hw.storage.free_bytes() // (1024 * 1024),
            "storage_total_mb": self.hw.storage.total_bytes() // (1024 * 1024),
            "firmware": self.hw.firmware, "agent_version": AGENT_VERSION,
            "channel": self.manifest.channel if self.manifest else self.config.get("channel"),
            "manifest_version": self.manifest.version if self.manifest else None,
            "sync": self.sync_state, "sync_reason": self.sync_reason, "stale": stale,
            "queue": self.outbox.depth(), "outbox_compacted": self.outbox.compactions,
            "clock_wrong": self.time.clock_wrong(),
            "playing": self.player.playing["item"]["title"] if self.player.playing else None,
        }

    def publish_status(self) -> None:
        """Publish the retained status when something changed, and every report interval."""
        if not self.link.connected.is_set():
            return
        now = self.hw.clock.monotonic()
        current = self.status()
        every = self.options.status_every_s or float(self.config.get("report_interval", 300))
        if current == self._last_status and now - self._last_status_at < every:
            return
        body = dict(current, device_time=format_utc(self.hw.clock.now()))
        if self.link.publish(topics.status(self.device), json.dumps(body, ensure_ascii=False).encode(), retain=True):
            self._last_status, self._last_status_at = current, now
