/**
 * `submarine-cluster broker`: this host's server of a multi-host broker, from the project's
 * nats.conf, in the foreground until SIGTERM/SIGINT.
 *
 *   broker --name N --listen HOST:PORT --cluster-listen HOST:PORT --routes HOST:PORT,HOST:PORT
 *          --credentials FILE|DIR [--tls DIR] [--advertise HOST:PORT] [--cluster-advertise HOST:PORT]
 *          [--http HOST:PORT] [--verify-clients] [--insecure] [--dry-run]
 *
 * --tls DIR holds ca.crt and this server's <N>.crt / <N>.key (as `submarine-cluster certs` writes
 * them): clients then need tls:// and the CA, and routes check each other's certificates and host
 * names. Without --tls, a listener on anything but loopback is refused unless --insecure: the
 * original's Raft port took unauthenticated traffic from the network (CVE-2024-41169), and a
 * broker in clear text across hosts would hand out the same (passwords, Raft traffic).
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, parseFlags } from '../config.ts';
import { DEFAULT_CONF_PATH, findNatsServer, hostPort, natsServerLaunch, OrphanGuard, type NatsServerSpec } from './broker.ts';
import { loadOrCreateCredentials } from './credentials.ts';
import { ensureRouteCert } from './tls.ts';
import { isLoopbackHost } from './transport-policy.ts';

export { isLoopbackHost };

export const BROKER_USAGE = `broker --name N --listen HOST:PORT --cluster-listen HOST:PORT --routes HOST:PORT[,HOST:PORT] --credentials FILE|DIR
       [--tls DIR] [--advertise HOST:PORT] [--cluster-advertise HOST:PORT] [--http HOST:PORT] [--verify-clients] [--insecure] [--dry-run]`;

const KNOWN = ['name', 'listen', 'cluster-listen', 'routes', 'credentials', 'tls', 'advertise', 'cluster-advertise', 'http', 'verify-clients', 'insecure', 'dry-run', 'conf'];
const BOOLEAN = ['verify-clients', 'insecure', 'dry-run'];

function splitHostPort(raw: string, flag: string): { host: string; port: number } {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) throw new ConfigError(`--${flag}`, `flag --${flag}`, `'${raw}' is not HOST:PORT (IPv6 in brackets)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export interface BrokerPlan {
  spec: NatsServerSpec;
  confPath: string;
  credentialsFile: string;
  /** Non-fatal findings, printed at start. */
  warnings: string[];
}

/**
 * Reads and checks the flags without starting anything (nothing is bound): the refusal of a
 * non-loopback listener without TLS happens here. Reads (or creates) the credentials file and,
 * without --tls, the shared route certificate next to it.
 */
