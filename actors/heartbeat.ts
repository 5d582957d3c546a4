/**
 * Heartbeat sender for a server or an interpreter process (the original ClusterMonitor's sending
 * half). On start it registers: a merge put of its typed meta (src/meta.ts) with STATUS ONLINE and
 * its start time. Every `heartbeatIntervalMs` it commits a small merge put (LATEST_HEARTBEAT,
 * STATUS ONLINE and, for servers, resource usage averaged over the last samples). On a clean stop
 * it deletes its entry. The leader's monitor (actors/monitor.ts) judges liveness by *when it saw*
 * these writes commit; LATEST_HEARTBEAT is this host's wall clock, for people to read only.
 *
 * A heartbeat that finds its entry gone (removed after an eviction) registers again in full, so the
 * entry never stays a bare heartbeat without host and port. One heartbeat is in flight at a time:
 * a tick that finds the previous one unfinished (the cluster is electing) is skipped, not queued.
 */
import { availableParallelism, cpus, freemem, totalmem } from 'node:os';
import type { KeyValue, MetaValue } from '../src/sm/metadata.ts';
import { metaKey, type InterpreterMeta, type ServerMeta } from '../src/meta.ts';
import { checkHeartbeatTiming, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS } from '../src/monitor/evict.ts';
import { RateLimitedLog } from '../src/metrics.ts';
import { realClock, silentLogger, type Clock, type Logger } from './ports.ts';

export const DEFAULT_USAGE_SAMPLES = 100;

/** What the sender needs of a ClusterClient (ClusterClient satisfies it). */
export interface MetaWriter {
  put(key: string, value: MetaValue, o: { merge?: boolean; expectedRevision?: number }): Promise<{ revision: number; kv?: KeyValue | null; prev?: KeyValue | null }>;
  delete(key: string, o: { expectedRevision?: number }): Promise<unknown>;
  get(key: string): Promise<{ kv: KeyValue | null }>;
}

export type HeartbeatIdentity =
  /** A server (Submarine/Workbench server): entry meta/server/<host:port>. */
  | { kind: 'server'; host: string; port: number }
  /**
   * An interpreter process: entry meta/intp/<groupId>. host/port: where it serves (its thrift
   * server in the original). nodeName: the server that launched it (default host:port).
   */
  | { kind: 'interpreter'; groupId: string; host: string; port: number; nodeName?: string; processName?: string };

/** One reading of this machine. CPU in percent of one core (capacity = cores x 100), memory in bytes. */
export interface UsageSample {
  cpuUsed: number;
  cpuCapacity: number;
  memoryUsed: number;
  memoryCapacity: number;
}

export interface HeartbeatOptions {
  writer: MetaWriter;
  identity: HeartbeatIdentity;
  heartbeatIntervalMs?: number;
  /** Only checked against the interval (the monitor on the members is what applies it). */
  heartbeatTimeoutMs?: number;
  /** Usage figures are the average of this many latest samples (one per heartbeat). */
  usageSamples?: number;
  /** Monotonic clock for the timers. */
  clock?: Clock;
  /** Wall clock for LATEST_HEARTBEAT and the start time (display only). */
  wallClock?: () => number;
  /** Reads this machine's usage (default: node:os). */
  sampleUsage?: () => UsageSample;
  logger?: Logger;
}

/** Averages of the last `size` samples, so one momentary peak does not steer placement. */
export class UsageAverager {
  private readonly samples: UsageSample[] = [];
  private next = 0;

  constructor(readonly size = DEFAULT_USAGE_SAMPLES) {
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`usageSamples must be a positive integer, got ${size}`);
  }

  add(s: UsageSample): void {
    if (this.samples.length < this.size) this.samples.push(s);
    else this.samples[this.next] = s;
    this.next = (this.next + 1) % this.size;
  }

  get count(): number {
    return this.samples.length;
  }

  /** Rounded means; capacities are averaged too (a resized VM or cgroup shows up gradually). */
  average(): UsageSample {
    const n = this.samples.length;
    if (n === 0) throw new Error('no usage sample yet');
    const mean = (f: keyof UsageSample) => Math.round(this.samples.reduce((acc, s) => acc + s[f], 0) / n);
    return { cpuUsed: mean('cpuUsed'), cpuCapacity: mean('cpuCapacity'), memoryUsed: mean('memoryUsed'), memoryCapacity: mean('memoryCapacity') };
  }
}

/** A node:os sampler: CPU busy time since its previous call (the first call: since boot). */
export function osUsageSampler(): () => UsageSample {
  let prev = cpuTimes();
  let first = true;
  return () => {
    const cur = cpuTimes();
    const base = first ? { busy: 0, total: 0 } : prev;
    first = false;
    const total = cur.total - base.total;
    const busyFraction = total > 0 ? Math.min(1, Math.max(0, (cur.busy - base.busy) / total)) : 0;
    prev = cur;
    const cores = availableParallelism();
    const capacity = totalmem();
    return { cpuUsed: Math.round(busyFraction * cores * 100), cpuCapacity: cores * 100, memoryUsed: capacity - freemem(), memoryCapacity: capacity };
  };
}

function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of cpus()) {
    const t = c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
    total += t;
    busy += t - c.times.idle;
  }
  return { busy, total };
}

export class HeartbeatSender {
  readonly key: string;
  readonly nodeName: string;
  readonly heartbeatIntervalMs: number;
  /** Non-fatal configuration findings (timeout under 3x the interval). */
  readonly warnings: string[];
  private readonly clock: Clock;
  private readonly wall: () => number;
  private readonly log: Logger;
  private readonly limiter = new RateLimitedLog();
  private readonly usage: UsageAverager | null;
  private readonly sample: (() => UsageSample) | null;
  private readonly startTime: number;
  private timer: unknown = null;
  private inFlight: Promise<void> | null = null;
  private stopped = false;
  /** Counters for tests and the dashboard. */
  readonly stats = { sent: 0, failed: 0, skipped: 0, reregistered: 0 };

