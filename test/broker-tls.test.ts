/**
 * Multi-host broker pieces, tested on loopback: `certs` (a CA and host certificates from Debian's
 * openssl), `broker` (one host's server from nats.conf, routes over TLS with checked names), members
 * and clients over tls://, and the refusals of clear text off loopback (checked before anything
 * is bound or connected). Every process is ours, started on free ports and stopped by PID.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { natsConnectOptions } from '../actors/cluster-server.ts';
import { ClusterClient } from '../src/client.ts';
import { loadConfig, natsTlsOf } from '../src/config.ts';
import { freePorts } from '../src/nats/broker.ts';
import { planBroker } from '../src/nats/broker-command.ts';
import { loadOrCreateCredentials } from '../src/nats/credentials.ts';
import { makeCerts } from '../src/nats/tls.ts';
import { checkNatsTransport, isLoopbackHost } from '../src/nats/transport-policy.ts';

const CLI = new URL('../src/cli.ts', import.meta.url).pathname;

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'submarine-tls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Proc {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

/** `submarine-cluster <args>` as a child process; stopped (SIGTERM, then SIGKILL) by PID at teardown. */
function cli(t: ExecutionContext, args: string[]): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const late = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(late);
  });
  return { child, out: () => out, exited };
}

async function until<T>(what: string, probe: () => Promise<T | null | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => null);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: nothing after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

const routez = async (httpPort: number): Promise<{ num_routes: number; routes: { remote_id: string }[] } | null> => {
  const res = await fetch(`http://127.0.0.1:${httpPort}/routez`, { signal: AbortSignal.timeout(1000) });
  return res.ok ? ((await res.json()) as { num_routes: number; routes: { remote_id: string }[] }) : null;
};

test('certs: a CA and per-host certificates that verify against it, names as asked, keys 0600', async (t) => {
  const out = await tempDir(t);
  const made = makeCerts({ hosts: ['h1.example', 'h2.example'], ips: ['10.0.0.1', '10.0.0.2'], out });
  const ca = new X509Certificate(readFileSync(made.ca));
  t.true(ca.ca, 'the CA is a CA');
  t.is(statSync(made.caKey).mode & 0o777, 0o600);
  for (const [i, h] of made.hosts.entries()) {
    const cert = new X509Certificate(readFileSync(h.cert));
    t.true(cert.checkIssued(ca), `${h.host} issued by the CA`);
    t.true(cert.verify(ca.publicKey), `${h.host} signed by the CA's key`);
    t.false(cert.ca);
    t.is(statSync(h.key).mode & 0o777, 0o600, `${h.host}.key is 0600`);
    t.is(cert.subjectAltName, `DNS:h${i + 1}.example, IP Address:10.0.0.${i + 1}`, 'own name and own IP only (no localhost unless asked)');
    t.truthy(cert.checkHost(`h${i + 1}.example`));
    t.is(cert.checkHost(`h${2 - i}.example`), undefined, 'not valid for the other host');
    t.truthy(cert.checkIP(`10.0.0.${i + 1}`));
    t.is(cert.checkIP('127.0.0.1'), undefined);
    t.regex(cert.keyUsage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.1/, 'serverAuth');
    t.regex(cert.keyUsage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.2/, 'clientAuth (routes present it as clients)');
  }
  // A certificate from another CA does not verify against this one.
  const other = makeCerts({ hosts: ['h1.example'], out: join(out, 'other') });
  const foreign = new X509Certificate(readFileSync(other.hosts[0]!.cert));
  t.false(foreign.checkIssued(ca));
  t.false(foreign.verify(ca.publicKey));
  // Adding a host later reuses the CA; --localhost adds localhost and 127.0.0.1.
  const more = makeCerts({ hosts: ['h3.example'], localhost: true, out });
  t.true(more.reusedCa);
  const h3 = new X509Certificate(readFileSync(more.hosts[0]!.cert));
  t.true(h3.verify(ca.publicKey));
  t.is(h3.subjectAltName, 'DNS:h3.example, DNS:localhost, IP Address:127.0.0.1');
  t.throws(() => makeCerts({ hosts: ['a', 'b'], ips: ['10.0.0.1'], out }), { message: /one IP per host/ });
  t.throws(() => makeCerts({ hosts: ['bad host'], out }), { message: /neither a host name nor an IP/ });
});

