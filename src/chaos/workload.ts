/**
 * The chaos workload: concurrent callers doing random operations, every one recorded as a history
 * entry with monotonic times (performance.now() of this process: one clock for all callers and
 * for the nemesis log). Two kinds of callers share the history and the checks:
 *
 * - C classic clients (`w<i>`), each with its own NATS connection, its own session (ClusterClient
 *   clientId) and one request in flight;
 * - W shared clients, each ONE ClusterClient (one session) used by K concurrent callers
 *   (`s<j>.<k>`, each with one request in flight, and a random pause of up to thinkMs between
 *   its ops so that, when a fault strikes, some of the client's callers are stuck while the
 *   others keep going). That is how a server uses the client, and what issue 18 needed: a write
 *   stuck in a fault while more than 1,024 other writes of the same session complete. The
 *   workload measures, per shared client, how many of its writes were applied while one of its
 *   writes was in flight (`SharedClientStats`). Since the fix of issue 18 the client keeps its
 *   seqs within 1,024 of the oldest one in flight (a write waits for room), so that count stays
 *   near 1,024 instead of running past it; counted from the callers' side, a call waiting for
 *   room is in flight too.
 *
 * Keys: `chaos/r0..r{R-1}` are registers (put of unique values, linearizable get, cas by
 * expectedRevision), `chaos/c0..c{K-1}` are counters (incr by 1, linearizable get). With
 * `dataKeys` N > 0, `chaos/d0..d{N-1}` are populated before the run (one shared client, many
 * concurrent puts, `dataValueBytes` per value) so that the state is large and snapshots and
 * InstallSnapshot carry real data; during the run the shared clients' callers (and a few of the
 * classic clients' ops) read, put and cas over them, half of the time on a small warm subset so
 * that some data keys see contention. A data value is its unique tag padded to `dataValueBytes`
 * with filler derived from the tag (`dataValue`); the history records the tag, and a read
 * records the tag only if the filler is intact (otherwise the raw value, which no write wrote).
 *
 * ## What each outcome means (the history model)
 *
 * - ok: the member answered with the applied result. A put/cas/incr took effect exactly once
 *   somewhere inside [invokeAt, completeAt]; a get observed the value at some point inside it.
 * - cas answered casFailed: the command was applied (exactly once, through its session) and
 *   changed nothing because the key's modRevision was not the expected one. It is recorded as a
 *   completed cas with result false, which is stronger than `fail`: the model checks that the key
 *   really did not hold the expected value at some point inside the interval. (Summaries count it
 *   under outcome `fail`.)
 * - fail (a write refused): any other MetaError of a write (badCommand, tooLarge, noLease,
 *   notObject, ...). The client's contract is that a MetaError answering a write means the
 *   command was NOT applied: every case where the outcome is not known is thrown as TimeoutError
 *   or OutcomeUnknownError instead. So a refusal is a definite non-effect, and the checks REQUIRE
 *   it: the model leaves the write out (it never took effect), the refusal check reports any read
 *   (or successful cas expectation) that observes its unique value, and a counter must never
 *   count a refused increment (its reads and final value are explained by the acknowledged and
 *   unknown increments alone). Summaries count refusals by error code. This used to be recorded
 *   as info, which hid issue 18: the metadata center kept at most 1,024 results per session and
 *   advanced the session's ack on its own, so a shared client's retried write that had been
 *   applied could be answered badCommand "stale session sequence".
 * - info (unknown outcome), for every other error of a write: TimeoutError (the client says so),
 *   OutcomeUnknownError (SessionLostError among them), but also NoQuorumError, NotLeader/"no responders"-shaped errors,
 *   ProposalDroppedError, NodeStoppedError, ReplyTooLargeError (applied, reply lost), a closed
 *   connection. The checker lets an info write take effect at any single point after its
 *   invocation, or never.
 *
 *   Why NoQuorumError is NOT proof that a write did not happen: ClusterClient.toLeader retries one
 *   session seq against several members for up to quorumWaitMs. It throws NoQuorumError when the
 *   last error was NotLeader / no responders, or when it never "saw" a leader — but "saw" is only
 *   set for a TimeoutError from a request addressed to a known leader. An earlier attempt may have
 *   gone through the `api` queue group to the leader (target unknown), been appended to its log
 *   and answered TimeoutError (the member's 1.5 s propose timeout) or not answered within the 2 s
 *   request timeout; that leader may then lose its leadership and the next attempts get NotLeader
 *   until the deadline. The entry can still be committed by the next leader (it is on a
 *   majority, or the old leader wins again). Simplest case, seen in chaos runs and reproducible:
 *   kill both followers, put → the leader appends, times out, steps down (CheckQuorum) →
 *   NotLeader until the deadline → NoQuorumError; restart the followers → the old leader, whose
 *   log is the most up to date, is elected and commits the put.
 *   NodeStoppedError (the member was SIGTERM'd with the proposal pending) is passed to the caller
 *   at once, not retried, and the entry may already be on a majority: also unknown. Likewise a
 *   ProposalDroppedError only says that this attempt's (index, term) was overwritten, not that an
 *   earlier attempt of the same seq was. Since the client does not report which attempts were
 *   sent, none of these errors is proof. The check reports, by error name, the unknown-outcome
 *   writes later observed to have taken effect.
 *
 *   A MetaError is different: it is the state machine's answer to this session seq (the member
 *   applied the command's log entry and the metadata center refused it), and the session makes
 *   every later attempt of that seq get the same answer. Only MetaErrors are recorded as refusals.
 *
 *   After an info write the client carries on with its next seq; the metadata center then refuses
 *   the old seq if it arrives later (seq <= ack): "at any later time, or never" covers that too.
 * - fail or info for reads: a read has no effect, so a failed or timed-out get constrains nothing
 *   (the checker leaves fail and info gets out).
 */
