/**
 * `npm start` / `submarine-cluster start`: a live local cluster with its dashboard.
 *   3 nats-server processes (the project's nats.conf), 3 member processes (separate OS processes,
 *   fault injection allowed), then the dashboard with the demo controls, then one demo Workbench
 *   server per member (src/demo/server.ts, ports 8081.. when free) with a python interpreter each. Data and logs live in
 *   ./data/local and are kept for the next start; --fresh wipes them first.
 *   Ctrl-C (SIGINT) or SIGTERM stops everything this launcher started; a second Ctrl-C kills
 *   whatever is still running at once.
 */
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { packageRoot } from './paths.ts';
import { ClusterClient, type MemberStatus } from './client.ts';
import { parseFlags } from './config.ts';
import { Dashboard } from './dashboard/server.ts';
import { startDemoServers, type DemoServers } from './demo/server.ts';
import { startLocalCluster, type LocalCluster } from './local-cluster.ts';
import { findNatsServer } from './nats/broker.ts';

const ROOT = packageRoot(import.meta.url);

export interface StartOptions {
  dir: string;
  fresh: boolean;
  /** Dashboard port; undefined: 8080 if free, else any free port. */
  port?: number;
  host: string;
  members: number;
  /** Wait this long for a leader before showing the dashboard anyway. */
  leaderTimeoutMs: number;
}

const say = (line: string) => console.log(`[start] ${line}`);

/** nats-server must exist: run scripts/ensure-nats-server.sh (installs it when root) if it does not. */
function ensureNatsServer(): void {
  try {
    findNatsServer();
    return;
  } catch {
    say('nats-server not found: running scripts/ensure-nats-server.sh');
  }
  const r = spawnSync('bash', [join(ROOT, 'scripts/ensure-nats-server.sh')], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error('nats-server is required (see the message above)');
  findNatsServer();
}

async function waitForLeader(client: ClusterClient, members: number, timeoutMs: number): Promise<MemberStatus | null> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    try {
      const all = await client.status();
      const leaders = all.filter((s) => s.role === 'leader');
      if (all.length >= members && leaders.length === 1 && all.every((s) => s.leader === leaders[0]!.id)) return leaders[0]!;
    } catch {
      // no member answers yet
    }
    await new Promise((r) => setTimeout(r, 100)); // polling period while members boot
  }
  return null;
}

