/**
 * ClusterClient: talks to the members over NATS. Finds the leader from redirect hints (cached),
 * retries across leader changes with a fixed session sequence so a retried write applies once,
 * reads linearizably through the leader (ReadIndex) or stale from any member, and watches
 * prefixes without gaps. When no leader can be reached within `quorumWaitMs` a write fails with
 * NoQuorumError; `enqueue` keeps writes in a durable local outbox instead.
 */
import { randomBytes } from 'node:crypto';
import { connect, createInbox, type Msg, type NatsConnection, type Subscription } from 'nats';
import { natsConnectOptions, DEFAULT_CLUSTER } from '../actors/cluster-server.ts';
import { checkNatsTransport, type NatsTls } from './nats/transport-policy.ts';
import { Outbox } from '../actors/outbox.ts';
import type { NodeStatus } from '../actors/node.ts';
import type { WatchPush } from '../actors/watch-hub.ts';
import { decodeEnvelope, encodeEnvelope } from './codec.ts';
import { BadRequestError, CompactedError, MetaError, NoQuorumError, NotLeaderError, ReplyTooLargeError, SessionLostError, TimeoutError } from './errors.ts';
import type { ApiErrorBody, ApiRequest, Consistency } from './api/protocol.ts';
import type { LoopLagJSON } from './metrics.ts';
import { subjects } from './nats/subjects.ts';
import type { ConfChange, NodeId } from './raft/types.ts';
import { MAX_SESSION_WINDOW, decodeMetaCommand, encodeMetaCommand, type KeyValue, type MetaCommand, type MetaResult, type MetaValue, type WatchEvent } from './sm/metadata.ts';

export interface ClusterClientOptions {
  nats: string[] | NatsConnection;
  cluster?: string;
  user?: string;
  pass?: string;
  /** CA (and client certificate) for TLS to the broker; tls:// URLs turn TLS on too. */
  tls?: NatsTls;
  /** Allow NATS URLs that are neither loopback nor tls:// (clear text across the network). */
  insecure?: boolean;
  /** Session id for exactly-once writes; random by default. */
  clientId?: string;
  /** Per-request reply timeout. */
  requestTimeoutMs?: number;
  /** How long a write keeps trying to reach a leader before NoQuorumError / TimeoutError. */
  quorumWaitMs?: number;
  /** Directory of the durable outbox used by enqueue(); without it enqueue() is unavailable. */
  outboxDir?: string;
}

/** A member's NodeStatus plus what the member adds (see ClusterServer.status). */
export interface MemberStatus extends NodeStatus {
  revision: number;
  progress?: Record<string, { match: number; next: number; state: string; lag: number }>;
  counters: Record<string, number>;
  transitions: { at: number; from: string; to: string; term: number }[];
  faults: { dropTo: NodeId[]; dropFrom: NodeId[] };
  pid: number;
  rssBytes: number;
  /** V8 heap and off-heap memory (bytes). */
  memory: { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
  /** WAL fdatasync latency histogram (ms). */
  fsyncMs: { bounds: number[]; counts: number[]; sum: number; count: number };
  /** Garbage-collection pauses of the member process (ms). */
  gcMs: { bounds: number[]; counts: number[]; sum: number; count: number };
  /** Event-loop lag of the member process (ms): histogram since start, last 60 s, longest stall. */
  loopLagMs: LoopLagJSON;
  /**
   * Snapshots this member took (taken, lastIndex/lastBytes/lastMs: the latest, written in the
   * background) and installed from a leader or at start (restored, lastRestoreMs); keys in its store.
   */
  snapshots: { taken: number; restored: number; lastIndex: number; lastBytes: number; lastMs: number; lastRestoreMs: number; keys: number };
  /** Election or quorum checks put off because the member's own event loop had stalled past them. */
  stallGraces: number;
}

export interface WatchOptions {
  fromRevision?: number;
  onEvent(ev: WatchEvent): void;
  /** Called when the watch had to restart from a list (history compacted): the full current state. */
  onResync?(kvs: KeyValue[], revision: number): void;
  onError?(err: Error): void;
  ttlMs?: number;
}

export interface Watcher {
  /** Revision of the last delivered change (or progress) */
  readonly revision: number;
  /** The member currently serving the watch (it moves when that member dies). */
  readonly member: NodeId | null;
  close(): Promise<void>;
}

type RequestError = Error & { leader?: NodeId | null };

/** This client's session in the cluster: its seqs and the ones still in flight (a Set keeps insertion order: the first is the oldest). */
interface ClientSession {
  id: string;
  seq: number;
  inFlight: Set<number>;
  /** Writes waiting for the oldest in-flight seq to complete (the session window is full). */
  waiting: (() => void)[];
}

export class ClusterClient {
  readonly clientId: string;
  readonly cluster: string;
  private session: ClientSession | null = null;
  private opening: Promise<ClientSession> | null = null;
  private leader: NodeId | null = null;
  private closed = false;
  private readonly timeoutMs: number;
  private readonly quorumWaitMs: number;
  private box: Outbox | null = null;
  /** Members whose subject had no subscriber recently (process gone). */
  private readonly goneUntil = new Map<NodeId, number>();
  /**
   * Our own request/reply: one subscription on `<inbox>.*`, a token per request. nats.js's
   * request() builds a NatsError for every request it completes (to reject an already resolved
   * promise): 6% of a busy client's CPU in a profile.
   */
  private replies: { prefix: string; next: number; waiting: Map<string, PendingReply> } | null = null;

