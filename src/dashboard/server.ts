/**
 * The dashboard: one node:http server on loopback.
 *   GET  /                          the page (src/dashboard/page.ts)
 *   GET  /events                    SSE: a `snapshot` event every ~500 ms (member statuses, metadata
 *                                   center, recent changes, live machine states)
 *   GET  /api/dashboard/state       the same snapshot once; /api/dashboard/charts: every machine
 *                                   of machines/index.ts as SVG (drawn from its definition)
 *   GET  /api/chart/<machine>?format=svg|mermaid|json|dot&state=<value>
 *   GET  /api/member/<id>/logs?lines=N   tail of a member's log file (when the log dir is known)
 *   GET  /metrics                   Prometheus text
 *   GET  /api/v1/cluster/{address,nodes,node/<node>/<intp>}   Submarine's cluster REST API
 *   GET  /api/cluster/...           the same under Zeppelin's paths, in Zeppelin's response shape
 *   POST /api/control/...           demo controls; only when running inside the launcher
 *                                   (with a LocalCluster), otherwise 403 (read-only); among them
 *                                   restart-intp/<groupId> and place-intp[/<name>]: the demo
 *                                   servers' interpreters (src/demo/server.ts InterpreterControl)
 *
 * Member statuses come from polling each member over NATS (one loop per member, so a paused
 * member only delays its own row). "Last contact" is when the dashboard last got an answer from
 * that member, on the dashboard's own monotonic clock.
 */
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Outbox } from '../../actors/outbox.ts';
import { findMachine, machines } from '../../machines/index.ts';
import { chartModel, exportChart, toSvg, type ChartFormat } from '../chart.ts';
import { ClusterClient, type MemberStatus, type Watcher } from '../client.ts';
import type { InterpreterControl } from '../demo/server.ts';
import type { LocalCluster } from '../local-cluster.ts';
import { ClusterMetaType, META_PREFIX } from '../meta.ts';
import { parseFlags, natsTlsFromFlags } from '../config.ts';
import type { KeyValue, WatchEvent } from '../sm/metadata.ts';
import { dashboardPage } from './page.ts';

export interface DashboardLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface DashboardOptions {
  /** Connection to the cluster (the caller owns it; a client with an outbox shows the outbox live). */
  client: ClusterClient;
  cluster: string;
  natsUrls: string[];
  /** Present when running inside the launcher: enables the controls. */
  local?: LocalCluster;
  /** Directory holding `<member>.log` files. */
  logDir?: string;
  /** Members to show before any of them answered (the launcher knows them). */
  memberIds?: string[];
  host?: string;
  /** 0 for any free port. */
  port?: number;
  pollIntervalMs?: number;
  logger?: DashboardLogger;
}

export interface MemberView {
  id: string;
  reachable: boolean;
  /** ms since the dashboard last got a status from this member (null: never). */
  lastContactMs: number | null;
  error: string | null;
  /** The member's last answer (kept while it is unreachable, to show what it was). */
  status: MemberStatus | null;
  process: { pid: number | null; running: boolean; paused: boolean } | null;
  partitioned: boolean;
}

export interface FeedItem {
  revision: number;
  type: 'put' | 'delete';
  key: string;
  value: string;
  /** Wall-clock ms when the dashboard saw it. */
  seenAt: number;
}

export interface MetaRow {
  key: string;
  fields: Record<string, unknown>;
  /** Wall-clock age of LATEST_HEARTBEAT (written by the sender; for people only). */
  heartbeatAgeMs: number | null;
}

export interface DashboardSnapshot {
  at: number;
  mode: 'launcher' | 'standalone';
  cluster: string;
  leader: string | null;
  term: number;
  members: MemberView[];
  machines: Record<string, { value: unknown; context?: Record<string, unknown> } | undefined>;
  meta: { servers: MetaRow[]; intps: MetaRow[]; revision: number };
  feed: FeedItem[];
  watch: { connected: boolean; member: string | null; error: string | null };
}

const FEED_SIZE = 60;

class ControlError extends Error {
  constructor(message: string, readonly status = 400) {
    super(message);
  }
}