async function startDashboard(o: StartOptions, client: ClusterClient, local: LocalCluster): Promise<Dashboard> {
  const common = {
    client, local, cluster: local.cluster, natsUrls: local.nats.urls, host: o.host,
    logDir: join(resolve(o.dir), 'logs'), memberIds: local.members.map((m) => m.id),
  };
  if (o.port !== undefined) return Dashboard.start({ ...common, port: o.port });
  try {
    return await Dashboard.start({ ...common, port: 8080 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    say('port 8080 is taken: using a free port');
    return Dashboard.start({ ...common, port: 0 });
  }
}

export async function start(o: StartOptions): Promise<{ stop(): Promise<void>; dashboard: Dashboard; local: LocalCluster; demo: DemoServers | null }> {
  ensureNatsServer();
  say(`${o.fresh ? 'fresh start: wiping' : 'data in'} ${resolve(o.dir)}`);
  const local = await startLocalCluster({ dir: o.dir, fresh: o.fresh, members: o.members, memberArgs: ['--allow-fault-injection'], logLevel: 'info' });
  let client: ClusterClient | null = null;
  let dashboard: Dashboard | null = null;
  let demo: DemoServers | null = null;
  const stop = async () => {
    await demo?.stop().catch(() => {}); // first: they deregister through the cluster
    await dashboard?.stop().catch(() => {});
    await client?.close().catch(() => {});
    // A paused member cannot handle SIGTERM: let it run so it stops cleanly.
    for (const m of local.members) if (m.running) m.resume();
    await local.stop();
  };
  try {
    say(`NATS: ${local.nats.urls.join(', ')}`);
    say(`members: ${local.members.map((m) => `${m.id} (pid ${m.pid})`).join(', ')}`);
    client = await ClusterClient.connect({ ...local.clientOptions(), requestTimeoutMs: 1000, outboxDir: join(resolve(o.dir), 'dashboard-outbox') });
    const leader = await waitForLeader(client, o.members, o.leaderTimeoutMs);
    say(leader ? `leader: ${leader.id} (term ${leader.term})` : `no leader within ${o.leaderTimeoutMs} ms; the dashboard shows why (member logs in ${join(resolve(o.dir), 'logs')})`);
    dashboard = await startDashboard(o, client, local);
    if (leader) {
      demo = await startDemoServers({ local, count: o.members, logDir: join(resolve(o.dir), 'logs') });
      for (const f of demo.failures) say(`demo server failed: ${f}`);
    } else say('no leader: not starting the demo servers');
    return { stop, dashboard, local, demo };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The banner's lines for the demo Workbench servers (one per member). */
function demoLines(demo: { servers: { name: string; pid?: number }[]; urls: string[] } | null): string {
  if (!demo) return '';
  return demo.servers.map((s, i) => `  workbench   ${demo.urls[i] ? `${demo.urls[i]}/api/notebook` : '(failed to start)'}   (demo server ${s.name}, pid ${s.pid})\n`).join('');
}

export async function runStart(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  const o: StartOptions = {
    dir: (flags.dir as string | undefined) ?? join(ROOT, 'data/local'),
    fresh: flags.fresh === true || flags.fresh === 'true',
    port: flags.port !== undefined ? Number(flags.port) : undefined,
    host: (flags.host as string | undefined) ?? '127.0.0.1',
    members: flags.members !== undefined ? Number(flags.members) : 3,
    leaderTimeoutMs: 30_000,
  };
  if (o.port !== undefined && !(Number.isInteger(o.port) && o.port >= 0 && o.port < 65536)) throw new Error(`--port must be a port number, got ${String(flags.port)}`);
  if (!(Number.isInteger(o.members) && o.members >= 1 && o.members <= 7)) throw new Error(`--members must be 1..7, got ${String(flags.members)}`);

  let stopping: Promise<void> | null = null;
  let running: Awaited<ReturnType<typeof start>> | null = null;
  const done = new Promise<number>((resolveDone) => {
    let firstSignalAt = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // One Ctrl-C can arrive several times (the terminal signals the whole process group and
        // npm and tsx forward it too): only a later, separate press means "now".
        if (performance.now() - firstSignalAt < 1500) return;
        // Second signal: do not wait for clean shutdowns.
        say(`${signal} again: killing everything now`);
        running?.demo?.kill9();
        if (running) for (const m of running.local.members) m.child?.kill('SIGKILL');
        void running?.local.nats.stop();
        process.exit(130);
      }
      firstSignalAt = performance.now();
      say(`${signal}: stopping the demo servers, the dashboard, the members and NATS (data kept in ${resolve(o.dir)})`);
      stopping = (running ? running.stop() : Promise.resolve()).then(() => {
        say('stopped');
        resolveDone(0);
      }, (err) => {
        console.error(`[start] stop failed: ${(err as Error).message}`);
        resolveDone(1);
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  running = await start(o);
  if (stopping) {
    // A signal arrived while starting: stop what started.
    await running.stop();
  } else {
    const url = running.dashboard.url;
    console.log(`
  dashboard   ${url}
  metrics     ${url}metrics
  REST        ${url}api/v1/cluster/nodes   ${url}api/v1/cluster/address
${demoLines(running.demo)}  NATS        ${running.local.nats.urls.join(',')}
  CLI         npx tsx src/cli.ts status --nats ${running.local.nats.urls.join(',')} --nats-credentials ${running.local.credentialsFile}
  data, logs  ${resolve(o.dir)}   (kept for the next start; --fresh wipes them)

  Ctrl-C stops everything.
`);
  }
  return done;
}