  private constructor(readonly nc: NatsConnection, private readonly ownsConnection: boolean, o: ClusterClientOptions) {
    this.cluster = o.cluster ?? DEFAULT_CLUSTER;
    this.clientId = o.clientId ?? `c-${randomBytes(9).toString('base64url')}`;
    this.timeoutMs = o.requestTimeoutMs ?? 2000;
    this.quorumWaitMs = o.quorumWaitMs ?? 5000;
  }

  static async connect(o: ClusterClientOptions): Promise<ClusterClient> {
    if (Array.isArray(o.nats)) checkNatsTransport(o.nats, { tls: o.tls, insecure: o.insecure });
    const client = Array.isArray(o.nats)
      ? new ClusterClient(await connect(natsConnectOptions(o.nats, 'submarine-cluster client', o.user, o.pass, o.tls)), true, o)
      : new ClusterClient(o.nats, false, o);
    if (o.outboxDir) {
      client.box = await Outbox.open({
        dir: o.outboxDir,
        // The outbox keeps its own cluster session on disk: stable across restarts, reused on retry.
        openSession: () => client.openSession(),
        submit: ({ client: id, seq, command }) => client.writeWithSession({ ...decodeMetaCommand(command), session: { client: id, seq } } as MetaCommand),
        isRetryable: (err) => err instanceof NoQuorumError || err instanceof TimeoutError || err instanceof NotLeaderError || isNoResponders(err),
      });
    }
    return client;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.box?.close();
    this.closed = true;
    for (const w of this.replies?.waiting.values() ?? []) {
      clearTimeout(w.timer);
      w.reject(new Error('client closed'));
    }
    this.replies?.waiting.clear();
    if (this.ownsConnection) await this.nc.close();
  }

  /**
   * Stores a write durably in the local outbox (resolves once fsynced) and commits it in the
   * background, in order, exactly once, retrying while the cluster is unreachable — also across
   * client restarts. Results arrive through `outbox.onResult`.
   */
  async enqueue(cmd: MetaCommand): Promise<{ seq: number }> {
    if (cmd.session) throw new Error('enqueue: the outbox assigns the session');
    return this.outbox.enqueue(encodeMetaCommand(cmd));
  }

  get outbox(): Outbox {
    if (!this.box) throw new Error('this client has no outbox: connect with { outboxDir }');
    return this.box;
  }

  // ---- key/value -----------------------------------------------------------------------------

  async put(key: string, value: MetaValue, o: { lease?: number; expectedRevision?: number; merge?: boolean } = {}) {
    return this.ok(await this.write({ op: 'put', key, value, ...o }));
  }

  async delete(key: string, o: { expectedRevision?: number } = {}) {
    return this.ok(await this.write({ op: 'delete', key, ...o }));
  }

  async deletePrefix(prefix: string) {
    return this.ok(await this.write({ op: 'deletePrefix', prefix }));
  }

  async incr(key: string, by = 1) {
    return this.ok(await this.write({ op: 'incr', key, by }));
  }

  async get(key: string, o: { consistency?: Consistency } = {}): Promise<{ kv: KeyValue | null; revision: number; member: NodeId }> {
    return (await this.read({ op: 'get', key, consistency: o.consistency ?? 'linearizable' })) as never;
  }

