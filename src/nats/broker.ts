/**
 * Runs the NATS broker as a cluster of nats-server processes on one host (loopback by default),
 * every one configured by the project's nats.conf; the per-server values (host, ports, advertise
 * addresses, routes, credentials, route TLS) go in through environment variables (see the comments
 * in nats.conf for why they are quoted the way they are), client TLS through nats-server's flags.
 * `natsServerLaunch` builds both for one server; `submarine-cluster broker` (broker-command.ts)
 * uses it for one host's server of a multi-host broker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, fstatSync, openSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { delimiter, join, resolve } from 'node:path';
import { packageRoot } from '../paths.ts';
import type { NatsCredentials } from './credentials.ts';
import { ensureRouteCert } from './tls.ts';

export interface BrokerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface StartNatsClusterOptions {
  /** Number of servers (default 3). */
  size?: number;
  /** Address every listener binds (clients, routes, monitoring); default 127.0.0.1. */
  host?: string;
  /** Run directory: one log file per server. */
  dir: string;
  credentials: NatsCredentials;
  /** Config used by every server (default: the repository's nats.conf). */
  confPath?: string;
  logger?: BrokerLogger;
  /** How long a server may take to become healthy and routed to its peers (default 20s). */
  startTimeoutMs?: number;
  /** How long a server may take to exit after SIGTERM before it gets SIGKILL (default 5s). */
  stopTimeoutMs?: number;
}

export interface NatsServerInfo {
  readonly name: string;
  /** Pid of the current process, or of the last one once it has exited. */
  readonly pid: number;
  readonly running: boolean;
  readonly clientPort: number;
  readonly clusterPort: number;
  readonly httpPort: number;
  readonly url: string;
  readonly logFile: string;
}

export interface NatsCluster {
  /** `nats://<host>:<port>` per server, in server order. */
  readonly urls: string[];
  /** Live view: pid and running change as servers stop and start. */
  readonly servers: readonly NatsServerInfo[];
  /** SIGTERM, then SIGKILL after the stop deadline; resolves once the process has exited. */
  stopServer(i: number): Promise<void>;
  /** SIGKILL; resolves once the process has exited. */
  killServer(i: number): Promise<void>;
  /** Starts a stopped server again on the same ports; resolves once it is routed to the running peers. */
  startServer(i: number): Promise<void>;
  /** Stops every server. Safe to call more than once. */
  stop(): Promise<void>;
}

export const DEFAULT_CONF_PATH = join(packageRoot(import.meta.url), 'nats.conf');

export const DEFAULT_HOST = '127.0.0.1';
const POLL_MS = 20;
const silentLogger: BrokerLogger = { info() {}, warn() {} };

/** `host:port` for a URL or a nats.conf value: IPv6 addresses in brackets. */
export const hostPort = (host: string, port: number): string => `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;

/** The TLS files of a server: its key and certificate, and the CA that signed its peers'. */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
}

export interface NatsServerSpec {
  name: string;
  host: string;
  clientPort: number;
  /** host:port announced to clients (INFO connect_urls); default: none (the listen address). */
  clientAdvertise?: string;
  /** Monitoring `host:port`, or null for none. */
  http: string | null;
  clusterHost: string;
  clusterPort: number;
  /** host:port announced to the other servers; default: none (the listen address). */
  clusterAdvertise?: string;
  /** The other servers' route listeners, `host:port` each. */
  routes: string[];
  credentials: NatsCredentials;
  /** Client TLS (clients must use tls:// and trust `ca`); none: plain (loopback, or --insecure). */
  clientTls?: TlsFiles & { verifyClients?: boolean };
  /**
   * Route TLS, always on (nats.conf): with a CA, every route checks the other's certificate and
   * the dialled host name; with `insecure`, the dialled server's certificate is not checked (a
   * shared self-signed certificate whose `ca` is itself, reached by other names than its own).
   */
  routeTls: TlsFiles & { insecure?: boolean };
}

/** Environment and arguments that run one server of the broker from nats.conf. */
export function natsServerLaunch(s: NatsServerSpec, confPath: string): { env: Record<string, string>; args: string[] } {
  const q = (v: string) => JSON.stringify(v); // keeps a secret, a host or a path a string for the config parser
  const { member, client, route } = s.credentials;
  const routeAuth = `${encodeURIComponent(route.user)}:${encodeURIComponent(route.pass)}`;
  const t = s.routeTls;
  const clusterTls = `{cert_file: ${q(t.cert)}, key_file: ${q(t.key)}, ca_file: ${q(t.ca)}, verify: true, timeout: 3${t.insecure ? ', insecure: true' : ''}}`;
  const env: Record<string, string> = {
    SERVER_NAME: q(s.name),
    HOST: q(s.host),
    CLIENT_PORT: String(s.clientPort),
    CLIENT_ADVERTISE: q(s.clientAdvertise ?? ''),
    HTTP: s.http === null ? '0' : q(s.http),
    CLUSTER_HOST: q(s.clusterHost),
    CLUSTER_PORT: String(s.clusterPort),
    CLUSTER_ADVERTISE: q(s.clusterAdvertise ?? ''),
    ROUTES: JSON.stringify(s.routes.map((r) => `nats-route://${routeAuth}@${r}`)),
    CLUSTER_TLS: clusterTls,
    ROUTE_USER: q(route.user),
    ROUTE_PASS: q(route.pass),
    MEMBER_USER: q(member.user),
    MEMBER_PASS: q(member.pass),
    CLIENT_USER: q(client.user),
    CLIENT_PASS: q(client.pass),
  };
  const args = ['-c', confPath];
  const c = s.clientTls;
  if (c) args.push(c.verifyClients ? '--tlsverify' : '--tls', '--tlscert', c.cert, '--tlskey', c.key, '--tlscacert', c.ca);
  return { env, args };
}