import { createHash } from 'node:crypto';
import { ClusterClient } from '../client.ts';
import { MetaError, NoQuorumError, TimeoutError } from '../errors.ts';
import type { LocalCluster } from '../local-cluster.ts';
import { createRng, type Rng } from '../sim/rng.ts';
import type { KvHistoryOp } from '../check/kv-linearizability.ts';

export type OpKind = 'put' | 'get' | 'cas' | 'incr';
export type Outcome = 'ok' | 'fail' | 'info';

/** A history entry plus what the member told us about revisions, for the revision checks. */
export interface ChaosOp extends KvHistoryOp {
  /** Outcome as summarized: cas with casFailed is `fail` here but a completed cas (result false) for the checker. */
  outcome: Outcome;
  /** Error name and message of a non-ok op. */
  error?: string;
  /** MetaError code of a write the metadata center refused (status `fail`), or casFailed. */
  code?: string;
  /** Store revision the member reported (write result, casFailed, or read). */
  revision?: number;
  /** modRevision of the key as read, or as written by this op. */
  modRevision?: number;
  /** cas: the expectedRevision sent (its expected value is op.expected: what this client last saw at that revision). */
  expectedRevision?: number;
  /** When the call returned, whatever the outcome (an info op's completeAt stays null for the checker). */
  endedAt?: number;
}

export interface WorkloadOptions {
  cluster: LocalCluster;
  /** Classic clients: one ClusterClient each, one request in flight. */
  clients: number;
  seed: number;
  registerKeys?: number;
  counterKeys?: number;
  quorumWaitMs?: number;
  requestTimeoutMs?: number;
  prefix?: string;
  /**
   * 'stale' is a self-check of the suite, not a mode to test the cluster with: stale reads are
   * served by any member without ReadIndex, so recording them as linearizable reads must make the
   * check report anomalies once a member falls behind (isolated, paused, restarted).
   */
  readConsistency?: 'linearizable' | 'stale';
  /** Data keys populated before the run (`chaos/d<i>`). Default 0. */
  dataKeys?: number;
  /** Size of a data value (the tag padded with filler). Default 256. */
  dataValueBytes?: number;
  /** Concurrent puts of the population (one shared client). Default 256. */
  populateConcurrency?: number;
  /** Shared clients: each one ClusterClient used by `callersPerClient` concurrent callers. Default 0. */
  sharedClients?: number;
  /** Concurrent callers per shared client. Default SHARED_DEFAULTS.callers (64). */
  callersPerClient?: number;
  /** Per-request timeout of the shared clients (how long a write to a dead leader stays stuck). Default SHARED_DEFAULTS.requestTimeoutMs (8000). */
  sharedRequestTimeoutMs?: number;
  /** quorumWaitMs of the shared clients (room for retries after a stuck request). Default sharedQuorumWaitMs(requestTimeoutMs). */
  sharedQuorumWaitMs?: number;
  /** A shared client's caller pauses 0..thinkMs between ops. Default SHARED_DEFAULTS.thinkMs (100). */
  thinkMs?: number;
  /** Progress lines (population). */
  log?: (line: string) => void;
}