  /**
   * Keys under `prefix`, sorted. With `limit` or `after`: one page (`more` says whether keys remain;
   * pass the last key as `after` for the next). Without: every key, fetched page by page when the
   * listing is larger than one reply may carry (512 KiB). Each page is read at its own revision, so a
   * paged listing is not one snapshot; `revision` is then the first page's, and a watch started from
   * it replays whatever changed while the pages were read.
   */
  async list(prefix: string, o: { consistency?: Consistency; limit?: number; after?: string } = {}): Promise<{ kvs: KeyValue[]; revision: number; member: NodeId; more: boolean }> {
    const consistency = o.consistency ?? 'linearizable';
    const page = async (after: string | undefined, limit: number | undefined) => {
      const r = (await this.read({ op: 'list', prefix, consistency, ...(limit !== undefined ? { limit } : {}), ...(after !== undefined ? { after } : {}) })) as { kvs: KeyValue[]; revision: number; member: NodeId; more?: boolean };
      return { ...r, more: r.more === true };
    };
    if (o.limit !== undefined || o.after !== undefined) return page(o.after, o.limit);
    const first = await page(undefined, undefined);
    const kvs = [...first.kvs];
    for (let last = first; last.more && last.kvs.length; ) {
      last = await page(last.kvs[last.kvs.length - 1]!.key, undefined);
      kvs.push(...last.kvs);
    }
    return { kvs, revision: first.revision, member: first.member, more: false };
  }

  async leaseGrant(ttlMs: number): Promise<number> {
    return this.ok(await this.write({ op: 'leaseGrant', ttlMs })).leaseId!;
  }

  async leaseRevoke(id: number) {
    return this.ok(await this.write({ op: 'leaseRevoke', id }));
  }

  async leaseKeepAlive(id: number): Promise<number> {
    return (await this.toLeader({ op: 'leaseKeepAlive', id })).ttlMs as number;
  }

  /**
   * Any command through the log with this client's session. The same sequence number is reused
   * for every retry, so the metadata center applies it once even if a reply was lost.
   *
   * Any number of callers may share one client: a refusal (MetaError) always means "not applied",
   * an unknown outcome is a TimeoutError or an OutcomeUnknownError (SessionLostError). The cluster
   * keeps every result until the client acknowledges it; the client keeps its seqs in flight within
   * MAX_SESSION_WINDOW of the oldest one (a write waits for room rather than outrun a slow one).
   */
  async write(cmd: MetaCommand): Promise<MetaResult> {
    for (;;) {
      const session = await this.currentSession();
      if (session.inFlight.size > 0) {
        const oldest = session.inFlight.values().next().value as number;
        if (session.seq + 1 - oldest >= MAX_SESSION_WINDOW) {
          await new Promise<void>((resolve) => session.waiting.push(resolve));
          continue;
        }
      }
      const seq = ++session.seq;
      session.inFlight.add(seq);
      // ack: every seq below the oldest one still in flight has its reply here; the metadata center
      // may forget those results. Writes in flight together may arrive in any order.
      const ack = (session.inFlight.values().next().value as number) - 1;
      let sent: { result: MetaResult; maybeApplied: boolean };
      try {
        sent = await this.sendWrite({ ...cmd, session: { client: session.id, seq, ack } } as MetaCommand);
      } finally {
        session.inFlight.delete(seq);
        session.waiting.splice(0).forEach((wake) => wake());
      }
      const r = sent.result;
      if (r.ok || (r.code !== 'sessionExpired' && r.code !== 'sessionStale')) return r;
      if (r.code === 'sessionExpired' && !sent.maybeApplied) {
        // No attempt of this write was applied: it is safe under a new session.
        if (this.session === session) this.session = null;
        continue;
      }
      throw new SessionLostError(`outcome unknown: ${r.message} after an earlier attempt may have been applied; read the key to learn the outcome`);
    }
  }

  /** A new session in the cluster (one write through the log); its id for MetaSession.client. */
  async openSession(): Promise<string> {
    const { result } = await this.sendWrite({ op: 'openSession' });
    if (!result.ok || !result.session) throw new MetaError(result.ok ? 'badCommand' : result.code, result.ok ? 'openSession: no session in the answer' : result.message, result.revision);
    return result.session;
  }

