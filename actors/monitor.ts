/**
 * The evictor (the original ClusterMonitor's checking half), inside every member; only the leader
 * acts. It feeds machines/monitor.ts with what this member sees: committed changes of monitored
 * entries (sm.onChange, stamped with this member's monotonic clock), its role and term, and a
 * periodic tick; and it carries out the chart's decisions as conditional writes through the log:
 *   evict:  put { STATUS: 'OFFLINE' } (merge) if the entry is still at the revision judged stale;
 *   remove: delete if the entry is still at the revision it had when it went OFFLINE.
 * A decision taken on stale information (a deposed leader, a heartbeat committed meanwhile) thus
 * applies as casFailed and changes nothing. Leader-only callbacks (onLeaderAction) learn of each
 * applied eviction with a fencing token { term, revision }.
 */
import { createActor, type Actor } from 'xstate';
import { monitorMachine } from '../machines/monitor.ts';
import { Counters, RateLimitedLog } from '../src/metrics.ts';
import {
  checkHeartbeatTiming, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_OFFLINE_RETENTION_MS,
  evictionCommand, isMonitoredKey, MONITORED_PREFIXES, observeEntry, type EvictionDecision,
} from '../src/monitor/evict.ts';
import type { KeyValue, MetaCommand, MetaResult, WatchEvent } from '../src/sm/metadata.ts';
import { silentLogger, type Clock, type Logger } from './ports.ts';

export interface MonitorOptions {
  /** The senders' interval: only checked against the timeout here. Default 3000. */
  heartbeatIntervalMs?: number;
  /** Silence (on the leader's clock) after which an entry is marked OFFLINE. Default 9000. */
  heartbeatTimeoutMs?: number;
  /** How long an OFFLINE entry stays before it is deleted. Default 60 000. */
  offlineRetentionMs?: number;
  /** How often the leader judges. Default timeout / 10, within 20..1000 ms. */
  checkEveryMs?: number;
  logger?: Logger;
}

/** What the monitor needs of its member (ClusterServer satisfies it). */
export interface MonitorHost {
  readonly clock: Clock;
  readonly sm: {
    onChange(fn: (ev: WatchEvent) => void): () => void;
    list(prefix: string): KeyValue[];
    get(key: string): KeyValue | undefined;
  };
  readonly node: { status(): { role: string; term: number } };
  readonly counters?: Counters;
  isLeader(): boolean;
  propose(cmd: MetaCommand): Promise<{ index: number; result: MetaResult }>;
  onRoleChange(fn: (role: string, term: number) => void): () => void;
}

/** An applied eviction or removal. `name` is the entry's key after its type prefix. */
export interface LeaderAction {
  action: EvictionDecision['action'];
  key: string;
  type: 'server' | 'intp';
  name: string;
  /** Silence (evict) or time OFFLINE (remove) measured on the leader's clock, in ms. */
  silentMs: number;
  /** The entry before the write. */
  prev: KeyValue | null;
}

/**
 * Proof of which leader decided and at which revision the write applied. A consumer acting on it
 * can refuse tokens older than one it already saw, or make its own write conditional on `revision`.
 */
export interface FencingToken {
  term: number;
  revision: number;
}

export type LeaderActionCallback = (action: LeaderAction, token: FencingToken) => void | Promise<void>;

/** Defaults filled in and checked; throws RangeError on a bad setting (call it before starting anything). */
export function resolveMonitorOptions(o: MonitorOptions = {}) {
  const heartbeatTimeoutMs = o.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
  const warnings = checkHeartbeatTiming(o.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS, heartbeatTimeoutMs);
  const offlineRetentionMs = o.offlineRetentionMs ?? DEFAULT_OFFLINE_RETENTION_MS;
  if (!(offlineRetentionMs >= 0 && Number.isFinite(offlineRetentionMs))) throw new RangeError(`offlineRetentionMs must be a finite number >= 0, got ${offlineRetentionMs}`);
  const checkEveryMs = o.checkEveryMs ?? Math.min(1000, Math.max(20, Math.round(heartbeatTimeoutMs / 10)));
  if (!(checkEveryMs > 0 && Number.isFinite(checkEveryMs))) throw new RangeError(`checkEveryMs must be a positive number, got ${checkEveryMs}`);
  return { heartbeatTimeoutMs, offlineRetentionMs, checkEveryMs, warnings };
}

export class Monitor {
  readonly heartbeatTimeoutMs: number;
  readonly offlineRetentionMs: number;
  readonly checkEveryMs: number;
  readonly warnings: string[];
  private readonly actor: Actor<typeof monitorMachine>;
  private readonly log: Logger;
  private readonly limiter = new RateLimitedLog();
  private readonly callbacks = new Set<LeaderActionCallback>();
  private readonly unsubscribe: (() => void)[] = [];
  private timer: unknown = null;
  private stopped = false;