export function planBroker(argv: string[]): BrokerPlan {
  const flags = parseFlags(argv);
  for (const k of Object.keys(flags)) if (!KNOWN.includes(k)) throw new ConfigError(`--${k}`, `flag --${k}`, `unknown flag (known: --${KNOWN.join(', --')})`);
  const str = (k: string, required: boolean): string | undefined => {
    const v = flags[k];
    if (v === undefined) {
      if (required) throw new ConfigError(`--${k}`, `flag --${k}`, 'is required');
      return undefined;
    }
    if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(`--${k}`, `flag --${k}`, 'needs a value');
    return v.trim();
  };
  for (const b of BOOLEAN) if (flags[b] !== undefined && flags[b] !== true) throw new ConfigError(`--${b}`, `flag --${b}`, 'takes no value');
  const name = str('name', true)!;
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) throw new ConfigError('--name', 'flag --name', `'${name}' must be 1-64 of A-Z a-z 0-9 . _ -`);
  const listen = splitHostPort(str('listen', true)!, 'listen');
  const clusterListen = splitHostPort(str('cluster-listen', true)!, 'cluster-listen');
  const routes = (str('routes', false) ?? '').split(',').map((r) => r.trim()).filter(Boolean).map((r) => splitHostPort(r, 'routes'));
  const advertise = str('advertise', false);
  const clusterAdvertise = str('cluster-advertise', false);
  if (advertise) splitHostPort(advertise, 'advertise');
  if (clusterAdvertise) splitHostPort(clusterAdvertise, 'cluster-advertise');
  const http = str('http', false);
  const httpHp = http ? splitHostPort(http, 'http') : null;
  const tlsDir = str('tls', false);
  const insecure = flags.insecure === true;
  const warnings: string[] = [];

  const exposed = [
    ['--listen', listen.host],
    ['--cluster-listen', clusterListen.host],
  ].filter(([, h]) => !isLoopbackHost(h!));
  if (exposed.length > 0 && !tlsDir) {
    const what = exposed.map(([f, h]) => `${f} ${h}`).join(', ');
    if (!insecure) {
      throw new ConfigError(
        exposed[0]![0]!, `flag ${exposed[0]![0]}`,
        `${what}: not loopback, and no --tls DIR was given: refusing to serve the broker in clear text to the network ` +
          '(passwords and Raft traffic readable and forgeable by anyone on the path; the original cluster\'s Raft port took unauthenticated ' +
          'traffic: CVE-2024-41169). Give --tls DIR (see `submarine-cluster certs`), or --insecure for a trusted test network.',
      );
    }
    warnings.push(`--insecure: ${what} is not loopback and clients connect without TLS; routes use the shared self-signed certificate without checking host names`);
  }
  if (flags['verify-clients'] === true && !tlsDir) throw new ConfigError('--verify-clients', 'flag --verify-clients', 'needs --tls DIR (the CA that signs client certificates)');
  if (httpHp && !isLoopbackHost(httpHp.host)) warnings.push(`--http ${http}: the monitoring endpoint has no authentication and is reachable from the network`);

  const credArg = resolve(str('credentials', true)!);
  const credentialsFile = existsSync(credArg) && statSync(credArg).isDirectory() ? join(credArg, 'credentials.json') : credArg;
  const credentials = loadOrCreateCredentials(credentialsFile);

  let clientTls: NatsServerSpec['clientTls'];
  let routeTls: NatsServerSpec['routeTls'];
  if (tlsDir) {
    const dir = resolve(tlsDir);
    const files = { ca: join(dir, 'ca.crt'), cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
    for (const [what, f] of Object.entries(files)) {
      if (!existsSync(f)) throw new ConfigError('--tls', 'flag --tls', `${f} (${what}) does not exist: --tls DIR needs ca.crt, ${name}.crt and ${name}.key (submarine-cluster certs --hosts ${name} --out DIR)`);
    }
    clientTls = { ...files, verifyClients: flags['verify-clients'] === true };
    routeTls = files;
  } else {
    // Every server of the broker must hold the same pair: it travels with credentials.json.
    const rc = ensureRouteCert(dirname(credentialsFile));
    routeTls = { cert: rc.cert, key: rc.key, ca: rc.cert, insecure: routes.some((r) => !isLoopbackHost(r.host)) };
  }
  const spec: NatsServerSpec = {
    name,
    host: listen.host,
    clientPort: listen.port,
    http: httpHp ? hostPort(httpHp.host, httpHp.port) : null,
    clusterHost: clusterListen.host,
    clusterPort: clusterListen.port,
    routes: routes.map((r) => hostPort(r.host, r.port)),
    credentials,
    routeTls,
  };
  if (clientTls) spec.clientTls = clientTls;
  if (advertise) spec.clientAdvertise = advertise;
  if (clusterAdvertise) spec.clusterAdvertise = clusterAdvertise;
  return { spec, confPath: resolve(str('conf', false) ?? DEFAULT_CONF_PATH), credentialsFile, warnings };
}

export async function runBrokerCommand(argv: string[]): Promise<number> {
  const plan = planBroker(argv);
  for (const w of plan.warnings) console.error(`submarine-cluster broker: warning: ${w}`);
  const { env, args } = natsServerLaunch(plan.spec, plan.confPath);
  const s = plan.spec;
  const summary = {
    name: s.name,
    listen: hostPort(s.host, s.clientPort),
    clusterListen: hostPort(s.clusterHost, s.clusterPort),
    routes: s.routes,
    advertise: s.clientAdvertise ?? null,
    clusterAdvertise: s.clusterAdvertise ?? null,
    http: s.http,
    clientTls: s.clientTls ? { cert: s.clientTls.cert, ca: s.clientTls.ca, verifyClients: s.clientTls.verifyClients === true } : null,
    routeTls: { cert: s.routeTls.cert, ca: s.routeTls.ca, insecure: s.routeTls.insecure === true },
    credentialsFile: plan.credentialsFile,
    conf: plan.confPath,
  };
  if (argv.includes('--dry-run')) {
    console.log(JSON.stringify(summary));
    return 0;
  }
  const bin = findNatsServer();
  const guard = new OrphanGuard();
  const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit'] });
  if (child.pid !== undefined) guard.add(child.pid);
  console.error(`submarine-cluster broker: ${JSON.stringify({ ...summary, pid: child.pid })}`);
  // nats-server shuts down the same way on SIGINT and SIGTERM but exits 1 after SIGTERM (measured,
  // 2.9.10) and 0 after SIGINT: a stop we were asked for is passed on as SIGINT, so it exits 0.
  const stop = () => child.kill('SIGINT');
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const code = await new Promise<number>((res) => {
    child.once('error', (err) => {
      console.error(`submarine-cluster broker: ${err.message}`);
      res(1);
    });
    child.once('exit', (c, sig) => res(c ?? (sig === 'SIGTERM' || sig === 'SIGINT' ? 0 : 1)));
  });
  guard.close();
  return code;
}