/**
 * Shared-client defaults, chosen so that on a 2-core machine a write stuck on a killed or paused
 * leader (its request waits out the 8 s timeout) outlasts 1,024 of the client's other writes, the
 * case of issue 18: with callers pausing 0..100 ms between ops, about half of them have nothing in
 * flight when a fault strikes, and they go on at full speed with the new leader. (Measured before
 * the fix: up to 2,800 writes applied during one stuck write, and the CI run reproduced the
 * bug; with the fix the client makes the other writes wait at 1,024.)
 */
export const SHARED_DEFAULTS = { callers: 64, thinkMs: 100, requestTimeoutMs: 8000 } as const;

/** A shared client's quorum wait: room for a retry after a request that waited out its timeout. */
export function sharedQuorumWaitMs(requestTimeoutMs: number): number {
  return Math.max(10_000, Math.round(requestTimeoutMs * 2.5));
}

/** The session window the metadata center kept per client before issue 18's fix. */
export const OLD_SESSION_WINDOW = 1024;

/** What one shared client went through: did a write of it stay in flight while more than 1,024 others were applied? */
export interface SharedClientStats {
  name: string;
  callers: number;
  /** Writes of this client answered with an applied outcome (ok, casFailed). */
  applied: number;
  /** Writes of this client with any outcome. */
  writes: number;
  /** The most writes of this client applied while one of its writes was in flight (a call waiting for room in the session window included). */
  maxAppliedDuringOneWrite: number;
  /** Writes during which more than OLD_SESSION_WINDOW others of this client were applied. */
  writesSpanningOldWindow: number;
}

export interface PopulationStats {
  keys: number;
  valueBytes: number;
  concurrency: number;
  ms: number;
  /** Puts sent (a put that failed is retried with a new value). */
  puts: number;
  /** Keys whose every attempt failed or stayed unknown. */
  unconfirmed: number;
}

export const CHAOS_PREFIX = 'chaos/';
/** History client name prefix of the population's puts (checked like every op, counted apart). */
export const POPULATION_CLIENT = 'pop';

