/**
 * The chaos workload: C concurrent clients, each with its own NATS connection and its own session
 * (ClusterClient clientId), doing random operations over a small key set, every one recorded as a
 * history entry with monotonic times (performance.now() of this process: one clock for all
 * clients and for the nemesis log).
 *
 * Keys: `chaos/r0..r{R-1}` are registers (put of unique values, linearizable get, cas by
 * expectedRevision), `chaos/c0..c{K-1}` are counters (incr by 1, linearizable get).
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
 * - info (unknown outcome), for every other error of a write: TimeoutError (the client says so),
 *   but also NoQuorumError, NotLeader/"no responders"-shaped errors, ProposalDroppedError, a
 *   closed connection, other MetaErrors. The checker lets an info write take effect at any single
 *   point after its invocation, or never.
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
 *   sent, no error of a write is proof, except casFailed (the applied outcome). The check reports,
 *   by error name, the unknown-outcome writes later observed to have taken effect.
 *
 *   After an info write the client carries on with its next seq; the metadata center then refuses
 *   the old seq if it arrives later (seq <= ack): "at any later time, or never" covers that too.
 * - fail: only reads. A read has no effect, so a failed or timed-out get constrains nothing
 *   (the checker leaves fail and info gets out).
 */
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
}

export const CHAOS_PREFIX = 'chaos/';

export function registerKeys(n: number, prefix = CHAOS_PREFIX): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}r${i}`);
}
export function counterKeys(n: number, prefix = CHAOS_PREFIX): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}c${i}`);
}

export class Workload {
  readonly history: ChaosOp[] = [];
  readonly registers: string[];
  readonly counters: string[];
  private readonly clients: ClusterClient[] = [];
  private loops: Promise<void>[] = [];
  private stopping = false;
  private nextId = 0;

  private constructor(private readonly o: WorkloadOptions) {
    this.registers = registerKeys(o.registerKeys ?? 6, o.prefix);
    this.counters = counterKeys(o.counterKeys ?? 2, o.prefix);
  }

  static async start(o: WorkloadOptions): Promise<Workload> {
    const w = new Workload(o);
    const seedRng = createRng(o.seed);
    for (let i = 0; i < o.clients; i++) {
      const client = await ClusterClient.connect({
        ...o.cluster.clientOptions(),
        clientId: `chaos-${o.seed}-w${i}-${Date.now().toString(36)}`,
        quorumWaitMs: o.quorumWaitMs ?? 5000,
        requestTimeoutMs: o.requestTimeoutMs,
      });
      w.clients.push(client);
    }
    w.loops = w.clients.map((c, i) => w.loop(`w${i}`, c, seedRng.fork()));
    return w;
  }

  get keys(): string[] {
    return [...this.registers, ...this.counters];
  }

  /** Stops issuing ops, waits for the ones in flight (each ends within quorumWaitMs), closes the clients. */
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

  private async loop(name: string, client: ClusterClient, rng: Rng): Promise<void> {
    let n = 0;
    /** What this client last saw of each register: the cas expectation. */
    const seen = new Map<string, { value: string | null; modRevision: number }>();
    while (!this.stopping) {
      const r = rng();
      if (r < 0.35) {
        await this.get(name, client, rng.pick(this.keys), seen);
      } else if (r < 0.6) {
        const key = rng.pick(this.registers);
        await this.put(name, client, key, `${name}.${n++}`, seen);
      } else if (r < 0.8) {
        const key = rng.pick(this.registers);
        // Half the time read first (read-modify-write), otherwise cas on what we saw last.
        if (!seen.has(key) || rng.chance(0.5)) await this.get(name, client, key, seen);
        if (this.stopping) break;
        await this.cas(name, client, key, `${name}.${n++}`, seen);
      } else {
        await this.incr(name, client, rng.pick(this.counters));
      }
    }
  }

  private async get(name: string, client: ClusterClient, key: string, seen: Map<string, { value: string | null; modRevision: number }>): Promise<void> {
    const rec = this.record(name, key, { type: 'get' });
    try {
      const res = await client.get(key, { consistency: this.o.readConsistency ?? 'linearizable' });
      rec.completeAt = performance.now();
      rec.status = rec.outcome = 'ok';
      rec.result = (res.kv?.value ?? null) as string | number | null;
      rec.revision = res.revision;
      rec.modRevision = res.kv?.modRevision ?? 0;
      if (this.registers.includes(key)) seen.set(key, { value: (res.kv?.value ?? null) as string | null, modRevision: res.kv?.modRevision ?? 0 });
    } catch (err) {
      // A read has no effect: whatever happened, it constrains nothing.
      rec.status = rec.outcome = err instanceof TimeoutError ? 'info' : 'fail';
      rec.endedAt = performance.now();
      rec.error = errText(err);
    }
  }

  private async put(name: string, client: ClusterClient, key: string, value: string, seen: Map<string, { value: string | null; modRevision: number }>): Promise<void> {
    const rec = this.record(name, key, { type: 'put', value });
    try {
      const res = await client.put(key, value);
      rec.completeAt = performance.now();
      rec.status = rec.outcome = 'ok';
      rec.revision = res.revision;
      rec.modRevision = res.kv?.modRevision;
      seen.set(key, { value, modRevision: res.kv?.modRevision ?? res.revision });
    } catch (err) {
      this.unknown(rec, err);
    }
  }

  private async cas(name: string, client: ClusterClient, key: string, value: string, seen: Map<string, { value: string | null; modRevision: number }>): Promise<void> {
    const last = seen.get(key) ?? { value: null, modRevision: 0 };
    // Values are unique per write, so "modRevision == expectedRevision" is "the key holds the value
    // this client saw at that revision": the model checks cas by value.
    const rec = this.record(name, key, { type: 'cas', expected: last.value, value }, { expectedRevision: last.modRevision });
    try {
      const res = await client.put(key, value, { expectedRevision: last.modRevision });
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
        rec.revision = err.revision;
        rec.error = errText(err);
        seen.delete(key);
      } else {
        this.unknown(rec, err);
        seen.delete(key);
      }
    }
  }

  private async incr(name: string, client: ClusterClient, key: string): Promise<void> {
    const rec = this.record(name, key, { type: 'incr', by: 1 }, { symmetry: `incr:1` });
    try {
      const res = await client.incr(key, 1);
      rec.completeAt = performance.now();
      rec.status = rec.outcome = 'ok';
      rec.result = res.kv?.value as number;
      rec.revision = res.revision;
      rec.modRevision = res.kv?.modRevision;
    } catch (err) {
      this.unknown(rec, err);
    }
  }

  /** Any error of a write other than casFailed: the outcome is unknown (see the module comment). */
  private unknown(rec: ChaosOp, err: unknown): void {
    rec.status = rec.outcome = 'info';
    rec.completeAt = null;
    rec.endedAt = performance.now();
    rec.error = errText(err);
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
