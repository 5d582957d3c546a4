/**
 * Service discovery over the metadata center: a local cache of `meta/` (servers and interpreter
 * processes, src/meta.ts) kept current by a gap-free watch, with lookups answered from the cache
 * or, with `{ consistency }`, from the cluster. `waitFor` waits for an interpreter to come ONLINE
 * (optionally until its port accepts a TCP connection); `watchService` reports appear / change /
 * disappear.
 */
import { connect as tcpConnect } from 'node:net';
import type { Consistency } from '../src/api/protocol.ts';
import type { WatchOptions } from '../src/client.ts';
import { TimeoutError } from '../src/errors.ts';
import { META_PREFIX, metaKey, type InterpreterMeta, type MemberStatusValue, type ServerMeta } from '../src/meta.ts';
import type { KeyValue } from '../src/sm/metadata.ts';
import { silentLogger, type Logger } from './ports.ts';

/** What discovery needs of a ClusterClient (ClusterClient satisfies it). */
export interface DiscoveryClient {
  list(prefix: string, o?: { consistency?: Consistency }): Promise<{ kvs: KeyValue[]; revision: number }>;
  get(key: string, o?: { consistency?: Consistency }): Promise<{ kv: KeyValue | null }>;
  watch(prefix: string, o: WatchOptions): Promise<{ close(): Promise<void> }>;
}

/** STATUS as written, or UNKNOWN when the entry has none. */
export type ServiceStatus = MemberStatusValue | 'UNKNOWN';

export interface ServerInfo {
  /** Node name host:port (the key under meta/server/). */
  name: string;
  host: string | null;
  port: number | null;
  status: ServiceStatus;
  /** MEMORY_CAPACITY - MEMORY_USED in bytes, or null when the server reported no memory figures. */
  freeMemory: number | null;
  meta: Readonly<Partial<ServerMeta>>;
  revision: number;
}

export interface InterpreterInfo {
  groupId: string;
  /** Where the interpreter process serves (INTP_TSERVER_HOST / _PORT). */
  host: string | null;
  port: number | null;
  status: ServiceStatus;
  /** The server it runs on / was launched by. */
  nodeName: string | null;
  meta: Readonly<Partial<InterpreterMeta>>;
  revision: number;
}

export type ServiceChange =
  | { kind: 'server'; type: 'appear' | 'change' | 'disappear'; name: string; current: ServerInfo | null; previous: ServerInfo | null }
  | { kind: 'interpreter'; type: 'appear' | 'change' | 'disappear'; name: string; current: InterpreterInfo | null; previous: InterpreterInfo | null };

/** Without `consistency` a lookup reads the local cache; with it, the cluster (linearizable: through the leader). */
export interface LookupOptions {
  consistency?: Consistency;
}

export interface WaitForOptions {
  /** Also wait until host:port accepts a TCP connection (the process is registered *and* serving). */
  tcpProbe?: boolean;
  signal?: AbortSignal;
}

const SERVER_PREFIX = `${META_PREFIX}server/`;
const INTP_PREFIX = `${META_PREFIX}intp/`;

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const port = (v: unknown): number | null => (Number.isSafeInteger(v) && (v as number) > 0 && (v as number) <= 65535 ? (v as number) : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const fields = (kv: KeyValue): Record<string, unknown> =>
  typeof kv.value === 'object' && kv.value !== null && !Array.isArray(kv.value) && !ArrayBuffer.isView(kv.value) ? (kv.value as Record<string, unknown>) : {};
const statusOf = (f: Record<string, unknown>): ServiceStatus => (f.STATUS === 'ONLINE' || f.STATUS === 'OFFLINE' ? f.STATUS : 'UNKNOWN');

export function toServerInfo(kv: KeyValue): ServerInfo {
  const f = fields(kv);
  const cap = num(f.MEMORY_CAPACITY);
  const used = num(f.MEMORY_USED);
  return {
    name: kv.key.slice(SERVER_PREFIX.length), host: str(f.SERVER_HOST), port: port(f.SERVER_PORT), status: statusOf(f),
    freeMemory: cap !== null && used !== null ? cap - used : null, meta: f as Partial<ServerMeta>, revision: kv.modRevision,
  };
}

export function toInterpreterInfo(kv: KeyValue): InterpreterInfo {
  const f = fields(kv);
  return {
    groupId: kv.key.slice(INTP_PREFIX.length), host: str(f.INTP_TSERVER_HOST), port: port(f.INTP_TSERVER_PORT), status: statusOf(f),
    nodeName: str(f.NODE_NAME), meta: f as Partial<InterpreterMeta>, revision: kv.modRevision,
  };
}

/**
 * ONLINE servers, most free memory first (the original's getIdleNodeMeta picks the first); servers
 * without memory figures come last; ties by name so every caller ranks alike.
 */
export function rankServers(servers: readonly ServerInfo[]): ServerInfo[] {
  return servers
    .filter((s) => s.status === 'ONLINE')
    .sort((a, b) => (b.freeMemory ?? -Infinity) - (a.freeMemory ?? -Infinity) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Resolves true when host:port accepts a TCP connection within timeoutMs, else false (with why). */
export function probeTcp(host: string, portNo: number, timeoutMs: number): Promise<{ ok: boolean; error?: string }> {
  return new Promise((resolve) => {
    const sock = tcpConnect({ host: host.replace(/^\[(.*)\]$/, '$1'), port: portNo });
    const done = (r: { ok: boolean; error?: string }) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, error: `no TCP answer within ${timeoutMs} ms` }), timeoutMs);
    sock.once('connect', () => done({ ok: true }));
    sock.once('error', (err) => done({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message }));
  });
}