export function registerKeys(n: number, prefix = CHAOS_PREFIX): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}r${i}`);
}
export function counterKeys(n: number, prefix = CHAOS_PREFIX): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}c${i}`);
}
export function dataKeys(n: number, prefix = CHAOS_PREFIX): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}d${i}`);
}
export function dataKeyPrefix(prefix = CHAOS_PREFIX): string {
  return `${prefix}d`;
}

const FILL_SEP = '~';

/** A data value: `tag~` then filler derived from the tag, `bytes` ASCII characters in all (at least the tag). */
export function dataValue(tag: string, bytes: number): string {
  const head = tag + FILL_SEP;
  if (head.length >= bytes) return head;
  const fill = createHash('sha256').update(tag).digest('base64url');
  return head + fill.repeat(Math.ceil((bytes - head.length) / fill.length)).slice(0, bytes - head.length);
}

/** The tag of a data value read back, or the raw value if it is not one dataValue(tag, bytes) would write. */
export function dataTag(raw: unknown, bytes: number): unknown {
  if (typeof raw !== 'string') return raw;
  const i = raw.indexOf(FILL_SEP);
  if (i < 0) return raw;
  const tag = raw.slice(0, i);
  return dataValue(tag, bytes) === raw ? tag : raw;
}

type Seen = Map<string, { value: string | null; modRevision: number }>;

/** One caller: a name in the history, the client it uses, what it last saw of each register. */
interface Caller {
  name: string;
  client: ClusterClient;
  rng: Rng;
  seen: Seen;
  n: number;
  /** Share of ops on data keys. */
  dataShare: number;
  thinkMs: number;
  stats?: SharedClientStats;
}

export class Workload {
  readonly history: ChaosOp[] = [];
  readonly registers: string[];
  readonly counters: string[];
  /** The populated data keys (registers for the model). */
  readonly data: string[];
  /** Per shared client (live counters). */
  readonly shared: SharedClientStats[] = [];
  population: PopulationStats | null = null;
  private readonly registerSet: Set<string>;
  private readonly dataSet: Set<string>;
  private readonly hotKeys: string[];
  private readonly valueBytes: number;
  private readonly clients: ClusterClient[] = [];
  private loops: Promise<void>[] = [];
  private stopping = false;
  private nextId = 0;

  private constructor(private readonly o: WorkloadOptions) {
    this.registers = registerKeys(o.registerKeys ?? 6, o.prefix);
    this.counters = counterKeys(o.counterKeys ?? 2, o.prefix);
    this.data = dataKeys(o.dataKeys ?? 0, o.prefix);
    this.registerSet = new Set(this.registers);
    this.dataSet = new Set(this.data);
    this.hotKeys = [...this.registers, ...this.counters];
    this.valueBytes = o.dataValueBytes ?? 256;
  }

  static async start(o: WorkloadOptions): Promise<Workload> {
    const w = new Workload(o);
    const seedRng = createRng(o.seed);
    const stamp = Date.now().toString(36);
    try {
      if (w.data.length) await w.populate(`chaos-${o.seed}-pop-${stamp}`);
      const callers: Caller[] = [];
      for (let i = 0; i < o.clients; i++) {
        const client = await ClusterClient.connect({
          ...o.cluster.clientOptions(),
          clientId: `chaos-${o.seed}-w${i}-${stamp}`,
          quorumWaitMs: o.quorumWaitMs ?? 5000,
          requestTimeoutMs: o.requestTimeoutMs,
        });
        w.clients.push(client);
        callers.push({ name: `w${i}`, client, rng: seedRng.fork(), seen: new Map(), n: 0, dataShare: w.data.length ? 0.15 : 0, thinkMs: 0 });
      }
      for (let j = 0; j < (o.sharedClients ?? 0); j++) {
        const client = await ClusterClient.connect({
          ...o.cluster.clientOptions(),
          clientId: `chaos-${o.seed}-s${j}-${stamp}`,
          quorumWaitMs: o.sharedQuorumWaitMs ?? sharedQuorumWaitMs(o.sharedRequestTimeoutMs ?? SHARED_DEFAULTS.requestTimeoutMs),
          requestTimeoutMs: o.sharedRequestTimeoutMs ?? SHARED_DEFAULTS.requestTimeoutMs,
        });
        w.clients.push(client);
        const k = Math.max(1, o.callersPerClient ?? SHARED_DEFAULTS.callers);
        const stats: SharedClientStats = { name: `s${j}`, callers: k, applied: 0, writes: 0, maxAppliedDuringOneWrite: 0, writesSpanningOldWindow: 0 };
        w.shared.push(stats);
        for (let c = 0; c < k; c++) {
          callers.push({ name: `s${j}.${c}`, client, rng: seedRng.fork(), seen: new Map(), n: 0, dataShare: w.data.length ? 0.6 : 0, thinkMs: o.thinkMs ?? SHARED_DEFAULTS.thinkMs, stats });
        }
      }
      w.loops = callers.map((c) => w.loop(c));
    } catch (err) {
      await w.stop();
      throw err;
    }
    return w;
  }

  /** The registers and counters (the hot keys every caller uses). */
  get keys(): string[] {
    return this.hotKeys;
  }

  isRegister(key: string): boolean {
    return this.registerSet.has(key) || this.dataSet.has(key);
  }

  /** Stops issuing ops, waits for the ones in flight (each ends within its client's quorumWaitMs), closes the clients. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.loops);
    await Promise.all(this.clients.map((c) => c.close().catch(() => {})));
  }

  private record(client: string, key: string, op: ChaosOp['op'], extra: Partial<ChaosOp> = {}): ChaosOp {
    const rec: ChaosOp = { id: this.nextId++, client, key, op, invokeAt: performance.now(), completeAt: null, status: 'info', outcome: 'info', ...extra };
    this.history.push(rec);
    return rec;
  }

  /**
   * Puts every data key once before the faults start: one shared client, `populateConcurrency`
   * callers (`pop<j>` in the history) taking the next key. A put that does not succeed is tried
   * again with a new value (a write of the same value twice would make the value ambiguous).
   */
  private async populate(clientId: string): Promise<void> {
    const n = this.data.length;
    const concurrency = Math.max(1, Math.min(this.o.populateConcurrency ?? 256, n));
    const log = this.o.log ?? (() => {});
    const client = await ClusterClient.connect({ ...this.o.cluster.clientOptions(), clientId, quorumWaitMs: 10_000 });
    const started = performance.now();
    let next = 0;
    let puts = 0;
    let unconfirmed = 0;
    let reported = started;
    try {
      await Promise.all(Array.from({ length: concurrency }, async (_, j) => {
        const seen: Seen = new Map();
        while (next < n && !this.stopping) {
          const i = next++;
          let done = false;
          for (let attempt = 0; attempt < 5 && !done && !this.stopping; attempt++) {
            puts++;
            const tag = attempt ? `d${i}.init${attempt}` : `d${i}.init`;
            done = (await this.put(`${POPULATION_CLIENT}${j}`, client, this.data[i]!, tag, seen)) === 'ok';
          }
          if (!done) unconfirmed++;
          if (performance.now() - reported > 5000) {
            reported = performance.now();
            log(`populating data keys: ${next}/${n} (${Math.round(next / ((reported - started) / 1000))} keys/s)`);
          }
        }
      }));
    } finally {
      await client.close().catch(() => {});
    }
    this.population = { keys: n, valueBytes: this.valueBytes, concurrency, ms: Math.round(performance.now() - started), puts, unconfirmed };
  }

  private pickData(rng: Rng): string {
    // Half the time a small warm subset (contention on data keys), otherwise any of them.
    const warm = Math.min(this.data.length, 200);
    return this.data[rng.chance(0.5) ? rng.int(0, warm - 1) : rng.int(0, this.data.length - 1)]!;
  }

  private async loop(c: Caller): Promise<void> {
    const { rng } = c;
    while (!this.stopping) {
      const r = rng();
      if (c.dataShare > 0 && rng.chance(c.dataShare)) {
        const key = this.pickData(rng);
        if (r < 0.4) {
          await this.get(c.name, c.client, key, c.seen);
        } else if (r < 0.8) {
          await this.put(c.name, c.client, key, `${c.name}.${c.n++}`, c.seen, c.stats);
        } else {
          if (!c.seen.has(key) || rng.chance(0.5)) await this.get(c.name, c.client, key, c.seen);
          if (this.stopping) break;
          await this.cas(c.name, c.client, key, `${c.name}.${c.n++}`, c.seen, c.stats);
        }
      } else if (r < 0.35) {
        await this.get(c.name, c.client, rng.pick(this.hotKeys), c.seen);
      } else if (r < 0.6) {
        const key = rng.pick(this.registers);
        await this.put(c.name, c.client, key, `${c.name}.${c.n++}`, c.seen, c.stats);
      } else if (r < 0.8) {
        const key = rng.pick(this.registers);
        // Half the time read first (read-modify-write), otherwise cas on what we saw last.
        if (!c.seen.has(key) || rng.chance(0.5)) await this.get(c.name, c.client, key, c.seen);
        if (this.stopping) break;
        await this.cas(c.name, c.client, key, `${c.name}.${c.n++}`, c.seen, c.stats);
      } else {
        await this.incr(c.name, c.client, rng.pick(this.counters), c.stats);
      }
      if (c.thinkMs > 0 && !this.stopping) await new Promise((res) => setTimeout(res, rng.int(0, c.thinkMs)));
    }
  }

  /** The value sent for a history value: data keys get the padded form. */
  private wire(key: string, value: string): string {
    return this.dataSet.has(key) ? dataValue(value, this.valueBytes) : value;
  }

  /** The history value of a value read: a data key's tag (if intact). */
  private unwire(key: string, raw: unknown): string | number | null {
    return (this.dataSet.has(key) ? dataTag(raw, this.valueBytes) : raw ?? null) as string | number | null;
  }

  /** Counts a shared client's writes: how many of its writes were applied while this one was in flight. */
  private async tracked<T>(stats: Caller['stats'], fn: () => Promise<T>, applied: (r: T) => boolean): Promise<T> {
    if (!stats) return fn();
    const before = stats.applied;
    let result: T | undefined;
    try {
      result = await fn();
      return result;
    } finally {
      const during = stats.applied - before;
      stats.writes++;
      if (result !== undefined && applied(result)) stats.applied++;
      if (during > stats.maxAppliedDuringOneWrite) stats.maxAppliedDuringOneWrite = during;
      if (during > OLD_SESSION_WINDOW) stats.writesSpanningOldWindow++;
    }
  }

  private async get(name: string, client: ClusterClient, key: string, seen: Seen): Promise<void> {
    const rec = this.record(name, key, { type: 'get' });
    try {
      const res = await client.get(key, { consistency: this.o.readConsistency ?? 'linearizable' });
      rec.completeAt = performance.now();
      rec.status = rec.outcome = 'ok';
      rec.result = this.unwire(key, res.kv?.value ?? null);
      rec.revision = res.revision;
      rec.modRevision = res.kv?.modRevision ?? 0;
      if (this.isRegister(key)) seen.set(key, { value: rec.result as string | null, modRevision: res.kv?.modRevision ?? 0 });
    } catch (err) {
      // A read has no effect: whatever happened, it constrains nothing.
      rec.status = rec.outcome = err instanceof TimeoutError ? 'info' : 'fail';
      rec.endedAt = performance.now();
      rec.error = errText(err);
    }
  }

  private put(name: string, client: ClusterClient, key: string, value: string, seen: Seen, stats?: Caller['stats']): Promise<Outcome> {
    return this.tracked(stats, async () => {
      const rec = this.record(name, key, { type: 'put', value });
      try {
        const res = await client.put(key, this.wire(key, value));
        rec.completeAt = performance.now();
        rec.status = rec.outcome = 'ok';
        rec.revision = res.revision;
        rec.modRevision = res.kv?.modRevision;
        seen.set(key, { value, modRevision: res.kv?.modRevision ?? res.revision });
      } catch (err) {
        this.writeError(rec, err);
      }
      return rec.outcome;
    }, (o) => o === 'ok');
  }

  private cas(name: string, client: ClusterClient, key: string, value: string, seen: Seen, stats?: Caller['stats']): Promise<Outcome> {
    return this.tracked(stats, async () => {
      const last = seen.get(key) ?? { value: null, modRevision: 0 };
      // Values are unique per write, so "modRevision == expectedRevision" is "the key holds the value
      // this client saw at that revision": the model checks cas by value.
      const rec = this.record(name, key, { type: 'cas', expected: last.value, value }, { expectedRevision: last.modRevision });
      try {
        const res = await client.put(key, this.wire(key, value), { expectedRevision: last.modRevision });
        rec.completeAt = performance.now();
        rec.status = rec.outcome = 'ok';
        rec.result = true;
        rec.revision = res.revision;
        rec.modRevision = res.kv?.modRevision;
        seen.set(key, { value, modRevision: res.kv?.modRevision ?? res.revision });
      } catch (err) {
        if (err instanceof MetaError && err.code === 'casFailed') {
          // The applied outcome of this session seq: it ran, found another revision, changed nothing.
          rec.completeAt = performance.now();
          rec.status = 'ok';
          rec.result = false;
          rec.outcome = 'fail';
          rec.code = err.code;
          rec.revision = err.revision;
          rec.error = errText(err);
          seen.delete(key);
          return 'ok' as Outcome; // applied
        }
        this.writeError(rec, err);
        seen.delete(key);
      }
      return rec.outcome;
    }, (o) => o === 'ok');
  }

  private incr(name: string, client: ClusterClient, key: string, stats?: Caller['stats']): Promise<Outcome> {
    return this.tracked(stats, async () => {
      const rec = this.record(name, key, { type: 'incr', by: 1 }, { symmetry: `incr:1` });
      try {
        const res = await client.incr(key, 1);
        rec.completeAt = performance.now();
        rec.status = rec.outcome = 'ok';
        rec.result = res.kv?.value as number;
        rec.revision = res.revision;
        rec.modRevision = res.kv?.modRevision;
      } catch (err) {
        this.writeError(rec, err);
      }
      return rec.outcome;
    }, (o) => o === 'ok');
  }

  /**
   * Any error of a write other than casFailed (see the module comment): a MetaError is a refusal
   * (`fail`: it never took effect, and the checks require that); anything else is unknown (`info`).
   */
  private writeError(rec: ChaosOp, err: unknown): void {
    rec.endedAt = performance.now();
    rec.error = errText(err);
    if (err instanceof MetaError) {
      rec.status = rec.outcome = 'fail';
      rec.completeAt = rec.endedAt;
      rec.code = err.code;
      delete rec.symmetry;
      return;
    }
    rec.status = rec.outcome = 'info';
    rec.completeAt = null;
  }
}

export function errText(err: unknown): string {
  const e = err as Error;
  const code = e instanceof MetaError ? `(${e.code})` : '';
  return `${e?.name ?? 'Error'}${code}: ${e?.message ?? String(err)}`;
}

export function isNoQuorum(op: ChaosOp): boolean {
  return op.error?.startsWith(NoQuorumError.name) ?? false;
}

/** A write the metadata center refused (a MetaError other than casFailed): it must never take effect. */
export function isRefusal(op: ChaosOp): boolean {
  return op.status === 'fail' && op.op.type !== 'get';
}

export function isPopulation(op: ChaosOp): boolean {
  return op.client.startsWith(POPULATION_CLIENT);
}