  private currentSession(): Promise<ClientSession> {
    if (this.session) return Promise.resolve(this.session);
    this.opening ??= this.openSession().then(
      (id) => {
        this.opening = null;
        return (this.session = { id, seq: 0, inFlight: new Set(), waiting: [] });
      },
      (err) => {
        this.opening = null;
        throw err;
      },
    );
    return this.opening;
  }

  /**
   * Writes with an explicit session (used by the outbox, whose session survives restarts). A
   * session the cluster no longer knows is a SessionLostError: an earlier attempt may have been applied.
   */
  async writeWithSession(cmd: MetaCommand): Promise<MetaResult> {
    const { result } = await this.sendWrite(cmd);
    if (!result.ok && (result.code === 'sessionExpired' || result.code === 'sessionStale')) {
      throw new SessionLostError(`outcome unknown: ${result.message}`);
    }
    return result;
  }

  /** One write through toLeader; maybeApplied: an earlier attempt may have reached a leader's log. */
  private async sendWrite(cmd: MetaCommand): Promise<{ result: MetaResult; maybeApplied: boolean }> {
    const track = { maybeApplied: false };
    const res = await this.toLeader({ op: 'write', cmd: encodeMetaCommand(cmd) }, track);
    return { result: res.result as MetaResult, maybeApplied: track.maybeApplied };
  }

  // ---- cluster -------------------------------------------------------------------------------

  /** Status of one member, or of every member that answers within the timeout. */
  async status(member?: NodeId): Promise<MemberStatus[]> {
    if (member) return [(await this.request(subjects.api(this.cluster, member), { op: 'status' })).status as MemberStatus];
    const first = (await this.anyMember({ op: 'status' })).status as MemberStatus;
    // A joining member answers with an empty configuration: ask it for nothing more, but keep it.
    const ids = [...new Set([first.id, ...first.conf.voters, ...first.conf.learners])];
    const all = await Promise.all(ids.map(async (id) => {
      if (id === first.id) return first;
      try {
        return (await this.request(subjects.api(this.cluster, id), { op: 'status' })).status as MemberStatus;
      } catch {
        return null;
      }
    }));
    return all.filter((s): s is MemberStatus => s !== null);
  }