  private constructor(private readonly o: HeartbeatOptions) {
    this.heartbeatIntervalMs = o.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS;
    this.warnings = checkHeartbeatTiming(this.heartbeatIntervalMs, o.heartbeatTimeoutMs ?? Math.max(DEFAULT_HEARTBEAT_TIMEOUT_MS, 3 * this.heartbeatIntervalMs));
    this.clock = o.clock ?? realClock;
    this.wall = o.wallClock ?? Date.now;
    this.log = o.logger ?? silentLogger;
    const id = o.identity;
    if (!id.host || !Number.isSafeInteger(id.port) || id.port < 0 || id.port > 65535) {
      throw new RangeError(`heartbeat identity needs a host and a port in 0..65535, got ${id.host}:${id.port}`);
    }
    this.nodeName = id.kind === 'server' ? `${id.host}:${id.port}` : (id.nodeName ?? `${id.host}:${id.port}`);
    this.key = id.kind === 'server' ? metaKey('server', this.nodeName) : metaKey('intp', id.groupId);
    this.usage = id.kind === 'server' ? new UsageAverager(o.usageSamples ?? DEFAULT_USAGE_SAMPLES) : null;
    this.sample = id.kind === 'server' ? (o.sampleUsage ?? osUsageSampler()) : null;
    this.startTime = this.wall();
  }

  /** Registers (rejects if that fails) and starts heartbeating. */
  static async start(o: HeartbeatOptions): Promise<HeartbeatSender> {
    const s = new HeartbeatSender(o);
    for (const w of s.warnings) s.log.warn({ key: s.key, warning: w }, 'heartbeat config');
    await s.o.writer.put(s.key, s.registration(), { merge: true });
    s.log.info({ key: s.key }, 'registered');
    s.schedule();
    return s;
  }

  /**
   * Stops heartbeating. With `deregister` (default) deletes the entry, unless it now belongs to
   * another incarnation (different start time): a restarted process must not lose its entry to the
   * old one's late clean stop. `deregister: false` leaves the entry to the monitor (as a crash would).
   */
  async stop(o: { deregister?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight; // a heartbeat landing after the delete would recreate the entry
    if (o.deregister === false) return;
    for (let attempt = 0; attempt < 3; attempt++) {
      const { kv } = await this.o.writer.get(this.key);
      if (!kv || !this.isMine(kv.value)) return;
      try {
        await this.o.writer.delete(this.key, { expectedRevision: kv.modRevision });
        this.log.info({ key: this.key }, 'deregistered');
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== 'casFailed') throw err;
        // Changed between our read and our delete (an eviction, say): read again.
      }
    }
    this.log.warn({ key: this.key }, 'could not deregister: the entry kept changing');
  }

  private isMine(v: unknown): boolean {
    const f = v as Record<string, unknown> | null;
    const start = this.o.identity.kind === 'server' ? f?.SERVER_START_TIME : f?.INTP_START_TIME;
    return start === undefined || start === this.startTime;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      this.schedule(); // a fixed cadence, whatever one heartbeat costs
      if (this.inFlight) {
        this.stats.skipped++;
        return;
      }
      this.inFlight = this.beat().finally(() => (this.inFlight = null));
    }, this.heartbeatIntervalMs);
  }

  private async beat(): Promise<void> {
    try {
      const r = await this.o.writer.put(this.key, this.heartbeat(), { merge: true });
      this.stats.sent++;
      if (!r.prev) {
        // Our entry had been removed (evicted, then past retention): put back the full registration.
        this.stats.reregistered++;
        this.log.warn({ key: this.key }, 'entry was gone; registering again');
        await this.o.writer.put(this.key, this.registration(), { merge: true });
      } else if ((r.prev.value as { STATUS?: unknown } | null)?.STATUS === 'OFFLINE') {
        this.log.warn({ key: this.key }, 'was marked OFFLINE (heartbeats were not seen in time); ONLINE again');
      }
    } catch (err) {
      this.stats.failed++;
      if (this.limiter.check('beat') >= 0) this.log.warn({ key: this.key, err: (err as Error).message }, 'heartbeat failed; will retry at the next interval');
    }
  }

  private heartbeat(): Partial<ServerMeta> | Partial<InterpreterMeta> {
    const base = { LATEST_HEARTBEAT: this.wall(), STATUS: 'ONLINE' as const };
    if (!this.usage) return base;
    this.usage.add(this.sample!());
    const u = this.usage.average();
    return { ...base, CPU_USED: u.cpuUsed, CPU_CAPACITY: u.cpuCapacity, MEMORY_USED: u.memoryUsed, MEMORY_CAPACITY: u.memoryCapacity };
  }

  private registration(): Partial<ServerMeta> | Partial<InterpreterMeta> {
    const id = this.o.identity;
    if (id.kind === 'server') {
      return { NODE_NAME: this.nodeName, SERVER_HOST: id.host, SERVER_PORT: id.port, SERVER_START_TIME: this.startTime, ...this.heartbeat() };
    }
    return {
      NODE_NAME: this.nodeName, INTP_PROCESS_NAME: id.processName ?? id.groupId, INTP_TSERVER_HOST: id.host, INTP_TSERVER_PORT: id.port,
      INTP_START_TIME: this.startTime, ...this.heartbeat(),
    };
  }
}
