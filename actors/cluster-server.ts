/**
 * One cluster member in a server process: a RaftNode over NATS with durable storage, hosting the
 * metadata center, and answering client requests. Writes go through the leader (others answer
 * NotLeader with a hint); linearizable reads use ReadIndex on the leader; stale reads are served
 * by any member with the revision they reflect.
 */
import { DEFAULT_ELECTION_TIMEOUT_MS } from '../src/raft/state.ts';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type Msg, type NatsConnection, type Subscription } from 'nats';
import { decodeEnvelope, DecodeError, encodeEnvelope } from '../src/codec.ts';
import { BadRequestError, NoQuorumError, NotLeaderError, ReplyTooLargeError, TimeoutError } from '../src/errors.ts';
import { Counters, EventLoopLag, FSYNC_MS_BUCKETS, GC_MS_BUCKETS, Histogram, RateLimitedLog } from '../src/metrics.ts';
import { PerformanceObserver } from 'node:perf_hooks';
import { createServer, type Server } from 'node:http';
import { checkRequest, errorBody, MAX_LIST_LIMIT, type ApiRequest, type ApiResponse } from '../src/api/protocol.ts';
import { API_QUEUE, subjects } from '../src/nats/subjects.ts';
import { checkNatsTransport, natsTlsOption, type NatsTls } from '../src/nats/transport-policy.ts';
import type { NodeId, ConfChange } from '../src/raft/types.ts';
import { encodeMetaCommand, MetadataStateMachine, registerReducer, type MetaCommand, type MetaResult } from '../src/sm/metadata.ts';
import { NOTEBOOK_REDUCER, notebookReducer } from '../src/notebook/reducer.ts';
import { NodeFileSystem } from '../src/storage/fs.ts';
import { DiskRaftStorage } from '../src/storage/raft-storage.ts';
import { LeaseKeeper } from './lease-keeper.ts';
import { Monitor, resolveMonitorOptions, type MonitorOptions } from './monitor.ts';
import { NatsTransport } from './nats-transport.ts';
import { RaftNode } from './node.ts';
import { realClock, silentLogger, type Clock, type Logger } from './ports.ts';
import { WatchHub } from './watch-hub.ts';

export interface ClusterServerOptions {
  id: NodeId;
  /** Initial voters (every member starts with the same list). Ignored when `join` is set. */
  peers: NodeId[];
  /** Start empty and wait to be added by the cluster (members add) instead of bootstrapping. */
  join?: boolean;
  cluster?: string;
  /** NATS URLs (several: the member reconnects to another when one dies) or a connection to share. */
  nats: string[] | NatsConnection;
  natsUser?: string;
  natsPass?: string;
  /** CA (and client certificate) for TLS to the broker; tls:// URLs turn TLS on too. */
  natsTls?: NatsTls;
  /**
   * Allow NATS URLs that are neither loopback nor tls:// (clear text across the network). Without
   * it such a member refuses to start (InsecureTransportError), before connecting.
   */
  insecure?: boolean;
  dataDir: string;
  logger?: Logger;
  electionTimeoutMs?: { min: number; max: number };
  heartbeatIntervalMs?: number;
  snapshotEveryEntries?: number;
  /** See ClusterConfig.commitFlushDelayMs (default 2). */
  commitFlushDelayMs?: number;
  /** How long a write may wait for its commit before the member answers TimeoutError. */
  proposeTimeoutMs?: number;
  maxValueBytes?: number;
  /** Serve GET /metrics (Prometheus text) on 127.0.0.1:metricsPort (0 picks a free port). */
  metricsPort?: number;
  /** Accept `fault` requests (drop Raft traffic to/from chosen peers): demos and the chaos suite only. */
  allowFaultInjection?: boolean;
  clock?: Clock;
  /** Heartbeat evictor (acts on the leader only); on by default, `false` turns it off. */
  monitor?: MonitorOptions | false;
}

export const DEFAULT_CLUSTER = 'submarine';

// What status() adds for the event-loop lag, declared here next to it (the client's MemberStatus
// lists the rest of what status() returns).
// The reducers every member applies (code, identical on every member): the replicated notebook.
registerReducer(NOTEBOOK_REDUCER, notebookReducer);
/**
 * Raft messages over NATS stay small: a 1 MB message takes ~170 ms through nats.js here and
 * delays every heartbeat queued behind it on the connection (elections follow). Appends carry at
 * most 128 KiB of entries (one larger entry alone); values are capped at 256 KiB; members drop
 * anything over 512 KiB and the broker refuses anything over 1 MB.
 */