export class Dashboard {
  readonly server: Server;
  private readonly views = new Map<string, { status: MemberStatus | null; lastContactAt: number | null; error: string | null }>();
  private readonly paused = new Set<string>();
  private readonly partitioned = new Set<string>();
  /** Set once the dashboard partitioned or healed: from then on it keeps every member's faults as it decided. */
  private managingFaults = false;
  private readonly sse = new Set<ServerResponse>();
  private readonly metaServers = new Map<string, Record<string, unknown>>();
  private readonly metaIntps = new Map<string, Record<string, unknown>>();
  private metaRevision = 0;
  private readonly feed: FeedItem[] = [];
  private watcher: Watcher | null = null;
  private watchError: string | null = null;
  private charts: { name: string; description: string; machine: string; svg: string; compactSvg: string; live: string | null }[] = [];
  private ticker: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly pollers: Promise<void>[] = [];
  private readonly polling = new Set<string>();
  private readonly log: DashboardLogger;
  private readonly pollMs: number;
  /** Unicasts to the demo servers; opened on the first interpreter control. */
  private intpControl: Promise<InterpreterControl> | null = null;

  private constructor(private readonly o: DashboardOptions) {
    this.log = o.logger ?? { info() {}, warn() {} };
    this.pollMs = o.pollIntervalMs ?? 500;
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err) => {
        const status = err instanceof ControlError ? err.status : 500;
        if (!res.headersSent) sendJson(res, status, { ok: false, error: (err as Error).message });
        else res.end();
      });
    });
  }

  static async start(o: DashboardOptions): Promise<Dashboard> {
    const d = new Dashboard(o);
    d.charts = await Promise.all(machines.map(async (m) => ({
      name: m.name, description: m.description ?? '', machine: m.machine.root.id,
      svg: await toSvg(chartModel(m.machine)),
      compactSvg: await toSvg(chartModel(m.machine), { compact: true, direction: 'TB' }),
      live: m.name === 'raft' ? 'per member' : m.name === 'outbox' && d.outbox ? 'dashboard client' : null,
    })));
    for (const id of o.memberIds ?? o.local?.members.map((m) => m.id) ?? []) d.track(id);
    void d.discoverMembers();
    void d.startWatch();
    await new Promise<void>((resolve, reject) => {
      d.server.once('error', reject);
      d.server.listen(o.port ?? 0, o.host ?? '127.0.0.1', () => {
        d.server.off('error', reject);
        resolve();
      });
    });
    d.ticker = setInterval(() => d.broadcast(), d.pollMs);
    return d;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    const host = this.o.host ?? '127.0.0.1';
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.port}/`;
  }

  private get outbox(): Outbox | null {
    try {
      return this.o.client.outbox;
    } catch {
      return null;
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    for (const res of this.sse) res.end();
    this.sse.clear();
    await this.watcher?.close().catch(() => {});
    await (await this.intpControl?.catch(() => null))?.close().catch(() => {});
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await Promise.all(this.pollers);
  }

  // ---- state -----------------------------------------------------------------------------------

  /** Starts polling a member (once). */
  private track(id: string): void {
    if (this.polling.has(id) || this.stopped) return;
    this.polling.add(id);
    this.views.set(id, { status: null, lastContactAt: null, error: null });
    this.pollers.push(this.pollLoop(id));
  }

  private async pollLoop(id: string): Promise<void> {
    while (!this.stopped) {
      const started = performance.now();
      const v = this.views.get(id)!;
      try {
        const [s] = await this.o.client.status(id);
        v.status = s!;
        v.lastContactAt = performance.now();
        v.error = null;
        for (const m of [...s!.conf.voters, ...s!.conf.learners]) this.track(m);
        if (this.managingFaults) await this.reconcileFaults(id, s!);
      } catch (err) {
        v.error = (err as Error).message;
      }
      const wait = Math.max(0, this.pollMs - (performance.now() - started));
      if (!this.stopped) await new Promise((r) => setTimeout(r, wait)); // the polling period, not a wait for a condition
    }
  }

  /** Standalone: learn the member list from whichever member answers. */
  private async discoverMembers(): Promise<void> {
    while (!this.stopped && this.polling.size === 0) {
      try {
        for (const s of await this.o.client.status()) for (const m of [s.id, ...s.conf.voters, ...s.conf.learners]) this.track(m);
      } catch {
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  private async startWatch(): Promise<void> {
    while (!this.stopped && !this.watcher) {
      try {
        const listed = await this.o.client.list(META_PREFIX, { consistency: 'stale' });
        this.resetMeta(listed.kvs, listed.revision);
        const w = await this.o.client.watch('', {
          fromRevision: listed.revision,
          onEvent: (ev) => this.onChange(ev),
          onResync: (kvs, revision) => this.resetMeta(kvs, revision),
          onError: (err) => void (this.watchError = err.message),
        });
        if (this.stopped) await w.close();
        else this.watcher = w;
        this.watchError = null;
      } catch (err) {
        this.watchError = (err as Error).message;
        if (!this.stopped) await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  private resetMeta(kvs: KeyValue[], revision: number): void {
    this.metaServers.clear();
    this.metaIntps.clear();
    for (const kv of kvs) this.applyMeta(kv.key, kv.value);
    this.metaRevision = revision;
  }

  private applyMeta(key: string, value: unknown): void {
    for (const [type, map] of [[ClusterMetaType.SERVER_META, this.metaServers], [ClusterMetaType.INTP_PROCESS_META, this.metaIntps]] as const) {
      const prefix = `${META_PREFIX}${type}/`;
      if (!key.startsWith(prefix)) continue;
      if (value === undefined) map.delete(key.slice(prefix.length));
      else map.set(key.slice(prefix.length), (value && typeof value === 'object' ? value : { value }) as Record<string, unknown>);
    }
  }

  private onChange(ev: WatchEvent): void {
    this.applyMeta(ev.kv.key, ev.type === 'delete' ? undefined : ev.kv.value);
    this.metaRevision = Math.max(this.metaRevision, ev.revision);
    const value = ev.type === 'delete' ? '' : (typeof ev.kv.value === 'string' ? ev.kv.value : JSON.stringify(ev.kv.value)) ?? '';
    this.feed.push({ revision: ev.revision, type: ev.type, key: ev.kv.key, value: value.length > 160 ? `${value.slice(0, 160)}…` : value, seenAt: Date.now() });
    if (this.feed.length > FEED_SIZE) this.feed.splice(0, this.feed.length - FEED_SIZE);
  }

  snapshot(): DashboardSnapshot {
    const now = performance.now();
    const members: MemberView[] = [...this.views].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true })).map(([id, v]) => {
      const proc = this.o.local?.members.find((m) => m.id === id);
      const reachable = v.error === null && v.status !== null;
      return {
        id, reachable, error: v.error, status: v.status, partitioned: this.partitioned.has(id),
        lastContactMs: v.lastContactAt === null ? null : Math.round(now - v.lastContactAt),
        process: proc ? { pid: proc.pid ?? null, running: proc.running, paused: proc.running && this.paused.has(id) } : null,
      };
    });
    const leader = this.currentLeader(members);
    const outbox = this.outbox;
    const snap = outbox?.actor.getSnapshot();
    const wall = Date.now();
    const rows = (map: Map<string, Record<string, unknown>>): MetaRow[] => [...map].sort(([a], [b]) => a.localeCompare(b)).map(([key, fields]) => ({
      key, fields, heartbeatAgeMs: typeof fields.LATEST_HEARTBEAT === 'number' ? Math.max(0, wall - fields.LATEST_HEARTBEAT) : null,
    }));
    return {
      at: wall, mode: this.o.local ? 'launcher' : 'standalone', cluster: this.o.cluster,
      leader: leader?.status?.id ?? null, term: Math.max(0, ...members.filter((m) => m.reachable).map((m) => m.status!.term)),
      members,
      machines: {
        outbox: snap ? { value: snap.value, context: { pending: snap.context.pending, attempt: snap.context.attempt, delayMs: snap.context.delayMs, lastError: snap.context.lastError } } : undefined,
      },
      meta: { servers: rows(this.metaServers), intps: rows(this.metaIntps), revision: this.metaRevision },
      feed: this.feed.slice(-30).reverse(),
      watch: { connected: this.watcher !== null, member: this.watcher?.member ?? null, error: this.watchError },
    };
  }

  /** The reachable leader with the highest term (a deposed leader may not know yet). */
  private currentLeader(members: MemberView[]): MemberView | undefined {
    return members.filter((m) => m.reachable && m.status!.role === 'leader').sort((a, b) => b.status!.term - a.status!.term)[0];
  }

  private broadcast(): void {
    if (this.sse.size === 0) return;
    const frame = `event: snapshot\ndata: ${JSON.stringify(this.snapshot())}\n\n`;
    for (const res of this.sse) res.write(frame);
  }

  // ---- controls --------------------------------------------------------------------------------

  private desiredFaults(id: string): { dropTo: string[]; dropFrom: string[] } {
    const all = [...this.views.keys()];
    const cut = this.partitioned.has(id) ? all.filter((m) => m !== id) : [...this.partitioned].filter((m) => m !== id);
    return { dropTo: cut.sort(), dropFrom: [...cut] };
  }

  private async reconcileFaults(id: string, s: MemberStatus): Promise<void> {
    const want = this.desiredFaults(id);
    const same = (a: string[], b: string[]) => a.length === b.length && [...a].sort().every((x, i) => x === [...b].sort()[i]);
    if (same(want.dropTo, s.faults.dropTo) && same(want.dropFrom, s.faults.dropFrom)) return;
    await this.o.client.injectFault(id, want).catch((err) => this.log.warn({ member: id, err: (err as Error).message }, 'dashboard: fault injection failed'));
  }

  private async applyFaultsNow(): Promise<void> {
    this.managingFaults = true;
    await Promise.all([...this.views.keys()].map((id) => this.o.client.injectFault(id, this.desiredFaults(id)).catch(() => {
      // unreachable now (dead or paused): the poll loop applies it when the member answers again
    })));
  }

  private member(id: string) {
    const m = this.o.local?.members.find((x) => x.id === id);
    if (!m) throw new ControlError(`unknown member '${id}'`, 404);
    return m;
  }

  private async control(action: string, arg: string | undefined): Promise<Record<string, unknown>> {
    const local = this.o.local;
    if (!local) throw new ControlError('read-only dashboard: controls work only inside the launcher (npm start)', 403);
    switch (action) {
      case 'kill': {
        const m = this.member(arg!);
        await m.kill9();
        this.paused.delete(m.id);
        this.log.info({ member: m.id }, 'dashboard: kill -9');
        return { killed: m.id };
      }
      case 'restart': {
        const m = this.member(arg!);
        if (m.running) {
          if (this.paused.has(m.id)) m.resume();
          await m.stop();
        }
        this.paused.delete(m.id);
        m.start();
        this.log.info({ member: m.id }, 'dashboard: restart');
        return { restarted: m.id, pid: m.pid };
      }
      case 'stop': {
        const m = this.member(arg!);
        if (this.paused.has(m.id)) m.resume();
        this.paused.delete(m.id);
        await m.stop();
        return { stopped: m.id };
      }
      case 'start': {
        const m = this.member(arg!);
        if (!m.running) m.start();
        return { started: m.id, pid: m.pid };
      }
      case 'pause': {
        const m = this.member(arg!);
        if (!m.running) throw new ControlError(`member ${m.id} is not running`, 409);
        m.pause();
        this.paused.add(m.id);
        return { paused: m.id };
      }
      case 'resume': {
        const m = this.member(arg!);
        m.resume();
        this.paused.delete(m.id);
        return { resumed: m.id };
      }
      case 'partition': {
        const m = this.member(arg!);
        this.partitioned.add(m.id);
        await this.applyFaultsNow();
        return { partitioned: [...this.partitioned] };
      }
      case 'heal': {
        this.partitioned.clear();
        await this.applyFaultsNow();
        return { partitioned: [] };
      }
      case 'kill-leader': {
        const leader = this.currentLeader(this.snapshot().members);
        if (!leader) throw new ControlError('no leader known right now', 409);
        const m = this.member(leader.id);
        await m.kill9();
        this.paused.delete(m.id);
        this.log.info({ member: m.id, term: leader.status!.term }, 'dashboard: killed the leader');
        return { killed: m.id, term: leader.status!.term };
      }
      case 'transfer': {
        this.member(arg!);
        await this.o.client.transferLeader(arg!);
        return { transferTo: arg };
      }
      case 'write': {
        const box = this.outbox;
        if (!box) throw new ControlError('this dashboard has no outbox', 409);
        const { seq } = await this.o.client.enqueue({ op: 'incr', key: 'demo/clicks', by: 1 });
        return { enqueued: seq };
      }
      case 'restart-intp':
        return this.interpreters((c) => c.restart(arg ?? ''));
      case 'place-intp':
        return this.interpreters((c) => c.place(arg));
      default:
        throw new ControlError(`unknown control '${action}'`, 404);
    }
  }

  /** Runs an interpreter control (restart on its server, start on the idlest) with its errors as ControlErrors. */
  private async interpreters(fn: (c: InterpreterControl) => Promise<object>): Promise<Record<string, unknown>> {
    if (!this.intpControl) {
      const opening = import('../demo/server.ts').then((m) => m.InterpreterControl.start({ client: this.o.client }));
      this.intpControl = opening;
      opening.catch(() => {
        if (this.intpControl === opening) this.intpControl = null; // try again next time
      });
    }
    try {
      const r = { ...(await fn(await this.intpControl)) };
      this.log.info(r, 'dashboard: interpreter control');
      return r;
    } catch (err) {
      throw new ControlError((err as Error).message, (err as { status?: number }).status ?? 500);
    }
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  private allowedHost(req: IncomingMessage): boolean {
    // Bound to loopback: refuse other Host names (DNS rebinding would otherwise reach the controls).
    const host = this.o.host ?? '127.0.0.1';
    if (!['127.0.0.1', 'localhost', '::1'].includes(host)) return true;
    const h = (req.headers.host ?? '').toLowerCase();
    return [`127.0.0.1:${this.port}`, `localhost:${this.port}`, `[::1]:${this.port}`].includes(h);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.allowedHost(req)) return sendJson(res, 421, { ok: false, error: 'unexpected Host header' });
    const url = new URL(req.url ?? '/', 'http://dashboard');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    if (req.method === 'POST') {
      if (parts[0] !== 'api' || parts[1] !== 'control') return sendJson(res, 404, { ok: false, error: 'not found' });
      // A custom header cannot be sent cross-site without a CORS preflight, which we never grant.
      if (req.headers['x-submarine-dashboard'] !== '1') return sendJson(res, 403, { ok: false, error: 'missing X-Submarine-Dashboard header' });
      req.resume();
      const [, , action, ...args] = parts;
      const result = await this.control(action === 'member' ? args[1] ?? '' : action ?? '', action === 'member' ? args[0] : args[0]);
      return sendJson(res, 200, { ok: true, ...result });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendJson(res, 405, { ok: false, error: 'method not allowed' });

    if (path === '/') return send(res, 200, 'text/html; charset=utf-8', dashboardPage({ cluster: this.o.cluster }));
    if (path === '/events') return this.openSse(req, res);
    if (path === '/metrics') return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', renderMetrics(this.snapshot()));
    if (path === '/api/dashboard/state') return sendJson(res, 200, this.snapshot());
    if (path === '/api/dashboard/charts') return sendJson(res, 200, this.charts);
    if (parts[0] === 'api' && parts[1] === 'chart' && parts.length === 3) {
      const entry = findMachine(parts[2]!);
      if (!entry) return sendJson(res, 404, { ok: false, error: `unknown machine '${parts[2]}' (have ${machines.map((m) => m.name).join(', ')})` });
      const format = (url.searchParams.get('format') ?? 'svg') as ChartFormat;
      if (!['svg', 'mermaid', 'json', 'dot'].includes(format)) return sendJson(res, 400, { ok: false, error: 'format must be svg, mermaid, json or dot' });
      const body = await exportChart(entry.machine, format, { active: url.searchParams.get('state') ?? undefined });
      return send(res, 200, format === 'svg' ? 'image/svg+xml' : format === 'json' ? 'application/json' : 'text/plain; charset=utf-8', body);
    }
    if (parts[0] === 'api' && parts[1] === 'member' && parts[3] === 'logs' && parts.length === 4) return this.sendLogs(res, parts[2]!, Number(url.searchParams.get('lines') ?? 200));

    // The original cluster page's REST API: Submarine's paths and shape, and Zeppelin's.
    const submarine = parts[0] === 'api' && parts[1] === 'v1' && parts[2] === 'cluster';
    const zeppelin = parts[0] === 'api' && parts[1] === 'cluster';
    if (submarine || zeppelin) {
      const rest = parts.slice(submarine ? 3 : 2);
      const reply = (result: unknown, message = '') => sendJson(res, 200, submarine
        ? { status: 'OK', code: 200, success: true, message: null, result, attributes: {} }
        : { status: 'OK', message, body: result });
      try {
        if (rest.length === 1 && rest[0] === 'address') return reply(submarine ? this.o.natsUrls : { clusterAddr: this.o.natsUrls.join(',') }, 'Cluster Address');
        if (rest.length === 1 && rest[0] === 'nodes') return reply(await this.clusterNodes());
        if (rest.length === 3 && rest[0] === 'node') return reply(await this.clusterNode(rest[1]!, rest[2]!));
      } catch (err) {
        return sendJson(res, 503, submarine
          ? { status: 'SERVICE_UNAVAILABLE', code: 503, success: false, message: (err as Error).message, result: null, attributes: {} }
          : { status: 'SERVICE_UNAVAILABLE', message: (err as Error).message, body: null });
      }
    }
    return sendJson(res, 404, { ok: false, error: `not found: ${path}` });
  }

  private openSse(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(`retry: 1000\n\nevent: snapshot\ndata: ${JSON.stringify(this.snapshot())}\n\n`);
    this.sse.add(res);
    req.on('close', () => this.sse.delete(res));
  }

  private async sendLogs(res: ServerResponse, id: string, lines: number): Promise<void> {
    if (!this.views.has(id) && !this.o.local?.members.some((m) => m.id === id)) return sendJson(res, 404, { ok: false, error: `unknown member '${id}'` });
    if (!this.o.logDir) return sendJson(res, 404, { ok: false, error: 'this dashboard does not know where the member logs are (--log-dir)' });
    const n = Number.isFinite(lines) ? Math.min(Math.max(1, Math.floor(lines)), 2000) : 200;
    const text = await tailFile(join(this.o.logDir, `${id}.log`), n);
    return send(res, 200, 'text/plain; charset=utf-8', text);
  }

  private async metaOf(type: ClusterMetaType): Promise<Map<string, Record<string, unknown>>> {
    const prefix = `${META_PREFIX}${type}/`;
    const { kvs } = await this.o.client.list(prefix, { consistency: 'stale' });
    return new Map(kvs.map((kv) => [kv.key.slice(prefix.length), { ...(kv.value as Record<string, unknown>) }]));
  }

  /** GET /cluster/nodes of the original: servers with their interpreter processes, CPU and memory as used / capacity. */
  private async clusterNodes(): Promise<unknown[]> {
    const [servers, intps] = await Promise.all([this.metaOf(ClusterMetaType.SERVER_META), this.metaOf(ClusterMetaType.INTP_PROCESS_META)]);
    const nodes: unknown[] = [];
    for (const [key, p] of servers) {
      const nodeName = typeof p.NODE_NAME === 'string' ? p.NODE_NAME : key;
      const list = [...intps.values()].filter((i) => i.NODE_NAME === nodeName).map((i) => String(i.INTP_PROCESS_NAME ?? ''));
      const props: Record<string, unknown> = {};
      if (typeof p.CPU_USED === 'number' && typeof p.CPU_CAPACITY === 'number') props['CPU_USED / CPU_CAPACITY'] = formatCpu(p.CPU_USED, p.CPU_CAPACITY);
      if (typeof p.MEMORY_USED === 'number' && typeof p.MEMORY_CAPACITY === 'number') props['MEMORY_USED / MEMORY_CAPACITY'] = formatMemory(p.MEMORY_USED, p.MEMORY_CAPACITY);
      if (p.SERVER_START_TIME !== undefined) props.SERVER_START_TIME = isoTime(p.SERVER_START_TIME);
      if (p.STATUS !== undefined) props.STATUS = p.STATUS;
      if (p.LATEST_HEARTBEAT !== undefined) props.LATEST_HEARTBEAT = isoTime(p.LATEST_HEARTBEAT);
      props.INTP_PROCESS_COUNT = list.length;
      props.INTP_PROCESS_LIST = list;
      nodes.push({ NODE_NAME: key, properties: props });
    }
    return nodes;
  }

  /**
   * GET /cluster/node/{node}/{intp}: the interpreter processes of a server. The original ignored
   * {intp}; here a name that matches one of the node's processes narrows the answer to it.
   */
  private async clusterNode(node: string, intp: string): Promise<unknown[]> {
    const intps = [...(await this.metaOf(ClusterMetaType.INTP_PROCESS_META)).values()].filter((i) => i.NODE_NAME === node);
    const narrowed = intps.filter((i) => i.INTP_PROCESS_NAME === intp);
    return (narrowed.length ? narrowed : intps).map((i) => ({
      NODE_NAME: node,
      properties: {
        ...i,
        ...(i.INTP_START_TIME !== undefined ? { INTP_START_TIME: isoTime(i.INTP_START_TIME) } : {}),
        ...(i.LATEST_HEARTBEAT !== undefined ? { LATEST_HEARTBEAT: isoTime(i.LATEST_HEARTBEAT) } : {}),
      },
    }));
  }
}

// ---- formatting --------------------------------------------------------------------------------

/** As the original: CPU in hundredths of a core. */
export function formatCpu(used: number, capacity: number): string {
  const u = used / 100;
  const c = capacity / 100;
  return `${u.toFixed(2)} / ${c.toFixed(2)} = ${(c > 0 ? (u / c) * 100 : 0).toFixed(2)}%`;
}

/** As the original: bytes, shown in GB. */
export function formatMemory(used: number, capacity: number): string {
  const gb = 1024 ** 3;
  return `${(used / gb).toFixed(2)}GB / ${(capacity / gb).toFixed(2)}GB = ${(capacity > 0 ? (used / capacity) * 100 : 0).toFixed(2)}%`;
}

function isoTime(v: unknown): unknown {
  return typeof v === 'number' && Number.isFinite(v) ? new Date(v).toISOString() : v;
}

const label = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/**
 * Prometheus text: per member, Raft gauges from its status, and its counters (already named
 * `name{label="v"}`), each with a `member` label added. Unreachable members only get `up 0`.
 */
export function renderMetrics(s: DashboardSnapshot): string {
  const families = new Map<string, { type: string; help: string; lines: string[] }>();
  const add = (name: string, type: string, help: string, labels: string, value: number) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { type, help, lines: [] }));
    f.lines.push(`${name}{${labels}} ${Number.isFinite(value) ? value : 0}`);
  };
  for (const m of s.members) {
    const who = `member="${label(m.id)}"`;
    add('submarine_member_up', 'gauge', 'Whether the member answered the dashboard\'s last status request.', who, m.reachable ? 1 : 0);
    if (!m.reachable || !m.status) continue;
    const st = m.status;
    add('submarine_raft_term', 'gauge', 'Current Raft term.', who, st.term);
    add('submarine_raft_is_leader', 'gauge', '1 on the leader.', who, st.role === 'leader' ? 1 : 0);
    add('submarine_raft_commit_index', 'gauge', 'Highest log index known committed.', who, st.commitIndex);
    add('submarine_raft_applied_index', 'gauge', 'Highest log index applied to the state machine.', who, st.appliedIndex);
    add('submarine_raft_apply_lag', 'gauge', 'Committed but not yet applied entries.', who, st.commitIndex - st.appliedIndex);
    add('submarine_raft_last_index', 'gauge', 'Last log index.', who, st.lastIndex);
    add('submarine_raft_snapshot_index', 'gauge', 'Index of the latest snapshot.', who, st.snapshotIndex);
    add('submarine_meta_revision', 'gauge', 'Metadata center revision.', who, st.revision);
    add('submarine_member_rss_bytes', 'gauge', 'Resident set size of the member process.', who, st.rssBytes);
    for (const [follower, p] of Object.entries(st.progress ?? {})) {
      add('submarine_raft_follower_match_index', 'gauge', 'Leader\'s view of a follower\'s match index.', `${who},follower="${label(follower)}"`, p.match);
      add('submarine_raft_follower_lag', 'gauge', 'Entries a follower is behind the leader\'s last index.', `${who},follower="${label(follower)}"`, p.lag);
    }
    for (const [key, value] of Object.entries(st.counters ?? {})) {
      const brace = key.indexOf('{');
      const name = `submarine_${(brace < 0 ? key : key.slice(0, brace)).replace(/[^a-zA-Z0-9_:]/g, '_')}`;
      const rest = brace < 0 ? '' : key.slice(brace + 1, -1);
      add(name, name.endsWith('_total') ? 'counter' : 'gauge', 'Member counter.', rest ? `${who},${rest}` : who, value);
    }
  }
  const out: string[] = [];
  for (const [name, f] of families) out.push(`# HELP ${name} ${f.help}`, `# TYPE ${name} ${f.type}`, ...f.lines);
  return `${out.join('\n')}\n`;
}

