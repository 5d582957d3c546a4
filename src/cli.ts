/**
 * submarine-cluster CLI.
 *   node      run one cluster member (config from flags, env, JSON, site XML)
 *   kv        put | get | del | ls | watch against a running cluster
 *   status    members, roles, term, commit/applied index
 *   members   add | remove | transfer-leader
 *   sim       the deterministic simulator demo (a cluster under faults, with a trace)
 *   start     a live local cluster (3 NATS servers, 3 members) with the dashboard (npm start)
 *   dashboard the dashboard alone, read-only, against a running cluster
 *   chart     export a state chart drawn from machines/ (svg, mermaid, json, dot)
 *   demo-server  a demo Workbench server with interpreter processes (src/demo/server.ts; npm start runs one per member)
 *   broker    this host's server of a multi-host NATS broker, from nats.conf (src/nats/broker-command.ts)
 *   certs     a CA and per-host keys and certificates for TLS (src/nats/tls.ts, Debian's openssl)
 * Every client command takes --nats URL[,URL] --cluster NAME and credentials
 * (--nats-credentials FILE written by the project's NATS launcher, or --nats-user/--nats-pass),
 * prints JSON with --json, and exits non-zero on failure.
 */
import { ClusterClient } from './client.ts';
import { ConfigError, natsCredentials, natsTlsFromFlags, parseFlags } from './config.ts';
import { BROKER_USAGE } from './nats/broker-command.ts';

const USAGE = `usage: submarine-cluster <command> [flags]
  node --id ID --peers ID,ID,ID --nats URL[,URL] --data-dir DIR [--cluster NAME] [--join] [--allow-fault-injection]
  kv put KEY VALUE | kv get KEY [--stale] | kv del KEY | kv ls [PREFIX] [--stale] [--limit N] [--after KEY] | kv watch [PREFIX]
  status [--member ID]
  members add ID | members remove ID | members transfer-leader ID
  sim [--seed N]
  start [--fresh] [--port N] [--host H] [--dir DIR] [--members N]
  dashboard [--port N] [--host H] [--log-dir DIR]   (plus client flags; read-only)
  chart <machine> [--format svg|mermaid|json|dot] [--state VALUE] [--compact] [--direction LR|TB] [--out FILE]
  demo-server --name 127.0.0.1:PORT [--port PORT] [--interpreters python,r] [--index N]   (plus client flags)
  ${BROKER_USAGE}
  certs --hosts H1,H2,H3 [--ips IP1,IP2,IP3] [--localhost] [--days N] --out DIR
client flags: --nats URL[,URL] --cluster NAME --nats-credentials FILE | --nats-user U --nats-pass P,
  --nats-ca FILE [--nats-cert FILE --nats-key FILE] (TLS; tls:// URLs), --insecure, --json`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'node':
      return (await import('./member-main.ts')).runNode(rest);
    case 'kv':
    case 'status':
    case 'members':
      return runClientCommand(cmd, rest);
    case 'sim':
    case 'demo':
      return runSim(rest);
    case 'start':
      return (await import('./start.ts')).runStart(rest);
    case 'dashboard':
      return (await import('./dashboard/server.ts')).runDashboardCommand(rest);
    case 'chart':
      return (await import('./chart.ts')).runChartCommand(rest);
    case 'demo-server':
      return (await import('./demo/server.ts')).runDemoServer(rest);
    case 'broker':
      return (await import('./nats/broker-command.ts')).runBrokerCommand(rest);
    case 'certs':
      return runCerts(rest);
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${cmd}'`);
  }
}