export const RAFT_APPEND_BYTES = 128 * 1024;
export const DEFAULT_MAX_VALUE_BYTES = 256 * 1024;
export const MAX_RAFT_MESSAGE_BYTES = 512 * 1024;
export const MAX_API_REQUEST_BYTES = 512 * 1024;
/**
 * Encoded key-values per list page: the reply must fit the broker's 1 MB max_payload (a single
 * key-value, value limit 256 KiB, always does); longer listings are paged.
 */
const LIST_PAGE_BYTES = 512 * 1024;

/** Where a member's memory is (bytes): V8 heap used/total and off-heap buffers. */
function memoryBreakdown(): { heapUsed: number; heapTotal: number; external: number; arrayBuffers: number } {
  const m = process.memoryUsage();
  return { heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

/** nats.js defaults give up after 10 reconnects and notice a paused server only after minutes. */
export function natsConnectOptions(servers: string[], name: string, user?: string, pass?: string, tlsFiles?: NatsTls) {
  // TLS whenever a URL is tls:// or TLS files are given (a tls:// URL alone does not make nats.js use TLS).
  const tls = natsTlsOption(servers, tlsFiles);
  return {
    servers, name, user, pass,
    ...(tls ? { tls } : {}),
    maxReconnectAttempts: -1, reconnectTimeWait: 100, reconnectJitter: 100,
    pingInterval: 2000, maxPingOut: 2, waitOnFirstConnect: true, timeout: 5000,
    // The servers are listed nearest first (a member's own host's server): keep that order.
    noRandomize: true,
    // nats.js otherwise builds two Errors per request for async stack traces (a measured 14-19%
    // of a busy client's CPU); timeouts are reported by our own errors anyway.
    noAsyncTraces: true,
  };
}

export class ClusterServer {
  readonly id: NodeId;
  readonly cluster: string;
  readonly counters: Counters;
  readonly node: RaftNode<MetaResult>;
  readonly sm: MetadataStateMachine;
  readonly transport: NatsTransport;
  readonly nc: NatsConnection;
  private readonly subs: Subscription[] = [];
  private readonly watches: WatchHub;
  private readonly leases: LeaseKeeper;
  /** The evictor of silent servers/interpreters (null when disabled): see onLeaderAction. */
  readonly monitor: Monitor | null;
  private readonly log: Logger;
  private readonly limiter = new RateLimitedLog();
  private readonly ownsConnection: boolean;
  private stopped = false;
  /** WAL fdatasync latency (ms). */
  fsyncMs = new Histogram(FSYNC_MS_BUCKETS);
  /** Garbage-collection pauses of this process (ms): every request waits behind them. */
  readonly gcMs = new Histogram(GC_MS_BUCKETS);
  private readonly gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) this.gcMs.observe(e.duration);
  });
  /** Event-loop lag of this process (ms, sampled every 10 ms): every request waits behind it too. */
  readonly loopLag = new EventLoopLag(10);
  private lastTransition: unknown = null;
  private metricsServer: Server | null = null;
  /** Where GET /metrics is served, when enabled. */
  metricsUrl: string | null = null;

  private constructor(o: ClusterServerOptions, nc: NatsConnection, owns: boolean, node: RaftNode<MetaResult>, sm: MetadataStateMachine, transport: NatsTransport, counters: Counters) {
    this.counters = counters;
    this.gcObserver.observe({ entryTypes: ['gc'] });
    this.loopLag.start();
    this.id = o.id;
    this.cluster = o.cluster ?? DEFAULT_CLUSTER;
    this.nc = nc;
    this.ownsConnection = owns;
    this.node = node;
    this.sm = sm;
    this.transport = transport;
    this.log = o.logger ?? silentLogger;
    this.opts = o;
    const clock = o.clock ?? realClock;
    this.watches = new WatchHub({ nc, cluster: this.cluster, sm, clock });
    this.leases = new LeaseKeeper({
      sm, clock, logger: this.log,
      isLeader: () => node.status().role === 'leader',
      leaderHint: () => node.status().leader,
      revoke: (id) => this.proposeLocal({ op: 'leaseRevoke', id }),
    });
    this.monitor = o.monitor === false ? null : new Monitor(this, { logger: this.log, ...o.monitor });
  }
  private readonly opts: ClusterServerOptions;

  static async start(o: ClusterServerOptions): Promise<ClusterServer> {
    const cluster = o.cluster ?? DEFAULT_CLUSTER;
    const logger = o.logger ?? silentLogger;
    if (!o.join && !o.peers.includes(o.id)) throw new Error(`member id ${o.id} is not in peers [${o.peers.join(', ')}]`);
    if (o.monitor !== false) resolveMonitorOptions(o.monitor); // a bad setting fails before anything starts
    const owns = Array.isArray(o.nats);
    if (Array.isArray(o.nats)) checkNatsTransport(o.nats, { tls: o.natsTls, insecure: o.insecure });
    const nc = Array.isArray(o.nats)
      ? await connect(natsConnectOptions(o.nats, `member ${o.id}`, o.natsUser, o.natsPass, o.natsTls))
      : o.nats;
    try {
      await mkdir(o.dataDir, { recursive: true });
      const fsyncMs = new Histogram(FSYNC_MS_BUCKETS);
      const counters = new Counters();
      const storage = new DiskRaftStorage({
        fs: new NodeFileSystem(), dir: join(o.dataDir, 'raft'), logger,
        onSync: (ms, entries) => {
          fsyncMs.observe(ms);
          counters.inc('wal_entries_synced_total', undefined, entries);
        },
      });
      const sm = new MetadataStateMachine({ maxValueBytes: o.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES });
      const peers = new Set(o.peers);
      let node: RaftNode<MetaResult> | null = null;
      const transport = new NatsTransport({
        nc, cluster, self: o.id, counters, logger, maxBytes: MAX_RAFT_MESSAGE_BYTES,
        isMember: (id) => {
          if (peers.has(id)) return true;
          if (node === null) return false;
          const { voters, learners } = node.state.conf;
          // A joining member has no configuration until the leader's log reaches it: it accepts
          // any member (the broker already lets only member credentials publish Raft traffic).
          return voters.includes(id) || learners.includes(id) || (o.join === true && voters.length === 0);
        },
      });
      node = await RaftNode.start<MetaResult>({
        id: o.id,
        bootstrap: o.join ? { voters: [], learners: [] } : { voters: [...o.peers], learners: [] },
        storage, stateMachine: sm, transport, clock: o.clock ?? realClock, random: Math.random, logger,
        electionTimeoutMs: o.electionTimeoutMs, heartbeatIntervalMs: o.heartbeatIntervalMs,
        raft: { maxBytesPerMsg: RAFT_APPEND_BYTES, snapshotChunkBytes: 64 * 1024, ...(o.commitFlushDelayMs !== undefined ? { commitFlushDelayMs: o.commitFlushDelayMs } : {}) },
        snapshotEveryEntries: o.snapshotEveryEntries ?? 10_000,
      });
      const server = new ClusterServer(o, nc, owns, node, sm, transport, counters);
      server.fsyncMs = fsyncMs;
      node.onChange(() => {
        const t = node!.transitions.at(-1);
        if (t && t !== server.lastTransition) {
          server.lastTransition = t;
          // A campaign; a single voter can go straight to leader within one step.
          if (t.to === 'candidate' || (t.to === 'leader' && t.from !== 'candidate')) counters.inc('raft_elections_total');
          if (t.to === 'leader') counters.inc('raft_leaderships_total');
        }
      });
      server.listen();
      if (o.metricsPort !== undefined) {
        // A taken port must not leave a running member (node, subscriptions, GC observer) behind.
        await server.serveMetrics(o.metricsPort).catch(async (err: unknown) => {
          await server.stop().catch(() => {});
          throw err;
        });
      }
      logger.info({ node: o.id, cluster, recovery: node.recovery }, 'cluster member started');
      return server;
    } catch (err) {
      if (owns) await nc.close().catch(() => {});
      throw err;
    }
  }

  status() {
    const s = this.node.status();
    const progress = s.role === 'leader'
      ? Object.fromEntries([...this.node.state.progress].map(([id, p]) => [id, { match: p.match, next: p.next, state: p.state, lag: s.lastIndex - p.match }]))
      : undefined;
    return {
      ...s, revision: this.sm.revision, progress, watches: this.watches.size, counters: this.counters.toJSON(),
      transitions: this.node.transitions.slice(-20),
      faults: { dropTo: [...this.transport.faults.dropTo], dropFrom: [...this.transport.faults.dropFrom] },
      pid: process.pid, rssBytes: process.memoryUsage.rss(), memory: memoryBreakdown(),
      fsyncMs: this.fsyncMs.toJSON(),
      gcMs: this.gcMs.toJSON(),
      loopLagMs: this.loopLag.toJSON(),
      snapshots: { ...this.node.snapshots, keys: this.sm.size },
      stallGraces: this.node.stallGraces,
    };
  }

  /** Clean stop: stop serving, stop Raft (storage flushed and closed), close our NATS connection. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.gcObserver.disconnect();
    this.loopLag.stop();
    for (const s of this.subs) s.unsubscribe();
    this.watches.close();
    this.leases.close();
    this.monitor?.stop();
    await new Promise<void>((r) => (this.metricsServer ? this.metricsServer.close(() => r()) : r()));
    await this.node.stop();
    if (this.ownsConnection) await this.nc.drain().catch(() => {});
    this.log.info({ node: this.id }, 'cluster member stopped');
  }

  /** GET /metrics in Prometheus text format: Raft gauges, every counter, the fsync, GC and event-loop lag histograms. */
  private async serveMetrics(port: number): Promise<void> {
    const { renderMetrics } = await import('../src/dashboard/server.ts');
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
        return;
      }
      const status = this.status();
      const who = `member="${this.id.replace(/["\\\n]/g, '_')}"`;
      const lag = status.loopLagMs;
      const body = renderMetrics({ members: [{ id: this.id, reachable: true, status }] } as never)
        + `# HELP submarine_wal_fsync_ms WAL fdatasync latency in milliseconds.\n# TYPE submarine_wal_fsync_ms histogram\n`
        + this.fsyncMs.render('submarine_wal_fsync_ms', who).join('\n') + '\n'
        + `# HELP submarine_gc_pause_ms Garbage-collection pauses of the member process in milliseconds.\n# TYPE submarine_gc_pause_ms histogram\n`
        + this.gcMs.render('submarine_gc_pause_ms', who).join('\n') + '\n'
        + `# HELP submarine_event_loop_lag_ms Event-loop lag of the member process in milliseconds (timer drift, sampled every ${lag.resolutionMs} ms).\n# TYPE submarine_event_loop_lag_ms histogram\n`
        + this.loopLag.histogram.render('submarine_event_loop_lag_ms', who).join('\n') + '\n'
        + `# HELP submarine_event_loop_lag_window_ms Event-loop lag over the last ${lag.window.seconds} s by quantile (1 = the maximum), in milliseconds.\n# TYPE submarine_event_loop_lag_window_ms gauge\n`
        + [['0.5', lag.window.p50], ['0.99', lag.window.p99], ['1', lag.window.max]].map(([q, v]) => `submarine_event_loop_lag_window_ms{${who},quantile="${q}"} ${v}`).join('\n') + '\n'
        + `# HELP submarine_event_loop_longest_stall_ms Longest event-loop stall of the member process since it started, in milliseconds.\n# TYPE submarine_event_loop_longest_stall_ms gauge\n`
        + `submarine_event_loop_longest_stall_ms{${who}} ${lag.longestStallMs}\n`;
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.metricsServer = server;
    const addr = server.address() as { port: number };
    this.metricsUrl = `http://127.0.0.1:${addr.port}/metrics`;
    this.log.info({ node: this.id, url: this.metricsUrl }, 'metrics');
  }

  // ---- requests --------------------------------------------------------------------------------

  private listen(): void {
    const handler = (err: Error | null, m: Msg) => {
      if (err) return;
      void this.handle(m);
    };
    this.subs.push(this.nc.subscribe(subjects.api(this.cluster, this.id), { callback: handler }));
    this.subs.push(this.nc.subscribe(subjects.apiAny(this.cluster), { queue: API_QUEUE, callback: handler }));
  }

  /**
   * Only the reply subject is kept while a request is in flight, not the message: its payload is a
   * view of the connection's read buffer, which would otherwise stay alive until the answer.
   */
  private handle(m: Msg): Promise<void> {
    return this.handleRequest(m.data, m.reply);
  }

  private async handleRequest(data: Uint8Array, to: string | undefined): Promise<void> {
    let req: ApiRequest;
    try {
      const env = decodeEnvelope(data, { cluster: this.cluster, maxBytes: MAX_API_REQUEST_BYTES });
      if (env.kind !== 'req') throw new DecodeError('unknownType', `unknown envelope kind ${JSON.stringify(env.kind)}`);
      const problem = checkRequest(env.body);
      if (problem) throw new DecodeError('badShape', problem);
      req = env.body as ApiRequest;
    } catch (err) {
      const reason = err instanceof DecodeError ? err.reason : 'malformed';
      this.counters.inc('api_requests_rejected_total', { reason });
      if (this.limiter.check(reason) >= 0) this.log.warn({ node: this.id, reason, err: (err as Error).message }, 'rejected api request');
      return this.reply(to, { ok: false, error: errorBody(new BadRequestError((err as Error).message)) });
    }
    this.counters.inc('api_requests_total', { op: req.op });
    if (req.op === 'write') return this.handleWrite(to, req.cmd);
    let res: ApiResponse;
    try {
      res = { ok: true, ...(await this.dispatch(req)) };
    } catch (err) {
      res = { ok: false, error: errorBody(err) };
    }
    this.reply(to, res);
  }

  /**
   * A client write: the reply is published in the first microtask after the entry is applied, so
   * it leaves in the same socket write as the Raft messages of that step (the node sends those
   * after applying) instead of one write later, behind them.
   */
  private handleWrite(to: string | undefined, cmd: Uint8Array): Promise<void> {
    const fail = (err: unknown) => this.reply(to, { ok: false, error: errorBody(err) });
    try {
      this.sm.decodeForProposal(cmd); // refuse garbage before it takes a log slot
    } catch (err) {
      return Promise.resolve(fail(new BadRequestError((err as Error).message)));
    }
    let proposal: Promise<{ index: number; result: MetaResult }>;
    try {
      this.requireLeader();
      proposal = this.startProposal(cmd);
    } catch (err) {
      return Promise.resolve(fail(err));
    }
    let done = false;
    const ms = this.opts.proposeTimeoutMs ?? 1500;
    const timer = setTimeout(() => {
      done = true;
      fail(new TimeoutError(`write not committed within ${ms} ms on ${this.id} (no majority reachable?)`));
    }, ms);
    return proposal.then(
      ({ index, result }) => {
        if (done) return;
        clearTimeout(timer);
        this.reply(to, { ok: true, index, result });
      },
      (err) => {
        if (done) return;
        clearTimeout(timer);
        fail(err);
      },
    );
  }

  private reply(to: string | undefined, res: ApiResponse): void {
    if (!to) return;
    const bytes = encodeEnvelope(this.cluster, 'res', res);
    // The broker's max_payload, less room for the subject: it would refuse a larger reply and the
    // client would only see a timeout; say why instead.
    const max = (this.nc.info?.max_payload ?? 1 << 20) - 4096;
    if (bytes.byteLength > max) {
      this.counters.inc('api_replies_too_large_total');
      const applied = res.ok && typeof res.index === 'number' ? ` (the write was applied at log index ${res.index}: read the key for its outcome)` : '';
      const message = `reply of ${bytes.byteLength} bytes is over the ${max}-byte limit of one message${applied}`;
      return this.reply(to, { ok: false, error: errorBody(new ReplyTooLargeError(message)) });
    }
    try {
      this.nc.publish(to, bytes);
    } catch {
      // Connection gone: the client times out and retries.
    }
  }

  private async dispatch(req: Exclude<ApiRequest, { op: 'write' }>): Promise<Record<string, unknown>> {
    switch (req.op) {
      case 'get': {
        await this.readBarrier(req.consistency);
        return { revision: this.sm.revision, kv: this.sm.get(req.key) ?? null, member: this.id };
      }
      case 'list': {
        await this.readBarrier(req.consistency);
        const page = this.sm.listPage(req.prefix, { after: req.after, limit: req.limit ?? MAX_LIST_LIMIT, maxBytes: LIST_PAGE_BYTES });
        return { revision: this.sm.revision, ...page, member: this.id };
      }
      case 'status':
        return { status: this.status() };
      case 'watch':
        return { ...this.watches.open(req), member: this.id };
      case 'watchRenew':
        return { known: this.watches.renew(req.watchId) };
      case 'watchCancel':
        return { known: this.watches.cancel(req.watchId) };
      case 'leaseKeepAlive':
        return { ttlMs: this.leases.keepAlive(req.id) };
      case 'member':
        return this.changeMember(req.change);
      case 'fault': {
        if (!this.opts.allowFaultInjection) throw new BadRequestError('fault injection is disabled on this member (start it with --allow-fault-injection)');
        this.transport.faults.dropTo = new Set(req.dropTo);
        this.transport.faults.dropFrom = new Set(req.dropFrom);
        this.log.warn({ node: this.id, dropTo: req.dropTo, dropFrom: req.dropFrom }, 'fault injection');
        return {};
      }
      case 'transfer': {
        this.requireLeader();
        this.node.transferLeadership(req.target);
        return {};
      }
    }
  }

  private requireLeader(): void {
    if (!this.node.isLeader) throw new NotLeaderError(this.node.state.leader);
  }

  private async readBarrier(consistency: 'linearizable' | 'stale'): Promise<void> {
    if (consistency === 'stale') return;
    this.requireLeader();
    await this.withTimeout(this.node.readIndex(), 'read');
  }

  private async changeMember(change: ConfChange): Promise<Record<string, unknown>> {
    this.requireLeader();
    const { index } = await this.withTimeout(this.node.changeMembership(change), 'membership change');
    return { index, conf: this.node.status().conf };
  }

  /** Proposes from inside the member (lease expiry). */
  private async proposeLocal(cmd: MetaCommand): Promise<MetaResult> {
    return (await this.proposeBytes(encodeMetaCommand(cmd))).result;
  }

  // ---- hooks for member-side services (monitor, ...) ------------------------------------------

  /** This member's monotonic clock (never compare its readings with another host's). */
  get clock(): Clock {
    return this.opts.clock ?? realClock;
  }

  isLeader(): boolean {
    return this.node.status().role === 'leader';
  }

  /** Proposes a command from inside the member; only the leader accepts (NotLeaderError otherwise). */
  propose(cmd: MetaCommand): Promise<{ index: number; result: MetaResult }> {
    this.requireLeader();
    return this.proposeBytes(encodeMetaCommand(cmd));
  }

  /** Called after every step in which the role or term changed. */
  onRoleChange(fn: (role: string, term: number) => void): () => void {
    let last = `${this.node.status().role}/${this.node.status().term}`;
    return this.node.onChange((n) => {
      const s = n.status();
      const now = `${s.role}/${s.term}`;
      if (now !== last) {
        last = now;
        fn(s.role, s.term);
      }
    });
  }

  /**
   * A leader that has not heard from a majority of voters recently refuses new writes with
   * NoQuorumError instead of appending entries it cannot commit: the caller learns for certain
   * that the write did not happen (CheckQuorum will make it step down shortly).
   */
  private requireQuorum(): void {
    const { voters } = this.node.state.conf;
    const windowMs = 2 * (this.opts.electionTimeoutMs?.max ?? DEFAULT_ELECTION_TIMEOUT_MS.max);
    const now = performance.now();
    let heard = voters.includes(this.id) ? 1 : 0;
    for (const v of voters) if (v !== this.id && now - (this.transport.lastHeard.get(v) ?? -Infinity) <= windowMs) heard++;
    if (heard < Math.floor(voters.length / 2) + 1) {
      this.counters.inc('proposals_refused_total', { reason: 'noQuorum' });
      throw new NoQuorumError(`leader ${this.id} heard from ${heard} of ${voters.length} voters in the last ${windowMs} ms: no majority, write refused (not applied)`);
    }
  }

  private proposeBytes(bytes: Uint8Array): Promise<{ index: number; result: MetaResult }> {
    try {
      return this.withTimeout(this.startProposal(bytes), 'write');
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** Throws NoQuorumError; otherwise counts and proposes. */
  private startProposal(bytes: Uint8Array): Promise<{ index: number; result: MetaResult }> {
    this.requireQuorum();
    this.counters.inc('proposals_total');
    return this.node.propose(bytes);
  }

  private withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    const ms = this.opts.proposeTimeoutMs ?? 1500;
    let timer: NodeJS.Timeout;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(`${what} not committed within ${ms} ms on ${this.id} (no majority reachable?)`)), ms);
    });
    return Promise.race([p, t]).finally(() => clearTimeout(timer));
  }
}