  async addMember(node: NodeId, o: { catchUpTimeoutMs?: number } = {}): Promise<void> {
    await this.toLeader({ op: 'member', change: { op: 'addLearner', node } });
    const deadline = performance.now() + (o.catchUpTimeoutMs ?? 30_000);
    // Promote only once the learner holds the log up to the leader's commit (no availability gap).
    for (;;) {
      const leader = (await this.status().catch(() => [] as MemberStatus[])).find((m) => m.role === 'leader');
      const p = leader?.progress?.[node];
      if (leader && p && p.match >= leader.commitIndex) break;
      if (performance.now() > deadline) throw new TimeoutError(`learner ${node} did not catch up within ${o.catchUpTimeoutMs ?? 30_000} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.toLeader({ op: 'member', change: { op: 'promote', node } });
  }

  async removeMember(node: NodeId): Promise<void> {
    await this.toLeader({ op: 'member', change: { op: 'remove', node } satisfies ConfChange });
  }

  /** Demo/chaos only (members started with allowFaultInjection): drop Raft traffic at `member`. */
  async injectFault(member: NodeId, f: { dropTo?: NodeId[]; dropFrom?: NodeId[] }): Promise<void> {
    await this.request(subjects.api(this.cluster, member), { op: 'fault', dropTo: f.dropTo ?? [], dropFrom: f.dropFrom ?? [] });
  }

  async transferLeader(target: NodeId): Promise<void> {
    await this.toLeader({ op: 'transfer', target });
  }

  // ---- watch ---------------------------------------------------------------------------------

  /**
   * Every committed change under `prefix` after `fromRevision` (default: from now), in order.
   * A lost push or a dead member is noticed (gap in `from`, or silence) and the watch resumes
   * from the last delivered revision on another member; if that revision is compacted, the
   * watcher gets a fresh list through onResync and continues from it.
   */
  async watch(prefix: string, o: WatchOptions): Promise<Watcher> {
    const watchId = `${this.clientId}-w${randomBytes(6).toString('base64url')}`;
    const ttlMs = o.ttlMs ?? 10_000;
    let cursor = o.fromRevision ?? (await this.list(prefix, { consistency: 'stale' })).revision;
    let member: NodeId | null = null;
    let lastPushAt = performance.now();
    let closed = false;
    let resubscribing: Promise<void> | null = null;
    const sub: Subscription = this.nc.subscribe(subjects.watch(this.cluster, watchId), {
      callback: (err, m) => {
        if (err || closed) return;
        let push: WatchPush;
        try {
          push = decodeEnvelope(m.data, { cluster: this.cluster }).body as WatchPush;
        } catch {
          return;
        }
        if (push.watchId !== watchId) return;
        lastPushAt = performance.now();
        if (push.from !== cursor) {
          if (push.to <= cursor) return; // a late duplicate of what we have
          return void resubscribe(); // a push was lost: resume from what we have
        }
        for (const ev of push.events) if (ev.revision > cursor) o.onEvent(ev);
        cursor = Math.max(cursor, push.to);
      },
    });
    const open = async () => {
      const req = { op: 'watch' as const, watchId, prefix, fromRevision: cursor, ttlMs };
      try {
        const res = member ? await this.request(subjects.api(this.cluster, member), req) : await this.anyMember(req);
        member = res.member as NodeId;
      } catch (err) {
        if (err instanceof CompactedError) {
          const listed = await this.list(prefix, { consistency: 'stale' });
          o.onResync?.(listed.kvs, listed.revision);
          cursor = listed.revision;
          const res = await this.anyMember({ ...req, fromRevision: cursor });
          member = res.member as NodeId;
          return;
        }
        member = null;
        throw err;
      }
    };
    const resubscribe = (): Promise<void> => {
      resubscribing ??= (async () => {
        while (!closed) {
          try {
            await open();
            lastPushAt = performance.now();
            return;
          } catch (err) {
            o.onError?.(err as Error);
            member = null;
            await new Promise((r) => setTimeout(r, 200));
          }
        }
      })().finally(() => (resubscribing = null));
      return resubscribing;
    };
    await open();
    const renew = setInterval(() => {
      if (closed || resubscribing) return;
      if (performance.now() - lastPushAt > 3500 || member === null) return void resubscribe();
      this.request(subjects.api(this.cluster, member), { op: 'watchRenew', watchId })
        .then((r) => { if (!r.known) void resubscribe(); })
        .catch(() => void resubscribe());
    }, Math.min(1000, ttlMs / 3));
    return {
      get revision() {
        return cursor;
      },
      get member() {
        return member;
      },
      close: async () => {
        closed = true;
        clearInterval(renew);
        sub.unsubscribe();
        if (member) await this.request(subjects.api(this.cluster, member), { op: 'watchCancel', watchId }).catch(() => {});
      },
    };
  }

  // ---- plumbing ------------------------------------------------------------------------------

  private ok(r: MetaResult): Extract<MetaResult, { ok: true }> {
    if (!r.ok) throw new MetaError(r.code, r.message, r.revision);
    return r;
  }

  private async read(req: ApiRequest): Promise<Record<string, unknown>> {
    if ((req as { consistency?: Consistency }).consistency === 'stale') return this.anyMember(req);
    return this.toLeader(req);
  }

  /**
   * Sends to the cached leader (or any member), following NotLeader hints, until quorumWaitMs.
   * A member that has no subscriber (its process is gone: NATS answers "no responders" at once)
   * is not trusted as a hint for a second: followers keep naming a dead leader until they time out.
   */
  private async toLeader(req: ApiRequest, track: { maybeApplied: boolean } = { maybeApplied: false }): Promise<Record<string, unknown>> {
    const deadline = performance.now() + this.quorumWaitMs;
    // Whether an attempt may have been accepted by a leader (its outcome is unknown): then the
    // end result is TimeoutError, never NoQuorumError, which promises the write did not happen.
    let maybeApplied = false;
    let last: Error | null = null;
    let delay = 10;
    for (;;) {
      if (this.closed) throw new Error('client is closed');
      const target = this.leader;
      try {
        const res = target ? await this.request(subjects.api(this.cluster, target), req) : await this.anyMember(req);
        if (!target && typeof res.member === 'string') this.leader = res.member;
        return res;
      } catch (err) {
        last = err as Error;
        const e = err as RequestError;
        if (e instanceof NotLeaderError) {
          const hint = e.leader && (this.goneUntil.get(e.leader) ?? 0) < performance.now() ? e.leader : null;
          if (hint && hint !== target) {
            this.leader = hint;
            continue; // follow the hint at once
          }
          this.leader = null;
        } else if (isNoResponders(e)) {
          if (target) this.goneUntil.set(target, performance.now() + 1000);
          this.leader = null;
        } else if (e instanceof NoQuorumError) {
          this.leader = null; // the leader refused it: not applied; a majority may come back
        } else if (e instanceof TimeoutError || e.name === 'NodeStoppedError' || e.name === 'ProposalDroppedError' || e.name === 'OutcomeUnknownError') {
          // The member may have appended it before timing out or stopping: retry the same session.
          maybeApplied = true;
          track.maybeApplied = true;
          this.leader = null;
        } else throw err; // a definite answer (MetaError, BadRequest, ...) is not retried
      }
      if (performance.now() + delay > deadline) break;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 1.5, 100);
    }
    if (!maybeApplied) {
      throw new NoQuorumError(`no leader with a working majority within ${this.quorumWaitMs} ms: not applied (${last?.message ?? 'no answer'})`);
    }
    // The last answer speaks for the last attempt only (it may say "not applied" for that one):
    // name it as such, so the error never claims both outcomes at once.
    throw new TimeoutError(
      `outcome unknown: an earlier attempt may have reached a leader's log and nothing settled it within ${this.quorumWaitMs} ms; `
      + `retrying with the same session is safe (last answer, about the last attempt only: ${last?.name ?? 'none'}: ${last?.message ?? 'no answer'})`,
    );
  }

  private roundTrip(subject: string, data: Uint8Array): Promise<Msg> {
    if (!this.replies) {
      const prefix = `${createInbox()}.`;
      const waiting = new Map<string, PendingReply>();
      this.nc.subscribe(`${prefix}*`, {
        callback: (err, m) => {
          if (err) return;
          const token = m.subject.slice(prefix.length);
          const w = waiting.get(token);
          if (!w) return; // late (timed out)
          waiting.delete(token);
          clearTimeout(w.timer);
          // The broker answers a request nobody subscribes to with a 503 status message.
          if (m.headers?.hasError && m.headers.code === 503) w.reject(Object.assign(new Error(`no member answers on ${w.subject}`), { name: 'NoRespondersError' }));
          else w.resolve(m);
        },
      });
      this.replies = { prefix, next: 0, waiting };
    }
    const r = this.replies;
    const token = (r.next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      const timer = setTimeout(() => {
        r.waiting.delete(token);
        reject(new TimeoutError(`no reply on ${subject} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      r.waiting.set(token, { subject, resolve, reject, timer });
      try {
        this.nc.publish(subject, data, { reply: r.prefix + token });
      } catch (err) {
        clearTimeout(timer);
        r.waiting.delete(token);
        reject(err as Error);
      }
    });
  }

  private anyMember(req: ApiRequest): Promise<Record<string, unknown>> {
    return this.request(subjects.apiAny(this.cluster), req);
  }

  private async request(subject: string, req: ApiRequest): Promise<Record<string, unknown>> {
    const m = await this.roundTrip(subject, encodeEnvelope(this.cluster, 'req', req));
    const env = decodeEnvelope(m.data, { cluster: this.cluster });
    const body = env.body as { ok: boolean; error?: ApiErrorBody } & Record<string, unknown>;
    if (!body.ok) throw toError(body.error!);
    return body;
  }
}

interface PendingReply {
  subject: string;
  resolve: (m: Msg) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

function isNoResponders(e: unknown): boolean {
  return (e as Error | null)?.name === 'NoRespondersError';
}

function toError(b: ApiErrorBody): Error {
  switch (b.name) {
    case 'NotLeaderError':
      return new NotLeaderError(b.leader ?? null, b.message);
    case 'TimeoutError':
      return new TimeoutError(b.message);
    case 'NoQuorumError':
      return new NoQuorumError(b.message);
    case 'CompactedError':
      return new CompactedError(b.revision ?? 0, b.message);
    case 'MetaError':
      return new MetaError(b.code ?? 'unknown', b.message, b.revision);
    case 'BadRequestError':
      return new BadRequestError(b.message);
    case 'ReplyTooLargeError':
      return new ReplyTooLargeError(b.message);
    default:
      return Object.assign(new Error(b.message), { name: b.name });
  }
}
