/**
 * Who is dead, decided on one host's own monotonic clock. Pure: no IO, no Date, no Math.random.
 *
 * The leader records *when it saw* each member's entry change (a committed heartbeat), on its own
 * monotonic clock, and never reads the LATEST_HEARTBEAT a member wrote: that is another host's
 * wall clock, which may be minutes off. A new leader cannot know when its predecessor last heard
 * from anyone, so it counts silence from no earlier than its own start as leader (`graceStart`).
 *
 * A decision carries the revision it was judged on. The eviction is a conditional write with that
 * revision, so if a heartbeat (or anything else) changed the key after the judgment, the eviction
 * applies as casFailed: a no-op, whichever leader proposed it and however late it commits.
 */
import type { KeyValue, MetaCommand } from '../sm/metadata.ts';

export const DEFAULT_HEARTBEAT_INTERVAL_MS = 3000;
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 9000;
/** How long an evicted (OFFLINE) entry stays visible before it is removed. */
export const DEFAULT_OFFLINE_RETENTION_MS = 60_000;

/** Keys the monitor judges: server and interpreter-process entries of src/meta.ts. */
export const MONITORED_PREFIXES = ['meta/server/', 'meta/intp/'] as const;

export function isMonitoredKey(key: string): boolean {
  return MONITORED_PREFIXES.some((p) => key.startsWith(p) && key.length > p.length);
}

/**
 * The original ClusterMonitor's rules: a timeout below the interval is an error (every member would
 * be declared dead between two heartbeats); below 3x the interval only warns (one lost or slow
 * heartbeat evicts a live member). Returns the warnings; throws RangeError on an error.
 */
export function checkHeartbeatTiming(heartbeatIntervalMs: number, heartbeatTimeoutMs: number): string[] {
  for (const [name, v] of [['heartbeatIntervalMs', heartbeatIntervalMs], ['heartbeatTimeoutMs', heartbeatTimeoutMs]] as const) {
    if (!Number.isFinite(v) || v <= 0) throw new RangeError(`${name} must be a positive number of milliseconds, got ${v}`);
  }
  const hb = `heartbeat timeout ${heartbeatTimeoutMs} ms vs interval ${heartbeatIntervalMs} ms`;
  if (heartbeatTimeoutMs < heartbeatIntervalMs) throw new RangeError(`${hb}: the timeout must not be below the interval`);
  return heartbeatTimeoutMs < 3 * heartbeatIntervalMs ? [`${hb}: a timeout under 3x the interval may declare live members dead`] : [];
}

/** What the judging host knows of one entry. `seenAt` is on the judging host's monotonic clock. */
export interface Tracked {
  /** modRevision of the entry when last observed. */
  revision: number;
  offline: boolean;
  /** When the judging host last observed a change of the entry (a heartbeat, or the eviction). */
  seenAt: number;
}

export interface EvictionInput {
  tracked: ReadonlyMap<string, Tracked>;
  now: number;
  heartbeatTimeoutMs: number;
  offlineRetentionMs: number;
  /** When this host became leader: silence is never counted from before it. */
  graceStart: number;
  /** Keys with a decision still in flight: not decided again until it settles. */
  inFlight?: ReadonlySet<string>;
}

export interface EvictionDecision {
  /** evict: mark OFFLINE; remove: delete an entry OFFLINE for longer than the retention. */
  action: 'evict' | 'remove';
  key: string;
  /** The revision judged stale: the write is conditional on it. */
  expectedRevision: number;
  /** Silence (evict) or time offline (remove) as measured here, in ms. */
  silentMs: number;
}

/** Decisions in key order (deterministic). */
export function decideEvictions(i: EvictionInput): EvictionDecision[] {
  const out: EvictionDecision[] = [];
  for (const [key, t] of i.tracked) {
    if (i.inFlight?.has(key)) continue;
    const silentMs = i.now - Math.max(t.seenAt, i.graceStart);
    if (!t.offline && silentMs > i.heartbeatTimeoutMs) out.push({ action: 'evict', key, expectedRevision: t.revision, silentMs });
    else if (t.offline && silentMs > i.offlineRetentionMs) out.push({ action: 'remove', key, expectedRevision: t.revision, silentMs });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The conditional write that carries out a decision. */
export function evictionCommand(d: EvictionDecision): MetaCommand {
  return d.action === 'evict'
    ? { op: 'put', key: d.key, value: { STATUS: 'OFFLINE' }, merge: true, expectedRevision: d.expectedRevision }
    : { op: 'delete', key: d.key, expectedRevision: d.expectedRevision };
}

/**
 * How an entry reads to the monitor, or null when it is not a monitored entry (wrong prefix, or a
 * value that is not an object: a merge put could never mark it OFFLINE, so it is not judged).
 */
export function observeEntry(kv: Pick<KeyValue, 'key' | 'value' | 'modRevision'>): { revision: number; offline: boolean } | null {
  if (!isMonitoredKey(kv.key)) return null;
  const v = kv.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) return null;
  return { revision: kv.modRevision, offline: (v as { STATUS?: unknown }).STATUS === 'OFFLINE' };
}

/**
 * Takes `--offline-retention MS` (or `--offline-retention=MS`) out of a member's argv, else reads
 * SUBMARINE_OFFLINE_RETENTION_MS. Not a src/config.ts setting: only the monitor uses it.
 */
export function takeOfflineRetention(argv: string[], env: NodeJS.ProcessEnv = {}): { argv: string[]; offlineRetentionMs?: number } {
  const rest: string[] = [];
  let raw: string | undefined;
  let from = 'env SUBMARINE_OFFLINE_RETENTION_MS';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--offline-retention') {
      raw = argv[++i];
      from = 'flag --offline-retention';
    } else if (a.startsWith('--offline-retention=')) {
      raw = a.slice('--offline-retention='.length);
      from = 'flag --offline-retention';
    } else rest.push(a);
  }
  raw ??= env.SUBMARINE_OFFLINE_RETENTION_MS?.trim() || undefined;
  if (raw === undefined) return { argv: rest };
  if (!/^[0-9]{1,10}$/.test(raw) || Number(raw) > 2 ** 31 - 1) throw new RangeError(`${from}: the offline retention must be an integer number of ms in 0..${2 ** 31 - 1}, got ${JSON.stringify(raw)}`);
  return { argv: rest, offlineRetentionMs: Number(raw) };
}
