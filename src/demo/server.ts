/**
 * A demo Workbench-style server, one per cluster member under `npm start` (issue 5):
 *
 *   submarine-cluster demo-server --name 127.0.0.1:PORT [--port PORT] --nats URL[,URL] --nats-credentials FILE
 *     [--cluster NAME] [--interpreters python,r] [--index N] [--heartbeat-interval-ms N]
 *
 * - serves the Workbench HTTP API (src/workbench/server.ts) on PORT, over its own synced notebook;
 * - registers and heartbeats as a server, `meta/server/<name>` (HeartbeatSender);
 * - listens with ClusterEvents (memberId = its name) on the `interpreter` topic for fast unicasts
 *   `{ op: 'start' | 'restart' | 'stop', groupId }` and starts / restarts / stops its interpreter
 *   child processes (src/demo/interpreter.ts). The acknowledgement is sent once the child has
 *   registered (printed READY) or, for stop, exited; a failure makes the sender's unicast reject
 *   with the reason (EventDeliveryError 'listenerFailed'). Operations on one group run in order.
 * - starts `--interpreters` at startup, as groups `<name>-<index>` (python-1, r-1, ...).
 *
 * Prints `READY <workbench url>` once up. SIGTERM / SIGINT stop it cleanly (children stopped, entry
 * deregistered); with SUBMARINE_EXIT_WITH_PARENT=1 it also stops when its stdin closes (the
 * launcher died). Its interpreters watch their own stdin the same way, so nothing outlives it.
 *
 * Also here: DemoServerProcess / startDemoServers (the launcher's side: spawn, READY, stop by PID)
 * and InterpreterControl (the dashboard's side: restart through a unicast, place on the idlest server).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { packageRoot } from '../paths.ts';
import { pino } from 'pino';
import { Discovery } from '../../actors/discovery.ts';
import { CLUSTER_INTP_EVENT_TOPIC, ClusterEvents, EventDeliveryError, MemoryCursorStore, type EventMeta } from '../../actors/events.ts';
import { HeartbeatSender } from '../../actors/heartbeat.ts';
import { placeInterpreter, PlacementError } from '../../actors/placement.ts';
import { silentLogger, type Logger } from '../../actors/ports.ts';
import { ClusterClient } from '../client.ts';
import { natsTlsFromFlags, parseFlags } from '../config.ts';
import type { NatsTls } from '../nats/transport-policy.ts';
import type { LocalCluster } from '../local-cluster.ts';
import { startWorkbench, type Workbench } from '../workbench/server.ts';

const ROOT = packageRoot(import.meta.url);
const CLI = join(ROOT, 'src/cli.ts');
const INTERPRETER = join(ROOT, 'src/demo/interpreter.ts');

export type InterpreterOp = 'start' | 'restart' | 'stop';
export interface InterpreterCommand {
  op: InterpreterOp;
  groupId: string;
}
/** How long a start / restart may take (spawning a process, connecting, registering). */
export const INTERPRETER_OP_TIMEOUT_MS = 30_000;
const GROUP_ID = /^[A-Za-z0-9_.-]{1,64}$/;

export function checkInterpreterCommand(v: unknown): InterpreterCommand {
  const c = v as Partial<InterpreterCommand> | null;
  if (!c || typeof c !== 'object' || !['start', 'restart', 'stop'].includes(c.op as string)) throw new Error(`bad interpreter command ${JSON.stringify(v)}: op must be start, restart or stop`);
  if (typeof c.groupId !== 'string' || !GROUP_ID.test(c.groupId)) throw new Error(`bad interpreter command ${JSON.stringify(v)}: groupId must be 1..64 of A-Z a-z 0-9 _ . -`);
  return { op: c.op!, groupId: c.groupId };
}

function clientCredentials(file: string): { user: string; pass: string } {
  const c = (JSON.parse(readFileSync(file, 'utf8')) as Record<string, { user?: string; pass?: string }>).client;
  if (!c?.user || !c.pass) throw new Error(`${file} has no client credentials`);
  return { user: c.user, pass: c.pass };
}