async function runClientCommand(cmd: string, argv: string[]): Promise<number> {
  const { positional, flagArgs } = splitArgs(argv);
  const flags = parseFlags(flagArgs);
  const json = flags.json === true;
  const nats = String(flags.nats ?? process.env.SUBMARINE_NATS ?? 'nats://127.0.0.1:4222').split(',');
  const creds = natsCredentials((flags['nats-credentials'] as string | undefined) ?? process.env.SUBMARINE_NATS_CREDENTIALS, 'client');
  const tls = natsTlsFromFlags(flags, process.env);
  const client = await ClusterClient.connect({
    insecure: flags.insecure === true,
    nats, cluster: (flags.cluster as string | undefined) ?? process.env.SUBMARINE_CLUSTER_NAME,
    user: (flags['nats-user'] as string | undefined) ?? creds?.user, pass: (flags['nats-pass'] as string | undefined) ?? creds?.pass,
    ...(tls ? { tls } : {}),
  });
  const out = (v: unknown, text: string) => console.log(json ? JSON.stringify(v) : text);
  const consistency = flags.stale === true ? 'stale' : 'linearizable';
  try {
    const [sub, a, b] = cmd === 'status' ? ['status', ...positional] : positional;
    switch (`${cmd} ${sub}`) {
      case 'kv put': {
        need(a, 'KEY'); need(b, 'VALUE');
        const r = await client.put(a!, b!);
        out(r, `OK revision ${r.revision}`);
        return 0;
      }
      case 'kv get': {
        need(a, 'KEY');
        const r = await client.get(a!, { consistency });
        out(r, r.kv ? String(typeof r.kv.value === 'string' ? r.kv.value : JSON.stringify(r.kv.value)) : '(not found)');
        return r.kv ? 0 : 1;
      }
      case 'kv del': {
        need(a, 'KEY');
        const r = await client.delete(a!);
        out(r, `deleted ${r.deleted ?? 0}`);
        return 0;
      }
      case 'kv ls': {
        const limit = flags.limit === undefined ? undefined : /^[0-9]+$/.test(String(flags.limit)) ? Number(flags.limit) : NaN;
        if (limit !== undefined && !(limit >= 1)) throw new UsageError(`--limit must be a positive integer, got '${String(flags.limit)}'`);
        if (flags.after !== undefined && typeof flags.after !== 'string') throw new UsageError('--after needs a KEY');
        const after = flags.after as string | undefined;
        const r = await client.list(a ?? '', { consistency, limit, after });
        const lines = r.kvs.map((kv) => `${kv.key}\t${typeof kv.value === 'string' ? kv.value : JSON.stringify(kv.value)}`);
        if (r.more) lines.push(`# more keys: --after ${JSON.stringify(r.kvs.at(-1)?.key ?? after ?? '')}`);
        out(r, lines.join('\n'));
        return 0;
      }
      case 'kv watch': {
        const w = await client.watch(a ?? '', {
          onEvent: (ev) => out(ev, `${ev.revision} ${ev.type} ${ev.kv.key}${ev.type === 'put' ? ` ${JSON.stringify(ev.kv.value)}` : ''}`),
        });
        await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
        await w.close();
        return 0;
      }
      case 'status status': {
        const all = await client.status(flags.member as string | undefined);
        out(all, all.map((s) => `${s.id}\t${s.role}\tterm ${s.term}\tcommit ${s.commitIndex}\tapplied ${s.appliedIndex}\trevision ${s.revision}`).join('\n'));
        return 0;
      }
      case 'members add':
        need(a, 'ID');
        await client.addMember(a!);
        out({ ok: true }, `added ${a}`);
        return 0;
      case 'members remove':
        need(a, 'ID');
        await client.removeMember(a!);
        out({ ok: true }, `removed ${a}`);
        return 0;
      case 'members transfer-leader':
        need(a, 'ID');
        await client.transferLeader(a!);
        out({ ok: true }, `leadership transfer to ${a} started`);
        return 0;
      default:
        throw new UsageError(`unknown subcommand '${cmd} ${sub ?? ''}'`);
    }
  } catch (err) {
    if (json) console.log(JSON.stringify({ ok: false, error: { name: (err as Error).name, message: (err as Error).message } }));
    throw err;
  } finally {
    await client.close();
  }
}

const BOOL_FLAGS = new Set(['--json', '--stale', '--insecure']);

/** Separates positional words from flags; a flag takes the next word unless it is boolean or has `=`. */
function splitArgs(argv: string[]): { positional: string[]; flagArgs: string[] } {
  const positional: string[] = [];
  const flagArgs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) positional.push(a);
    else if (BOOL_FLAGS.has(a) || a.includes('=') || i + 1 >= argv.length) flagArgs.push(a);
    else flagArgs.push(a, argv[++i]!);
  }
  return { positional, flagArgs };
}

function need(v: string | undefined, what: string): void {
  if (v === undefined) throw new UsageError(`missing ${what}`);
}

async function runCerts(argv: string[]): Promise<number> {
  const flags = parseFlags(argv);
  const known = ['hosts', 'ips', 'localhost', 'days', 'out', 'json'];
  for (const k of Object.keys(flags)) if (!known.includes(k)) throw new UsageError(`certs: unknown flag --${k}`);
  const list = (k: string): string[] => (typeof flags[k] === 'string' ? (flags[k] as string).split(',').map((s) => s.trim()).filter(Boolean) : []);
  if (typeof flags.out !== 'string') throw new UsageError('certs: --out DIR is required');
  if (list('hosts').length === 0) throw new UsageError('certs: --hosts H1,H2,... is required');
  if (flags.days !== undefined && !/^[1-9][0-9]{0,4}$/.test(String(flags.days))) throw new UsageError('certs: --days must be a positive integer');
  const { makeCerts } = await import('./nats/tls.ts');
  const made = makeCerts({
    hosts: list('hosts'), ips: list('ips'), localhost: flags.localhost === true, out: flags.out,
    ...(flags.days !== undefined ? { days: Number(flags.days) } : {}),
  });
  if (flags.json === true) console.log(JSON.stringify(made));
  else {
    console.log(`${made.reusedCa ? 'reused' : 'new'} CA: ${made.ca} (key ${made.caKey}: keep it off the hosts)`);
    for (const h of made.hosts) console.log(`${h.host}: ${h.cert} ${h.key}  [${h.names.join(', ')}]`);
  }
  return 0;
}

async function runSim(argv: string[]): Promise<number> {
  const i = argv.indexOf('--seed');
  const seed = i >= 0 ? Number(argv[i + 1]) : 1;
  console.log(`deterministic simulator: a 3-5 member Raft cluster under faults (seed ${seed})\n`);
  const { runSimulation } = await import('./sim/sim.ts');
  const r = await runSimulation({ seed, trace: (l) => console.log(l) });
  console.log(`\n${r.ok ? 'all invariants held' : `FAILED: ${r.error}`}`);
  console.log(JSON.stringify(r));
  return r.ok ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    const e = err as Error;
    console.error(`submarine-cluster: ${e instanceof UsageError ? `${e.message}\n${USAGE}` : `${e.name}: ${e.message}`}`);
    process.exit(e instanceof UsageError || e instanceof ConfigError || e.name === 'InsecureTransportError' ? 2 : 1);
  },
);
