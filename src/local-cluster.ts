/**
 * A cluster of separate member processes on this machine, over a 3-server NATS cluster started
 * from the project's nats.conf. Used by `npm start`, the integration tests, the benchmarks and
 * the chaos suite. Every process it starts is tracked by PID and stopped by stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { memberLaunchArgs, TSX_MEMBER_ARGS } from './member-bundle.ts';
import { packageRoot } from './paths.ts';
import { startNatsCluster, type NatsCluster } from './nats/broker.ts';
import { loadOrCreateCredentials, type NatsCredentials } from './nats/credentials.ts';

const ROOT = packageRoot(import.meta.url);

export interface LocalClusterOptions {
  dir: string;
  members?: number;
  natsServers?: number;
  cluster?: string;
  fresh?: boolean;
  /** Extra flags for every member (e.g. election timeouts). */
  memberArgs?: string[];
  /**
   * Which NATS server each member and client prefers (the others are its failover, in order).
   * 'shared' (default): all prefer the first: on one host every process is equally near to every
   * server, and a route crossing is a process more on each hop (a 1-client write measured 3.5-3.7 ms
   * shared vs 5.6-6.1 ms spread here). 'spread': member i prefers server i, as members on separate
   * hosts would prefer their own host's server.
   */
  natsLayout?: 'shared' | 'spread';
  logLevel?: string;
}

export class MemberProcess {
  child: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);

  /** `launch`: the node arguments before the member's flags (memberLaunchArgs(): the bundle, or tsx). */
  constructor(readonly id: string, private readonly args: string[], private readonly logFile: string, private readonly launch: readonly string[] = TSX_MEMBER_ARGS) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  start(): void {
    if (this.running) throw new Error(`member ${this.id} is already running`);
    const out = createWriteStream(this.logFile, { flags: 'a' });
    // stdin stays an open pipe: when this process dies, even by SIGKILL, the member sees EOF and
    // stops itself (SUBMARINE_EXIT_WITH_PARENT), so no member outlives its launcher.
    // detached: its own process group, so a terminal's Ctrl-C reaches only the launcher, which
    // stops things in order (demo servers deregister while the cluster is still up).
    const child = spawn(process.execPath, [...this.launch, ...this.args], {
      cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, SUBMARINE_EXIT_WITH_PARENT: '1' }, detached: true,
    });
    child.stdout!.pipe(out);
    child.stderr!.pipe(out);
    this.exited = new Promise((res) => child.once('exit', (code) => res(code)));
    this.child = child;
  }

  /** Resolves with the exit code once the current process has exited (null if killed by a signal). */
  whenExited(): Promise<number | null> {
    return this.exited;
  }

  /** SIGTERM, then SIGKILL if it does not exit within `graceMs`. */
  async stop(graceMs = 5000): Promise<number | null> {
    if (!this.running) return this.exited;
    this.child!.kill('SIGTERM');
    const t = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    const code = await this.exited;
    clearTimeout(t);
    return code;
  }

  async kill9(): Promise<void> {
    if (!this.running) return;
    this.child!.kill('SIGKILL');
    await this.exited;
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }
}

export interface LocalCluster {
  cluster: string;
  nats: NatsCluster;
  credentials: NatsCredentials;
  credentialsFile: string;
  members: MemberProcess[];
  /** Options for ClusterClient.connect as a client user. */
  clientOptions(): { nats: string[]; cluster: string; user: string; pass: string };
  stop(): Promise<void>;
}

export async function startLocalCluster(o: LocalClusterOptions): Promise<LocalCluster> {
  const dir = resolve(o.dir);
  if (o.fresh) rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const credentialsFile = join(dir, 'credentials.json');
  const credentials = loadOrCreateCredentials(credentialsFile);
  const cluster = o.cluster ?? 'submarine';
  const nats = await startNatsCluster({ size: o.natsServers ?? 3, dir: join(dir, 'nats'), credentials });
  const launch = await memberLaunchArgs((err) => process.emitWarning(`member bundle failed (${err.message}); members run through tsx`));
  const ids = Array.from({ length: o.members ?? 3 }, (_, i) => `n${i + 1}`);
  const members = ids.map((id, i) => {
    const first = o.natsLayout === 'spread' ? i % nats.urls.length : 0;
    const urls = [...nats.urls.slice(first), ...nats.urls.slice(0, first)];
    const args = [
      '--id', id, '--peers', ids.join(','), '--cluster', cluster, '--nats', urls.join(','),
      '--nats-credentials', credentialsFile, '--data-dir', join(dir, 'data', id), '--log-level', o.logLevel ?? 'info',
      ...(o.memberArgs ?? []),
    ];
    return new MemberProcess(id, args, join(dir, 'logs', `${id}.log`), launch);
  });
  // Where to find this cluster (examples, the CLI, other tools): URLs change on every start.
  writeFileSync(join(dir, 'cluster.json'), JSON.stringify({ cluster, nats: nats.urls, credentialsFile, members: ids }, null, 2) + '\n');
  for (const m of members) m.start();
  let stopped = false;
  return {
    cluster, nats, credentials, credentialsFile, members,
    clientOptions: () => ({ nats: nats.urls, cluster, user: credentials.client.user, pass: credentials.client.pass }),
    async stop() {
      if (stopped) return;
      stopped = true;
      await Promise.all(members.map((m) => m.stop()));
      await nats.stop();
    },
  };
}