export function findNatsServer(): string {
  const candidates = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, 'nats-server')), '/usr/sbin/nats-server'];
  for (const c of candidates) {
    try {
      accessSync(c, fsConstants.X_OK);
      return c;
    } catch {
      // not here; try the next one
    }
  }
  throw new Error('nats-server not found on PATH nor at /usr/sbin/nats-server: run scripts/ensure-nats-server.sh (or install nats-server 2.9+)');
}

/** Ports the OS reports free on `host` (default 127.0.0.1), all distinct (they are held together until all are known). */
export async function freePorts(n: number, host = DEFAULT_HOST): Promise<number[]> {
  const servers = Array.from({ length: n }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (s) =>
          new Promise<number>((res, rej) => {
            s.once('error', rej);
            s.listen(0, host, () => res((s.address() as { port: number }).port));
          }),
      ),
    );
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((res) => (s.listening ? s.close(() => res()) : res()))));
  }
}

export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}

export class NatsStartError extends Error {
  override name = 'NatsStartError';
  constructor(message: string, readonly portInUse = false) {
    super(message);
  }
}

interface Proc {
  child: ChildProcess;
  pid: number;
  exited: Promise<void>;
  hasExited: boolean;
  /** We asked it to go: its exit is not worth a warning. */
  stopping: boolean;
  /** Where this process's output starts in the log file. */
  logOffset: number;
}

interface Slot {
  name: string;
  clientPort: number;
  clusterPort: number;
  httpPort: number;
  logFile: string;
  lastPid: number;
  proc: Proc | null;
  /** server_id of the current process (a new one on every start), learnt from /varz. */
  serverId: string | null;
}

/**
 * Kills the processes we started (nats-servers here; the benchmark's etcd and JetStream servers too)
 * if this process dies without stopping them, even by SIGKILL: a small shell process reads the live
 * pids from a pipe, and the pipe reaches end-of-file when we are gone.
 */
export class OrphanGuard {
  private readonly proc: ChildProcess;
  private closed = false;

  constructor() {
    const script = `pids=' '
while IFS= read -r l; do
  case $l in
    +*) pids="$pids\${l#+} " ;;
    -*) x=\${l#-}; case $pids in *" $x "*) pids="\${pids%% $x *} \${pids#* $x }" ;; esac ;;
  esac
done
for p in $pids; do kill -KILL "$p" 2>/dev/null; done
exit 0`;
    // Detached: a terminal's Ctrl-C must not kill the guard before it could do its job.
    this.proc = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
    this.proc.on('error', () => {});
    this.proc.stdin!.on('error', () => {});
    // Neither the guard nor its pipe may keep the event loop alive.
    this.proc.unref();
    (this.proc.stdin as Socket).unref();
  }

  add(pid: number): void {
    if (!this.closed) this.proc.stdin!.write(`+${pid}\n`);
  }

  remove(pid: number): void {
    if (!this.closed) this.proc.stdin!.write(`-${pid}\n`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.proc.stdin!.end();
  }
}

/** The end of what one process wrote to its log, which begins at `from` (the file is appended to). */
async function logTail(file: string, from: number, maxBytes = 4096): Promise<string> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const start = Math.max(from, size - maxBytes);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return buf.toString('utf8').split('\n').slice(start > from ? 1 : 0).slice(-25).join('\n').trimEnd();
    } finally {
      await fh.close();
    }
  } catch (err) {
    return `(log ${file} unreadable: ${(err as Error).message})`;
  }
}