function splitName(name: string): { host: string; port: number } {
  const i = name.lastIndexOf(':');
  const port = Number(name.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`--name must be host:port, got ${JSON.stringify(name)}`);
  return { host: name.slice(0, i), port };
}

/** Resolves on the child's exit; SIGTERM, then SIGKILL after graceMs. */
async function stopChild(child: ChildProcess, exited: Promise<unknown>, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

// ---- the server process --------------------------------------------------------------------------

interface Child {
  groupId: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  port: number;
  stopping?: boolean;
}

interface DemoServerConfig {
  name: string;
  port: number;
  nats: string[];
  credentialsFile: string;
  cluster?: string;
  interpreters: string[];
  index: number;
  heartbeatIntervalMs?: number;
  tls?: NatsTls;
  insecure: boolean;
}

/** The interpreter child processes of one server, one operation at a time per group. */
class Interpreters {
  readonly children = new Map<string, Child>();
  private readonly lanes = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly cfg: DemoServerConfig, private readonly log: Logger) {}

  run(cmd: InterpreterCommand): Promise<void> {
    const prev = this.lanes.get(cmd.groupId) ?? Promise.resolve();
    const next = prev.catch(() => {}).then(() => this.apply(cmd));
    this.lanes.set(cmd.groupId, next);
    void next.catch(() => {}).finally(() => {
      if (this.lanes.get(cmd.groupId) === next) this.lanes.delete(cmd.groupId);
    });
    return next;
  }

  private async apply({ op, groupId }: InterpreterCommand): Promise<void> {
    if (this.closed) throw new Error(`server ${this.cfg.name} is stopping`);
    const running = this.children.get(groupId);
    if (op === 'start' && running) return; // already there: nothing to do
    if (running) await this.stopOne(running);
    if (op === 'stop') {
      if (!running) throw new Error(`interpreter ${groupId} is not running on ${this.cfg.name}`);
      return;
    }
    await this.spawnOne(groupId);
  }

  private async stopOne(c: Child): Promise<void> {
    c.stopping = true;
    await stopChild(c.child, c.exited, 5000);
    if (this.children.get(c.groupId) === c) this.children.delete(c.groupId);
    this.log.info({ groupId: c.groupId, pid: c.child.pid }, 'interpreter stopped');
  }

  private spawnOne(groupId: string): Promise<void> {
    const args = [
      '--import=tsx', INTERPRETER, '--group', groupId, '--node-name', this.cfg.name, '--nats', this.cfg.nats.join(','),
      '--nats-credentials', this.cfg.credentialsFile, ...(this.cfg.cluster ? ['--cluster', this.cfg.cluster] : []),
      ...(this.cfg.heartbeatIntervalMs ? ['--heartbeat-interval-ms', String(this.cfg.heartbeatIntervalMs)] : []),
      ...(this.cfg.tls?.caFile ? ['--nats-ca', this.cfg.tls.caFile] : []),
      ...(this.cfg.tls?.certFile && this.cfg.tls.keyFile ? ['--nats-cert', this.cfg.tls.certFile, '--nats-key', this.cfg.tls.keyFile] : []),
      ...(this.cfg.insecure ? ['--insecure'] : []),
    ];
    // stdin stays a pipe: the interpreter stops itself when it closes (this server died).
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin!.on('error', () => {});
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    const tail: string[] = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      process.stderr.write(`${line}\n`);
      tail.push(line);
      if (tail.length > 5) tail.shift();
    });
    return new Promise<void>((resolveStart, rejectStart) => {
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        child.kill('SIGKILL');
        rejectStart(new Error(`interpreter ${groupId} did not start on ${this.cfg.name}: ${why}${tail.length ? ` (${tail.join(' | ')})` : ''}`));
      };
      const timer = setTimeout(() => fail(`not registered within ${INTERPRETER_OP_TIMEOUT_MS} ms`), INTERPRETER_OP_TIMEOUT_MS);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const m = /^READY (\d+)/.exec(line);
        if (!m || settled) return;
        settled = true;
        clearTimeout(timer);
        const c: Child = { groupId, child, exited, port: Number(m[1]) };
        this.children.set(groupId, c);
        void exited.then((code) => {
          if (c.stopping || this.children.get(groupId) !== c) return;
          this.children.delete(groupId);
          this.log.warn({ groupId, pid: child.pid, code }, 'interpreter exited on its own');
        });
        this.log.info({ groupId, pid: child.pid, port: c.port }, 'interpreter registered');
        resolveStart();
      });
      void exited.then((code) => fail(`exited with code ${code} before registering`));
      child.once('error', (err) => fail(err.message));
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.lanes.values()]);
    await Promise.all([...this.children.values()].map((c) => this.stopOne(c)));
  }
}