async function tailFile(file: string, lines: number): Promise<string> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    return `(no log at ${file}: ${(err as Error).message})\n`;
  }
  try {
    const { size } = await fh.stat();
    const start = Math.max(0, size - 512 * 1024);
    const buf = Buffer.alloc(size - start);
    await fh.read(buf, 0, buf.length, start);
    const all = buf.toString('utf8').split('\n');
    if (start > 0) all.shift(); // a partial first line
    if (all.at(-1) === '') all.pop();
    return `${all.slice(-lines).join('\n')}\n`;
  } finally {
    await fh.close();
  }
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

// ---- `submarine-cluster dashboard` (read-only, against a running cluster) ----------------------

export async function runDashboardCommand(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  const nats = String(flags.nats ?? process.env.SUBMARINE_NATS ?? 'nats://127.0.0.1:4222').split(',');
  const cluster = (flags.cluster as string | undefined) ?? process.env.SUBMARINE_CLUSTER_NAME ?? 'submarine';
  const credFile = (flags['nats-credentials'] as string | undefined) ?? process.env.SUBMARINE_NATS_CREDENTIALS;
  const creds = credFile ? (JSON.parse(readFileSync(credFile, 'utf8')) as Record<string, { user: string; pass: string }>).client : undefined;
  const logger = pino({ base: undefined });
  const tls = natsTlsFromFlags(flags, process.env);
  const client = await ClusterClient.connect({
    nats, cluster, requestTimeoutMs: 1000, insecure: flags.insecure === true, ...(tls ? { tls } : {}),
    user: (flags['nats-user'] as string | undefined) ?? creds?.user, pass: (flags['nats-pass'] as string | undefined) ?? creds?.pass,
  });
  const dashboard = await Dashboard.start({
    client, cluster, natsUrls: nats, host: (flags.host as string | undefined) ?? '127.0.0.1', port: flags.port !== undefined ? Number(flags.port) : 8080,
    logDir: flags['log-dir'] as string | undefined, logger,
  });
  console.log(`dashboard (read-only): ${dashboard.url}\nmetrics: ${dashboard.url}metrics`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await dashboard.stop();
  await client.close();
  return 0;
}