test('the certs command writes the same files', async (t) => {
  const out = await tempDir(t);
  const p = cli(t, ['certs', '--hosts', 'a.example,b.example', '--localhost', '--out', out, '--json']);
  t.is(await p.exited, 0, p.out());
  const ca = new X509Certificate(readFileSync(join(out, 'ca.crt')));
  const b = new X509Certificate(readFileSync(join(out, 'b.example.crt')));
  t.true(b.verify(ca.publicKey));
  t.is(b.subjectAltName, 'DNS:b.example, DNS:localhost, IP Address:127.0.0.1');
  t.is(statSync(join(out, 'b.example.key')).mode & 0o777, 0o600);
});

test('clear text off loopback is refused before anything starts; --insecure lets it through', async (t) => {
  const dir = await tempDir(t);
  const creds = join(dir, 'credentials.json');
  const base = ['--name', 'n1', '--listen', '192.0.2.10:4222', '--cluster-listen', '192.0.2.10:6222', '--routes', '192.0.2.11:6222', '--credentials', creds];
  t.throws(() => planBroker(base), { message: /192\.0\.2\.10.*not loopback.*--tls.*CVE-2024-41169.*--insecure/s });
  t.throws(() => planBroker(['--name', 'n1', '--listen', '127.0.0.1:4222', '--cluster-listen', '0.0.0.0:6222', '--credentials', creds]), { message: /--cluster-listen 0\.0\.0\.0/ });
  const plan = planBroker([...base, '--insecure']);
  t.is(plan.spec.host, '192.0.2.10');
  t.is(plan.spec.clientTls, undefined);
  t.true(plan.spec.routeTls.insecure, 'routes to other hosts cannot check the shared certificate\'s names');
  // Loopback needs neither.
  t.notThrows(() => planBroker(['--name', 'n1', '--listen', '127.0.0.1:4222', '--cluster-listen', 'localhost:6222', '--credentials', creds]));

  // The command itself: exit 2 and the reason, without binding (192.0.2.10 is not ours to bind).
  const refused = cli(t, ['broker', ...base]);
  t.is(await refused.exited, 2);
  t.regex(refused.out(), /not loopback, and no --tls DIR was given.*CVE-2024-41169/s);
  const dry = cli(t, ['broker', ...base, '--insecure', '--dry-run']);
  t.is(await dry.exited, 0, dry.out());
  t.regex(dry.out(), /"listen":"192\.0\.2\.10:4222"/);

  // Members and clients: URLs that leave the host must be tls://.
  t.true(isLoopbackHost('127.0.0.1') && isLoopbackHost('localhost') && isLoopbackHost('::1'));
  t.false(isLoopbackHost('0.0.0.0') || isLoopbackHost('10.0.0.1') || isLoopbackHost('n1.example'));
  t.throws(() => checkNatsTransport(['nats://127.0.0.1:4222', 'nats://n2.example:4222']), { message: /'nats:\/\/n2\.example:4222' is not on loopback and not tls:\/\/.*--insecure/s });
  t.notThrows(() => checkNatsTransport(['tls://n2.example:4222']));
  t.notThrows(() => checkNatsTransport(['nats://n2.example:4222'], { insecure: true }));
  await t.throwsAsync(ClusterClient.connect({ nats: ['nats://192.0.2.10:4222'] }), { name: 'InsecureTransportError' });

  const member = cli(t, ['node', '--id', 'a', '--peers', 'a', '--nats', 'nats://192.0.2.10:4222', '--data-dir', join(dir, 'm')]);
  t.is(await member.exited, 2);
  t.regex(member.out(), /NATS server URL 'nats:\/\/192\.0\.2\.10:4222' is not on loopback and not tls:\/\//);
  // With --insecure it goes on to connect (and keeps trying: nothing answers at 192.0.2.10).
  const lenient = cli(t, ['node', '--id', 'a', '--peers', 'a', '--nats', 'nats://192.0.2.10:4222', '--data-dir', join(dir, 'm2'), '--insecure', '--log-level', 'warn']);
  const early = await Promise.race([lenient.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 4000))]);
  t.is(early, 'running', lenient.out());
  t.notRegex(lenient.out(), /InsecureTransportError/);
});