export class Discovery {
  private readonly cache = new Map<string, KeyValue>();
  private readonly listeners = new Set<(c: ServiceChange) => void>();
  private readonly closers = new Set<(err: Error) => void>();
  private watcher: { close(): Promise<void> } | null = null;
  private closed = false;

  private constructor(private readonly client: DiscoveryClient, private readonly log: Logger) {}

  /** Lists `meta/` (linearizable) and watches it from the listed revision. */
  static async start(o: { client: DiscoveryClient; logger?: Logger }): Promise<Discovery> {
    const d = new Discovery(o.client, o.logger ?? silentLogger);
    const listed = await o.client.list(META_PREFIX);
    d.replaceAll(listed.kvs);
    d.watcher = await o.client.watch(META_PREFIX, {
      fromRevision: listed.revision,
      onEvent: (ev) => d.apply(ev.type === 'delete' ? null : ev.kv, ev.kv.key),
      onResync: (kvs) => d.replaceAll(kvs),
      onError: (err) => d.log.warn({ err: err.message }, 'discovery watch interrupted; resuming'),
    });
    return d;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const fail of [...this.closers]) fail(new Error('discovery was closed'));
    this.listeners.clear();
    await this.watcher?.close();
  }

  // ---- lookups ----------------------------------------------------------------------------------

  async interpreter(groupId: string, o: LookupOptions = {}): Promise<InterpreterInfo | null> {
    const key = metaKey('intp', groupId);
    const kv = o.consistency ? (await this.client.get(key, { consistency: o.consistency })).kv : this.cache.get(key);
    return kv ? toInterpreterInfo(kv) : null;
  }

  async server(name: string, o: LookupOptions = {}): Promise<ServerInfo | null> {
    const key = metaKey('server', name);
    const kv = o.consistency ? (await this.client.get(key, { consistency: o.consistency })).kv : this.cache.get(key);
    return kv ? toServerInfo(kv) : null;
  }

  async servers(o: LookupOptions & { status?: ServiceStatus } = {}): Promise<ServerInfo[]> {
    return (await this.entries(SERVER_PREFIX, o)).map(toServerInfo).filter((s) => !o.status || s.status === o.status);
  }

  async interpreters(o: LookupOptions & { status?: ServiceStatus } = {}): Promise<InterpreterInfo[]> {
    return (await this.entries(INTP_PREFIX, o)).map(toInterpreterInfo).filter((s) => !o.status || s.status === o.status);
  }

  /** The ONLINE server with the most free memory (MEMORY_CAPACITY - MEMORY_USED), or null. */
  async idlestServer(o: LookupOptions = {}): Promise<ServerInfo | null> {
    return rankServers(await this.servers(o))[0] ?? null;
  }

  private async entries(prefix: string, o: LookupOptions): Promise<KeyValue[]> {
    if (o.consistency) return (await this.client.list(prefix, { consistency: o.consistency })).kvs;
    const out: KeyValue[] = [];
    for (const [key, kv] of this.cache) if (key.startsWith(prefix) && key.length > prefix.length) out.push(kv);
    return out.sort((a, b) => (a.key < b.key ? -1 : 1));
  }

  // ---- changes ----------------------------------------------------------------------------------

  /** Calls fn for every server / interpreter that appears, changes or disappears. Returns unsubscribe. */
  watchService(fn: (c: ServiceChange) => void): () => void {
    const box = (c: ServiceChange) => fn(c);
    this.listeners.add(box);
    return () => void this.listeners.delete(box);
  }

  /**
   * Resolves with the interpreter once it is ONLINE with a host and port (and, with tcpProbe,
   * accepting connections); rejects with TimeoutError after timeoutMs, saying what it last saw.
   */
  waitFor(groupId: string, timeoutMs: number, o: WaitForOptions = {}): Promise<InterpreterInfo> {
    if (this.closed) return Promise.reject(new Error('discovery is closed'));
    return new Promise<InterpreterInfo>((resolve, reject) => {
      const key = metaKey('intp', groupId);
      let finished = false;
      let probing = false;
      let lastProbeError: string | null = null;
      let retry: NodeJS.Timeout | null = null;
      const deadline = performance.now() + timeoutMs;
      const finish = (err: Error | null, v?: InterpreterInfo) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        if (retry) clearTimeout(retry);
        off();
        this.closers.delete(onClose);
        o.signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(v!);
      };
      const ready = (): InterpreterInfo | null => {
        const kv = this.cache.get(key);
        const info = kv ? toInterpreterInfo(kv) : null;
        return info && info.status === 'ONLINE' && info.host && info.port ? info : null;
      };
      const check = () => {
        if (finished || probing) return;
        const info = ready();
        if (!info) return;
        if (!o.tcpProbe) return finish(null, info);
        probing = true;
        void probeTcp(info.host!, info.port!, Math.max(1, Math.min(1000, deadline - performance.now()))).then((r) => {
          probing = false;
          if (finished) return;
          if (r.ok) return finish(null, ready() ?? info);
          lastProbeError = `${info.host}:${info.port} refused the TCP probe (${r.error})`;
          retry = setTimeout(check, 100); // registered but not yet serving: probe again
        });
      };
      const describe = () => {
        const kv = this.cache.get(key);
        if (!kv) return 'no entry registered';
        const info = toInterpreterInfo(kv);
        if (info.status !== 'ONLINE') return `STATUS ${info.status}`;
        if (!info.host || !info.port) return 'ONLINE but without host/port';
        return lastProbeError ?? 'ONLINE, TCP probe still running';
      };
      const timer = setTimeout(() => finish(new TimeoutError(`interpreter ${groupId} not ready within ${timeoutMs} ms: ${describe()}`)), timeoutMs);
      const off = this.watchService((c) => {
        if (c.kind === 'interpreter' && c.name === groupId) check();
      });
      const onClose = (err: Error) => finish(err);
      this.closers.add(onClose);
      const onAbort = () => finish(o.signal!.reason instanceof Error ? o.signal!.reason : new Error(`waiting for interpreter ${groupId} was aborted`));
      if (o.signal?.aborted) return onAbort();
      o.signal?.addEventListener('abort', onAbort, { once: true });
      check();
    });
  }

  // ---- cache ------------------------------------------------------------------------------------

  private apply(kv: KeyValue | null, key: string): void {
    const prev = this.cache.get(key) ?? null;
    if (kv) this.cache.set(key, kv);
    else this.cache.delete(key);
    this.emit(key, prev, kv);
  }

  /** A (re)list: the cache becomes exactly `kvs`, with changes reported against what it held. */
  private replaceAll(kvs: KeyValue[]): void {
    const next = new Map(kvs.map((kv) => [kv.key, kv]));
    for (const key of [...this.cache.keys()]) if (!next.has(key)) this.apply(null, key);
    for (const kv of next.values()) if (this.cache.get(kv.key)?.modRevision !== kv.modRevision) this.apply(kv, kv.key);
  }

  private emit(key: string, prev: KeyValue | null, cur: KeyValue | null): void {
    if (!prev && !cur) return;
    const type = !prev ? 'appear' : !cur ? 'disappear' : 'change';
    let change: ServiceChange;
    if (key.startsWith(SERVER_PREFIX) && key.length > SERVER_PREFIX.length) {
      change = { kind: 'server', type, name: key.slice(SERVER_PREFIX.length), current: cur && toServerInfo(cur), previous: prev && toServerInfo(prev) };
    } else if (key.startsWith(INTP_PREFIX) && key.length > INTP_PREFIX.length) {
      change = { kind: 'interpreter', type, name: key.slice(INTP_PREFIX.length), current: cur && toInterpreterInfo(cur), previous: prev && toInterpreterInfo(prev) };
    } else return;
    for (const fn of [...this.listeners]) {
      try {
        fn(change);
      } catch (err) {
        this.log.error({ key, err: (err as Error).message }, 'watchService listener failed');
      }
    }
  }
}