  constructor(private readonly host: MonitorHost, o: MonitorOptions = {}) {
    ({ heartbeatTimeoutMs: this.heartbeatTimeoutMs, offlineRetentionMs: this.offlineRetentionMs, checkEveryMs: this.checkEveryMs, warnings: this.warnings } =
      resolveMonitorOptions(o));
    this.log = o.logger ?? silentLogger;
    for (const w of this.warnings) this.log.warn({ warning: w }, 'monitor config');

    this.actor = createActor(monitorMachine, {
      input: { heartbeatTimeoutMs: this.heartbeatTimeoutMs, offlineRetentionMs: this.offlineRetentionMs, checkEveryMs: this.checkEveryMs },
    });
    this.actor.on('propose', ({ decision, term }) => this.carryOut(decision, term));
    this.actor.on('paused', ({ pausedMs }) => {
      this.host.counters?.inc('monitor_pauses_total');
      const suppressed = this.limiter.check('paused');
      if (suppressed >= 0) this.log.warn({ pausedMs: Math.round(pausedMs), suppressed }, 'monitor ran late (process stalled?): that time is not counted as anyone\'s silence');
    });
    this.actor.start();

    const now = () => host.clock.now();
    // What is already there counts as seen now (a restarted member knows no better).
    for (const kv of this.listMonitored()) this.actor.send({ type: 'OBSERVED', key: kv.key, ...observeEntry(kv)!, now: now() });
    this.unsubscribe.push(host.sm.onChange((ev) => {
      if (ev.type === 'delete') return void this.actor.send({ type: 'GONE', key: ev.kv.key });
      const seen = observeEntry(ev.kv);
      if (seen) this.actor.send({ type: 'OBSERVED', key: ev.kv.key, ...seen, now: now() });
      else if (isMonitoredKey(ev.kv.key)) this.actor.send({ type: 'GONE', key: ev.kv.key }); // no longer an object: not judged
    }));
    this.unsubscribe.push(host.onRoleChange((role, term) => this.actor.send({ type: 'ROLE', leader: role === 'leader', term, now: now() })));
    this.syncRole();
    this.schedule();
  }

  /** 'follower' | 'leader' | 'stopped': whether this member's monitor is acting. */
  get state(): string {
    return String(this.actor.getSnapshot().value);
  }

  /** Called on the leader after each eviction or removal it proposed was applied (not on casFailed). */
  onLeaderAction(fn: LeaderActionCallback): () => void {
    const box: LeaderActionCallback = (a, t) => fn(a, t);
    this.callbacks.add(box);
    return () => void this.callbacks.delete(box);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) this.host.clock.clearTimeout(this.timer);
    this.timer = null;
    for (const off of this.unsubscribe) off();
    this.actor.send({ type: 'STOP' });
    this.actor.stop();
  }

  private listMonitored(): KeyValue[] {
    return MONITORED_PREFIXES.flatMap((p) => this.host.sm.list(p)).filter((kv) => observeEntry(kv) !== null);
  }

  /** Role events can be missed around a start or a quick step down and back up: check each tick. */
  private syncRole(): void {
    const s = this.host.node.status();
    const leader = s.role === 'leader';
    const snap = this.actor.getSnapshot();
    if (leader !== snap.matches('leader') || (leader && s.term !== snap.context.term)) {
      this.actor.send({ type: 'ROLE', leader, term: s.term, now: this.host.clock.now() });
    }
  }

  private schedule(): void {
    this.timer = this.host.clock.setTimeout(() => {
      if (this.stopped) return;
      this.tick();
      this.schedule();
    }, this.checkEveryMs);
  }

  private tick(): void {
    this.syncRole();
    if (!this.actor.getSnapshot().matches('leader')) return;
    const entries = this.listMonitored().map((kv) => ({ key: kv.key, ...observeEntry(kv)! }));
    this.actor.send({ type: 'TICK', now: this.host.clock.now(), entries });
  }

  private carryOut(d: EvictionDecision, term: number): void {
    const settle = () => {
      if (!this.stopped) this.actor.send({ type: 'SETTLED', key: d.key });
    };
    if (this.stopped || !this.host.isLeader()) return settle();
    const type = d.key.startsWith('meta/server/') ? 'server' : 'intp';
    const prev = this.host.sm.get(d.key) ?? null;
    this.log.warn({ key: d.key, action: d.action, silentMs: Math.round(d.silentMs), revision: d.expectedRevision, term },
      d.action === 'evict' ? 'no heartbeat within the timeout: marking OFFLINE' : 'OFFLINE past retention: removing');
    this.host.propose(evictionCommand(d)).then(
      ({ result }) => {
        if (!result.ok) {
          // casFailed: the entry changed after it was judged (a heartbeat won the race); nothing happened.
          this.host.counters?.inc('monitor_decisions_total', { action: d.action, outcome: result.code });
          this.log.info({ key: d.key, action: d.action, code: result.code, message: result.message }, 'eviction did not apply');
          return;
        }
        this.host.counters?.inc('monitor_decisions_total', { action: d.action, outcome: 'applied' });
        const s = this.host.node.status();
        if (s.role !== 'leader' || s.term !== term) return; // no longer the leader that decided: not ours to act on
        const action: LeaderAction = { action: d.action, key: d.key, type, name: d.key.slice(`meta/${type}/`.length), silentMs: d.silentMs, prev };
        for (const fn of [...this.callbacks]) {
          Promise.resolve()
            .then(() => fn(action, { term, revision: result.revision }))
            .catch((err) => this.log.error({ key: d.key, err: (err as Error).message }, 'onLeaderAction callback failed'));
        }
      },
      (err) => {
        this.host.counters?.inc('monitor_decisions_total', { action: d.action, outcome: 'error' });
        if (this.limiter.check(`propose ${d.action}`) >= 0) this.log.warn({ key: d.key, action: d.action, err: (err as Error).message }, 'eviction not committed; will judge again');
      },
    ).finally(settle);
  }
}