test('a TLS broker of three `broker` servers: routes over TLS, a member and a client over tls://, no CA or a wrong name refused', async (t) => {
  const dir = await tempDir(t);
  const certs = join(dir, 'certs');
  const names = ['n0', 'n1', 'n2'];
  makeCerts({ hosts: names, localhost: true, out: certs });
  const credFile = join(dir, 'credentials.json');
  const creds = loadOrCreateCredentials(credFile);
  const ports = await freePorts(9);
  const client = (i: number) => ports[i * 3]!;
  const route = (i: number) => ports[i * 3 + 1]!;
  const http = (i: number) => ports[i * 3 + 2]!;
  const servers = names.map((n, i) =>
    cli(t, [
      'broker', '--name', n, '--listen', `127.0.0.1:${client(i)}`, '--cluster-listen', `127.0.0.1:${route(i)}`,
      // Routes by name: each server checks that the one it dials holds a certificate for "localhost".
      '--routes', names.map((_, j) => j).filter((j) => j !== i).map((j) => `localhost:${route(j)}`).join(','),
      '--advertise', `localhost:${client(i)}`, '--http', `127.0.0.1:${http(i)}`, '--credentials', credFile, '--tls', certs,
    ]),
  );
  for (const [i] of names.entries()) {
    await until(`${names[i]} routed to both others`, async () => (await routez(http(i)))?.num_routes === 2, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${servers.map((s) => s.out()).join('\n---\n')}`);
    });
  }
  const varz = (await (await fetch(`http://127.0.0.1:${http(0)}/varz`)).json()) as { tls_required: boolean; cluster: { tls_required: boolean; tls_verify: boolean }; connect_urls: string[] };
  t.true(varz.tls_required, 'clients must use TLS');
  t.true(varz.cluster.tls_required && varz.cluster.tls_verify, 'routes use TLS and check each other');
  t.deepEqual([...varz.connect_urls].sort(), names.map((_, i) => `localhost:${client(i)}`).sort(), 'clients learn the advertised addresses');

  const ca = join(certs, 'ca.crt');
  const urls = names.map((_, i) => `tls://localhost:${client(i)}`);
  // Connections as members and clients make them (natsConnectOptions), but failing at once.
  const once = (servers: string[], tls?: { caFile: string }) =>
    connect({ ...natsConnectOptions(servers, 'probe', creds.client.user, creds.client.pass, tls), waitOnFirstConnect: false, reconnect: false, maxReconnectAttempts: 0, timeout: 3000 });
  // Without the CA the server's certificate is unknown: refused, saying so.
  const noCa = await t.throwsAsync(once([urls[0]!]));
  t.regex(`${(noCa as Error & { code?: string }).code} ${noCa!.message}`, /certificate|VERIFY/i);
  // A plain client is turned away too (the server requires TLS).
  await t.throwsAsync(connect({ servers: `nats://127.0.0.1:${client(0)}`, user: creds.client.user, pass: creds.client.pass, reconnect: false, timeout: 3000 }));

  // One member over tls:// (a one-voter cluster), then a client through another server.
  const member = cli(t, [
    'node', '--id', 'm1', '--peers', 'm1', '--nats', urls.join(','), '--nats-ca', ca, '--nats-credentials', credFile,
    '--data-dir', join(dir, 'm1'), '--log-level', 'warn',
  ]);
  // connect() waits for a first connection forever (members and clients outlive broker restarts): bound it here.
  const c = await within(20_000, 'a client connection over tls://', ClusterClient.connect({ nats: [urls[1]!], tls: { caFile: ca }, user: creds.client.user, pass: creds.client.pass, quorumWaitMs: 20_000 }));
  t.teardown(() => c.close());
  const put = await until('a write through the TLS broker', async () => c.put('k', 'over tls'), 30_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${member.out()}`);
  });
  t.true(put.ok);
  t.is((await c.get('k')).kv?.value, 'over tls');
  t.is(c.nc.info?.tls_required, true, 'the client connection is TLS');
  // The CLI client as a user would run it.
  const get = cli(t, ['kv', 'get', 'k', '--nats', urls[2]!, '--nats-ca', ca, '--nats-credentials', credFile]);
  t.is(await get.exited, 0, get.out());
  t.regex(get.out(), /over tls/);

  // A server whose certificate names another host: the client checks the name and refuses.
  const other = join(dir, 'other');
  makeCerts({ hosts: ['elsewhere.example'], out: other });
  const [wp, wr] = await freePorts(2);
  // It also holds the route password and dials n0's route port: its certificate is from another CA.
  const wrong = cli(t, ['broker', '--name', 'elsewhere.example', '--listen', `127.0.0.1:${wp}`, '--cluster-listen', `127.0.0.1:${wr}`, '--routes', `localhost:${route(0)}`, '--credentials', credFile, '--tls', other]);
  const misnamed = await until('the misnamed server to answer', async () => {
    try {
      const nc = await once([`tls://localhost:${wp}`], { caFile: join(other, 'ca.crt') });
      await nc.close();
      return { accepted: true as const, message: '' };
    } catch (err) {
      const e = err as Error & { code?: string };
      return /ECONNREFUSED|CONNECTION_REFUSED/.test(`${e.code} ${e.message}`) ? null : { accepted: false as const, message: `${e.code} ${e.message}` };
    }
  }, 20_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${wrong.out()}`);
  });
  t.false(misnamed.accepted, 'a certificate for elsewhere.example is not accepted for localhost');
  t.regex(misnamed.message, /ALTNAME|does not match|altnames/i);
  await until('the foreign route to be refused', async () => /TLS route handshake error.*certificate/.test(wrong.out()));
  t.is((await routez(http(0)))?.num_routes, 2, 'n0 is routed to n1 and n2 only');

  // Stopping a broker by SIGTERM stops its nats-server.
  servers[2]!.child.kill('SIGTERM');
  t.is(await servers[2]!.exited, 0);
  await until('n0 to lose its route to n2', async () => (await routez(http(0)))?.num_routes === 1);
});

test('config: the CA and client certificate from flags, environment, JSON and site XML', async (t) => {
  const dir = await tempDir(t);
  const base = ['--id', 'a', '--peers', 'a', '--nats', 'tls://n1.example:4222'];
  t.is(loadConfig({ argv: [...base, '--nats-ca', '/etc/ca.crt'], env: {}, cwd: dir }).natsCaFile, '/etc/ca.crt');
  const env = loadConfig({ argv: base, env: { SUBMARINE_NATS_CA: '/e/ca.crt', SUBMARINE_NATS_CERT: '/e/c.crt', SUBMARINE_NATS_KEY: '/e/c.key' }, cwd: dir });
  t.deepEqual(natsTlsOf(env), { caFile: '/e/ca.crt', certFile: '/e/c.crt', keyFile: '/e/c.key' });
  await writeFile(join(dir, 'c.json'), JSON.stringify({ natsCaFile: '/j/ca.crt' }));
  t.is(loadConfig({ argv: [...base, '--config', join(dir, 'c.json')], env: {}, cwd: dir }).natsCaFile, '/j/ca.crt');
  await writeFile(join(dir, 's.xml'), '<configuration><property><name>submarine.cluster.nats.ca</name><value>/x/ca.crt</value></property></configuration>');
  t.is(loadConfig({ argv: [...base, '--site-xml', join(dir, 's.xml')], env: {}, cwd: dir }).natsCaFile, '/x/ca.crt');
  t.throws(() => loadConfig({ argv: [...base, '--nats-cert', '/c.crt'], env: {}, cwd: dir }), { message: /needs its key/ });
  // A tls:// URL turns TLS on in the connect options even without a CA (the system's CAs then).
  t.deepEqual(natsConnectOptions(['tls://n1.example:4222'], 'x').tls, {});
  t.is(natsConnectOptions(['nats://127.0.0.1:4222'], 'x').tls, undefined);
  t.deepEqual(natsConnectOptions(['nats://127.0.0.1:4222'], 'x', undefined, undefined, { caFile: '/ca' }).tls, { caFile: '/ca' });
});

test('--verify-clients: a client certificate signed by the CA is required', async (t) => {
  const dir = await tempDir(t);
  const certs = join(dir, 'certs');
  makeCerts({ hosts: ['b0', 'c1'], localhost: true, out: certs });
  const credFile = join(dir, 'credentials.json');
  const creds = loadOrCreateCredentials(credFile);
  const [cp, rp] = await freePorts(2);
  const broker = cli(t, ['broker', '--name', 'b0', '--listen', `127.0.0.1:${cp}`, '--cluster-listen', `127.0.0.1:${rp}`, '--credentials', credFile, '--tls', certs, '--verify-clients']);
  const ca = join(certs, 'ca.crt');
  const once = (tls: { caFile: string; certFile?: string; keyFile?: string }) =>
    connect({ ...natsConnectOptions([`tls://localhost:${cp}`], 'probe', creds.client.user, creds.client.pass, tls), waitOnFirstConnect: false, reconnect: false, maxReconnectAttempts: 0, timeout: 3000 });
  const nc = await until('a connection with a client certificate', async () => once({ caFile: ca, certFile: join(certs, 'c1.crt'), keyFile: join(certs, 'c1.key') }), 20_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${broker.out()}`);
  });
  t.is(nc.info?.tls_required, true);
  await nc.close();
  await t.throwsAsync(once({ caFile: ca }), undefined, 'no client certificate: refused');
});