function demoServerConfig(argv: string[]): DemoServerConfig {
  const flags = parseFlags(argv);
  const str = (k: string): string | undefined => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  const name = str('name');
  if (!name) throw new Error('--name host:port is required');
  const nats = str('nats') ?? process.env.SUBMARINE_NATS;
  if (!nats) throw new Error('--nats URL[,URL] is required');
  const credentialsFile = str('nats-credentials') ?? process.env.SUBMARINE_NATS_CREDENTIALS;
  if (!credentialsFile) throw new Error('--nats-credentials FILE is required');
  const port = str('port') !== undefined ? Number(str('port')) : splitName(name).port;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be a port number, got ${String(flags.port)}`);
  const index = str('index') !== undefined ? Number(str('index')) : 1;
  const hb = str('heartbeat-interval-ms') !== undefined ? Number(str('heartbeat-interval-ms')) : undefined;
  return {
    name, port, nats: nats.split(','), credentialsFile, cluster: str('cluster') ?? process.env.SUBMARINE_CLUSTER_NAME, index, heartbeatIntervalMs: hb,
    interpreters: (str('interpreters') ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    ...(natsTlsFromFlags(flags, process.env) ? { tls: natsTlsFromFlags(flags, process.env)! } : {}),
    insecure: flags.insecure === true,
  };
}

/** `submarine-cluster demo-server ...`: runs until SIGTERM / SIGINT (or its parent exits). */
export async function runDemoServer(argv: string[]): Promise<number> {
  const cfg = demoServerConfig(argv);
  const { host, port: hbPort } = splitName(cfg.name);
  // A launcher that died leaves broken pipes: a failed log line must not crash the clean stop.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  const log = pino({ level: process.env.SUBMARINE_LOG_LEVEL ?? 'info', base: { server: cfg.name } }, process.stderr);
  const creds = clientCredentials(cfg.credentialsFile);
  const connect = (quorumWaitMs = 5000) => ClusterClient.connect({ nats: cfg.nats, cluster: cfg.cluster, ...creds, requestTimeoutMs: 1000, quorumWaitMs, insecure: cfg.insecure, ...(cfg.tls ? { tls: cfg.tls } : {}) });

  let stopRequested: string | null = null;
  let started = false;
  let stopping = false;
  const parts: { clients: ClusterClient[]; workbench?: Workbench; events?: ClusterEvents; heartbeat?: HeartbeatSender; intps?: Interpreters } = { clients: [] };
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stop = (why: string) => {
    stopRequested ??= why;
    // Bounded: without a cluster, deregistering (or a startup stuck connecting) would retry for long.
    setTimeout(() => process.exit(1), 12_000).unref();
    if (!started || stopping) return; // during startup: carried out once startup finished
    stopping = true;
    log.info({ why }, 'stopping');
    void (async () => {
      await parts.events?.close().catch(() => {});
      // Side by side: under Ctrl-C the members stop too, and each deregistration may have to give up.
      await Promise.all([
        parts.intps?.close().catch((err) => log.warn({ err: (err as Error).message }, 'stopping interpreters failed')),
        parts.heartbeat?.stop().catch((err) => log.warn({ err: (err as Error).message }, 'deregister failed')),
      ]);
      await parts.workbench?.close().catch(() => {});
      await Promise.all(parts.clients.map((c) => c.close().catch(() => {})));
    })().finally(resolveDone);
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  if (process.env.SUBMARINE_EXIT_WITH_PARENT === '1') {
    process.stdin.once('close', () => stop('parent exited'));
    process.stdin.resume();
  }

  // One client per part: a ClusterClient session wants one writer at a time.
  let failed = false;
  try {
    // A heartbeat that cannot commit is retried at the next interval: no need to wait long for a quorum.
    const [wbClient, evClient, hbClient] = [await connect(), await connect(), await connect(3000)];
    parts.clients.push(wbClient, evClient, hbClient);
    parts.workbench = await startWorkbench({ client: wbClient, host, port: cfg.port });
    const intps = (parts.intps = new Interpreters(cfg, log));
    const events = (parts.events = await ClusterEvents.start({ client: evClient, memberId: cfg.name, cursorStore: new MemoryCursorStore(), logger: log }));
    events.on(CLUSTER_INTP_EVENT_TOPIC, (payload: unknown, meta: EventMeta) => {
      // Broadcasts on this topic are news for others, and durable commands would replay: fast unicasts only.
      if (meta.mode !== 'fast' || meta.to !== cfg.name) return;
      const cmd = checkInterpreterCommand(payload);
      log.info({ ...cmd, from: meta.from }, 'interpreter command');
      return intps.run(cmd);
    });
    await events.ready();
    // Registered only once it can take interpreter commands: placement picks ONLINE servers.
    parts.heartbeat = await HeartbeatSender.start({
      writer: hbClient, identity: { kind: 'server', host, port: hbPort }, heartbeatIntervalMs: cfg.heartbeatIntervalMs, logger: log,
    });
    const results = await Promise.allSettled(cfg.interpreters.map((n) => intps.run({ op: 'start', groupId: `${n}-${cfg.index}` })));
    for (const r of results) if (r.status === 'rejected') log.error({ err: (r.reason as Error).message }, 'interpreter did not start');
  } catch (err) {
    log.error({ err: (err as Error).message }, 'demo server failed to start');
    failed = true;
    stopRequested ??= 'startup failed';
  }
  started = true;
  if (stopRequested) {
    stop(stopRequested);
  } else {
    log.info({ url: parts.workbench!.url, interpreters: [...parts.intps!.children.keys()] }, 'ready');
    console.log(`READY ${parts.workbench!.url}`);
  }
  await done;
  return failed ? 1 : 0;
}

// ---- the launcher's side -------------------------------------------------------------------------

/** A demo server child process (spawned like a member: stdin a pipe, so it dies with us). */
export class DemoServerProcess {
  readonly child: ChildProcess;
  /** Resolves with the workbench URL once the server printed READY; rejects if it exits first. */
  readonly ready: Promise<string>;
  private readonly exited: Promise<number | null>;

  constructor(readonly name: string, readonly port: number, args: string[], readonly logFile: string) {
    const out = createWriteStream(logFile, { flags: 'a' });
    this.child = spawn(process.execPath, ['--import=tsx', CLI, 'demo-server', '--name', name, '--port', String(port), ...args], {
      // Own process group: Ctrl-C reaches the launcher only, which stops these first, in order.
      cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, SUBMARINE_EXIT_WITH_PARENT: '1' }, detached: true,
    });
    this.child.stdin!.on('error', () => {});
    this.child.stderr!.pipe(out);
    this.exited = new Promise((res) => this.child.once('exit', (code) => res(code)));
    this.ready = new Promise<string>((resolveReady, rejectReady) => {
      createInterface({ input: this.child.stdout! }).on('line', (line) => {
        out.write(`${line}\n`);
        const m = /^READY (\S+)/.exec(line);
        if (m) resolveReady(m[1]!);
      });
      void this.exited.then((code) => rejectReady(new Error(`demo server ${name} exited (code ${code}) before it was ready; see ${logFile}`)));
    });
    this.ready.catch(() => {});
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM (deregisters, stops its interpreters), then SIGKILL after graceMs. */
  async stop(graceMs = 15_000): Promise<number | null> {
    await stopChild(this.child, this.exited, graceMs);
    return this.exited;
  }

  kill9(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}

/** `preferred` if it can be bound on host, else the next ones up to +50, else any free port. */
async function pickPort(host: string, preferred: number, taken: Set<number>): Promise<number> {
  const tryBind = (p: number) => new Promise<number | null>((res) => {
    const s = createServer();
    s.once('error', () => res(null));
    s.listen(p, host, () => {
      const got = (s.address() as { port: number }).port;
      s.close(() => res(got));
    });
  });
  for (let p = preferred; p > 0 && p < preferred + 50 && p < 65536; p++) {
    if (taken.has(p)) continue;
    if ((await tryBind(p)) !== null) return p;
  }
  for (;;) {
    const p = await tryBind(0);
    if (p !== null && !taken.has(p)) return p;
  }
}

export interface DemoServers {
  servers: DemoServerProcess[];
  /** Workbench URL per server ('' for one that failed to start). */
  urls: string[];
  /** Why servers failed to start (each names its log file). */
  failures: string[];
  stop(): Promise<void>;
  kill9(): void;
}

/**
 * `count` demo servers on ports `basePort`.. when free (default 8081; 0: any free ports), named
 * `<host>:<port>`, server i (1..count) starting interpreters `<name>-<i>` (default: python-<i>).
 * Resolves once every server is ready or has failed (`failures`, each naming its log file); a
 * server that failed is stopped.
 */
export async function startDemoServers(o: {
  local: LocalCluster;
  count: number;
  logDir: string;
  basePort?: number;
  host?: string;
  interpreters?: (index: number) => string[];
  heartbeatIntervalMs?: number;
  readyTimeoutMs?: number;
}): Promise<DemoServers> {
  const host = o.host ?? '127.0.0.1';
  const taken = new Set<number>();
  const servers: DemoServerProcess[] = [];
  for (let i = 1; i <= o.count; i++) {
    const port = await pickPort(host, o.basePort === 0 ? 0 : (o.basePort ?? 8081) + i - 1, taken);
    taken.add(port);
    const name = `${host}:${port}`;
    const intps = o.interpreters ? o.interpreters(i) : ['python'];
    const args = [
      '--nats', o.local.nats.urls.join(','), '--nats-credentials', o.local.credentialsFile, '--cluster', o.local.cluster, '--index', String(i),
      ...(intps.length ? ['--interpreters', intps.join(',')] : []),
      ...(o.heartbeatIntervalMs ? ['--heartbeat-interval-ms', String(o.heartbeatIntervalMs)] : []),
    ];
    servers.push(new DemoServerProcess(name, port, args, join(o.logDir, `demo-server-${port}.log`)));
  }
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  const readyTimeoutMs = o.readyTimeoutMs ?? 60_000;
  const results = await Promise.allSettled(servers.map(async (s) => {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`demo server ${s.name} not ready within ${readyTimeoutMs} ms; see ${s.logFile}`)), readyTimeoutMs);
    });
    try {
      return await Promise.race([s.ready, late]);
    } catch (err) {
      await s.stop(2000); // a server that failed stays down
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }));
  return {
    servers, stop,
    kill9: () => servers.forEach((s) => s.kill9()),
    urls: results.map((r) => (r.status === 'fulfilled' ? r.value : '')),
    failures: results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : [])),
  };
}

// ---- the dashboard's side ------------------------------------------------------------------------

/** An interpreter operation that did not work out; `status` is the HTTP status to answer with. */
export class InterpreterControlError extends Error {
  override name = 'InterpreterControlError';
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

/**
 * Asks demo servers to start / restart interpreters: fast unicasts on the `interpreter` topic to
 * the server named by the interpreter's NODE_NAME, and placement on the idlest server. Sends only
 * (no listener, cursors in memory), so it shares the caller's client without writing through it.
 */
export class InterpreterControl {
  private constructor(private readonly events: ClusterEvents, private readonly discovery: Discovery, private readonly log: Logger) {}

  static async start(o: { client: ClusterClient; memberId?: string; logger?: Logger }): Promise<InterpreterControl> {
    const memberId = o.memberId ?? `dashboard-${randomBytes(4).toString('hex')}`;
    const events = await ClusterEvents.start({ client: o.client, memberId, cursorStore: new MemoryCursorStore(), logger: o.logger });
    try {
      return new InterpreterControl(events, await Discovery.start({ client: o.client, logger: o.logger }), o.logger ?? silentLogger);
    } catch (err) {
      await events.close();
      throw err;
    }
  }

  /** Sends one command to `server` and waits for its acknowledgement (or a clear error). */
  async request(server: string, cmd: InterpreterCommand, timeoutMs = INTERPRETER_OP_TIMEOUT_MS): Promise<void> {
    try {
      await this.events.unicast(server, CLUSTER_INTP_EVENT_TOPIC, cmd, { timeoutMs });
    } catch (err) {
      if (!(err instanceof EventDeliveryError)) throw err;
      const what = `${cmd.op} interpreter ${cmd.groupId}`;
      switch (err.reason) {
        case 'noResponders':
          throw new InterpreterControlError(`cannot ${what}: its server ${server} is gone (no server process answers for it)`, 409);
        case 'noListener':
          throw new InterpreterControlError(`cannot ${what}: server ${server} does not manage interpreters (no listener on the interpreter topic)`, 409);
        case 'listenerFailed':
          throw new InterpreterControlError(`server ${server} could not ${what}: ${err.message}`, 502);
        case 'timeout':
          throw new InterpreterControlError(`server ${server} did not confirm "${what}" within ${timeoutMs} ms`, 504);
        default:
          throw new InterpreterControlError(`cannot ${what} on ${server}: ${err.message}`, 502);
      }
    }
  }

  /** Restarts `groupId` on the server it runs on (its NODE_NAME). */
  async restart(groupId: string): Promise<{ restarted: string; server: string }> {
    if (!GROUP_ID.test(groupId)) throw new InterpreterControlError(`bad interpreter group id ${JSON.stringify(groupId)}`, 400);
    const intp = await this.discovery.interpreter(groupId, { consistency: 'linearizable' });
    if (!intp) throw new InterpreterControlError(`no interpreter ${groupId} in the metadata center`, 404);
    if (!intp.nodeName) throw new InterpreterControlError(`interpreter ${groupId} names no server (NODE_NAME)`, 409);
    await this.request(intp.nodeName, { op: 'restart', groupId });
    this.log.info({ groupId, server: intp.nodeName }, 'interpreter restarted');
    return { restarted: groupId, server: intp.nodeName };
  }

  /** Starts a new interpreter group `<name>-<random>` on the idlest ONLINE server (placement). */
  async place(name = 'python'): Promise<{ groupId: string; server: string | null; attempts: number }> {
    if (!/^[A-Za-z0-9_]{1,32}$/.test(name)) throw new InterpreterControlError(`bad interpreter name ${JSON.stringify(name)}`, 400);
    const groupId = `${name}-${randomBytes(3).toString('hex')}`;
    try {
      const p = await placeInterpreter({
        discovery: this.discovery, waitTimeoutMs: INTERPRETER_OP_TIMEOUT_MS, tcpProbe: true, logger: this.log,
        requestStart: (server, g) => this.request(server, { op: 'start', groupId: g }),
      }, groupId);
      return { groupId, server: p.server ?? p.interpreter.nodeName, attempts: p.attempts.length + 1 };
    } catch (err) {
      if (err instanceof PlacementError) throw new InterpreterControlError(err.message, 409);
      throw err;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.events.close(), this.discovery.close()]);
  }
}