async function getJson(host: string, port: number, path: string): Promise<Record<string, unknown> | null> {
  try {
    const res = await fetch(`http://${hostPort(host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host, port)}${path}`, { signal: AbortSignal.timeout(1000) });
    if (!res.ok) return null;
    return (await res.json()) as Record<string, unknown>;
  } catch {
    return null;
  }
}

const pause = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));

export async function startNatsCluster(opts: StartNatsClusterOptions): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`startNatsCluster: size must be a positive integer, got ${size}`);
  const bin = findNatsServer();
  const confPath = resolve(opts.confPath ?? DEFAULT_CONF_PATH);
  try {
    accessSync(confPath, fsConstants.R_OK);
  } catch {
    throw new Error(`startNatsCluster: config ${confPath} is not readable`);
  }
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true });
  const log = opts.logger ?? silentLogger;
  const startTimeoutMs = opts.startTimeoutMs ?? 20_000;
  const stopTimeoutMs = opts.stopTimeoutMs ?? 5_000;
  const host = opts.host ?? DEFAULT_HOST;
  // Routes always run TLS (see nats.conf); a local broker's servers share one self-signed
  // certificate for localhost/127.0.0.1 (and `host`), kept in the run directory.
  const routeCert = ensureRouteCert(dir, host === DEFAULT_HOST || host === '0.0.0.0' || host === '::' ? [] : [host.replace(/^\[|\]$/g, '')]);

  const guard = new OrphanGuard();
  let slots: Slot[] = [];
  let stopped = false;

  const launchFor = (s: Slot) =>
    natsServerLaunch(
      {
        name: s.name, host, clientPort: s.clientPort, http: hostPort(host, s.httpPort),
        clusterHost: host, clusterPort: s.clusterPort,
        routes: slots.filter((o) => o !== s).map((o) => hostPort(host === '0.0.0.0' ? DEFAULT_HOST : host === '::' ? '::1' : host, o.clusterPort)),
        credentials: opts.credentials,
        routeTls: { cert: routeCert.cert, key: routeCert.key, ca: routeCert.cert },
      },
      confPath,
    );

  function spawnServer(s: Slot): void {
    const fd = openSync(s.logFile, 'a');
    const logOffset = fstatSync(fd).size;
    let child: ChildProcess;
    try {
      // Own process group: a terminal's Ctrl-C reaches us, and we stop the servers in order.
      const { env, args } = launchFor(s);
      child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    // Without a listener a failed spawn or kill would crash the whole process.
    child.on('error', (err) => log.warn({ server: s.name, err: err.message }, 'nats-server process error'));
    const pid = child.pid;
    if (pid === undefined) throw new NatsStartError(`${s.name}: could not spawn ${bin}`);
    const p: Proc = { child, pid, hasExited: false, stopping: false, logOffset, exited: undefined as unknown as Promise<void> };
    p.exited = new Promise<void>((res) => {
      child.once('exit', (code, signal) => {
        p.hasExited = true;
        guard.remove(pid);
        if (!p.stopping) log.warn({ server: s.name, pid, code, signal, logFile: s.logFile }, 'nats-server exited unexpectedly');
        res();
      });
    });
    guard.add(pid);
    s.proc = p;
    s.lastPid = pid;
    s.serverId = null;
    log.info({ server: s.name, pid, clientPort: s.clientPort, clusterPort: s.clusterPort, httpPort: s.httpPort }, 'nats-server started');
  }

  async function failure(s: Slot, why: string): Promise<NatsStartError> {
    const tail = await logTail(s.logFile, s.proc?.logOffset ?? 0);
    return new NatsStartError(`${s.name}: ${why}\n--- ${s.logFile} (tail) ---\n${tail}`, /address already in use/i.test(tail));
  }

  /** Until /varz answers for this process; records its server_id. */
  async function waitHealthy(s: Slot, deadline: number): Promise<void> {
    const p = s.proc!;
    for (;;) {
      if (p.hasExited) throw await failure(s, `nats-server (pid ${p.pid}) exited during start`);
      const health = await getJson(host, s.httpPort, '/healthz');
      if (health?.status === 'ok') {
        const varz = await getJson(host, s.httpPort, '/varz');
        // Check the name: the port could, in theory, belong to someone else's server.
        if (varz && varz.server_name === s.name && typeof varz.server_id === 'string' && !p.hasExited) {
          s.serverId = varz.server_id;
          return;
        }
      }
      if (Date.now() > deadline) throw await failure(s, `not healthy after ${startTimeoutMs}ms`);
      await pause(POLL_MS);
    }
  }

  /** Until every running server has a route to every other running server. */
  async function waitMesh(starting: Slot[], deadline: number): Promise<void> {
    for (;;) {
      const running = slots.filter((s) => s.proc && !s.proc.hasExited);
      const missing: string[] = [];
      for (const s of running) {
        const routez = await getJson(host, s.httpPort, '/routez');
        const remote = new Set(((routez?.routes as { remote_id?: string }[] | undefined) ?? []).map((r) => r.remote_id));
        for (const o of running) if (o !== s && !remote.has(o.serverId ?? '')) missing.push(`${s.name}→${o.name}`);
      }
      if (missing.length === 0) return;
      const dead = starting.find((s) => s.proc!.hasExited);
      if (dead) throw await failure(dead, `nats-server (pid ${dead.proc!.pid}) exited while routes were forming`);
      if (Date.now() > deadline) throw await failure(slots.find((s) => missing[0]!.startsWith(s.name + '→'))!, `routes missing after ${startTimeoutMs}ms: ${missing.join(', ')}`);
      await pause(POLL_MS);
    }
  }

  async function stopSlot(s: Slot, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const p = s.proc;
    if (!p || p.hasExited) return;
    p.stopping = true;
    p.child.kill(signal);
    if (signal === 'SIGTERM') {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((res) => (timer = setTimeout(() => res('late'), stopTimeoutMs)));
      const r = await Promise.race([p.exited, late]);
      clearTimeout(timer);
      if (r === 'late' && !p.hasExited) {
        log.warn({ server: s.name, pid: p.pid, stopTimeoutMs }, 'nats-server ignored SIGTERM: killing it');
        p.child.kill('SIGKILL');
      }
    }
    await p.exited;
    log.info({ server: s.name, pid: p.pid, signal }, 'nats-server stopped');
  }

  // Ports can be taken between freePorts() and the server binding them: then start over with new ones.
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(size * 3, host === '0.0.0.0' || host === '::' ? DEFAULT_HOST : host);
    slots = Array.from({ length: size }, (_, i) => ({
      name: `nats-${i}`,
      clientPort: ports[i * 3]!,
      clusterPort: ports[i * 3 + 1]!,
      httpPort: ports[i * 3 + 2]!,
      logFile: join(dir, `nats-${i}.log`),
      lastPid: 0,
      proc: null,
      serverId: null,
    }));
    const t0 = Date.now();
    const deadline = t0 + startTimeoutMs;
    try {
      // All at once: starting them one by one avoids some 1s route-dial retries but costs more in
      // process start-up, which dominates on a loaded machine (measured).
      for (const s of slots) spawnServer(s);
      await Promise.all(slots.map((s) => waitHealthy(s, deadline)));
      await waitMesh(slots, deadline);
      log.info({ size, ms: Date.now() - t0, urls: slots.map((s) => `nats://${hostPort(host, s.clientPort)}`) }, 'nats cluster ready');
      break;
    } catch (err) {
      await Promise.all(slots.map((s) => stopSlot(s, 'SIGKILL')));
      if (!(err instanceof NatsStartError && err.portInUse) || attempt >= 5) {
        guard.close();
        throw err;
      }
      log.warn({ attempt, err: err.message }, 'nats-server could not bind its port: retrying with new ports');
    }
  }

  const slotAt = (i: number): Slot => {
    const s = slots[i];
    if (!s) throw new RangeError(`no nats server ${i} (cluster size ${slots.length})`);
    return s;
  };

  const servers: NatsServerInfo[] = slots.map((s) => ({
    name: s.name,
    get pid() {
      return s.lastPid;
    },
    get running() {
      return s.proc !== null && !s.proc.hasExited;
    },
    clientPort: s.clientPort,
    clusterPort: s.clusterPort,
    httpPort: s.httpPort,
    url: `nats://${hostPort(host, s.clientPort)}`,
    logFile: s.logFile,
  }));

  return {
    urls: servers.map((s) => s.url),
    servers,
    stopServer: (i) => stopSlot(slotAt(i), 'SIGTERM'),
    killServer: (i) => stopSlot(slotAt(i), 'SIGKILL'),
    async startServer(i) {
      const s = slotAt(i);
      if (stopped) throw new Error('startServer: the cluster has been stopped');
      if (s.proc && !s.proc.hasExited) throw new Error(`startServer: ${s.name} is already running (pid ${s.proc.pid})`);
      const deadline = Date.now() + startTimeoutMs;
      spawnServer(s);
      try {
        await waitHealthy(s, deadline);
        await waitMesh([s], deadline);
      } catch (err) {
        await stopSlot(s, 'SIGKILL');
        throw err;
      }
    },
    async stop() {
      stopped = true;
      await Promise.all(slots.map((s) => stopSlot(s, 'SIGTERM')));
      guard.close();
    },
  };
}
