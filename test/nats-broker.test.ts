import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, Events, type ConnectionOptions, type NatsConnection, type Status } from 'nats';
import { NatsStartError, startNatsCluster, type NatsCluster } from '../src/nats/broker.ts';
import { ClusterClient } from '../src/client.ts';
import { decodeEnvelope, encodeEnvelope } from '../src/codec.ts';
import { TimeoutError } from '../src/errors.ts';
import { subjects } from '../src/nats/subjects.ts';
import {
  CredentialsFileError,
  generateCredentials,
  loadOrCreateCredentials,
  type NatsCredentials,
  type UserPass,
} from '../src/nats/credentials.ts';

const REPO = new URL('..', import.meta.url).pathname;
const enc = new TextEncoder();
const dec = new TextDecoder();

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'submarine-nats-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function startCluster(t: ExecutionContext, creds = generateCredentials(), size = 3): Promise<{ c: NatsCluster; creds: NatsCredentials }> {
  const c = await startNatsCluster({ dir: await tempDir(t), credentials: creds, size });
  t.teardown(() => c.stop());
  return { c, creds };
}

async function nats(t: ExecutionContext, servers: string | string[], who: UserPass | null, extra: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  const nc = await connect({ servers, ...(who ? { user: who.user, pass: who.pass } : {}), ...extra });
  t.teardown(() => nc.close());
  return nc;
}

/** True while the pid names a process that has not exited (a zombie has exited). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Records what a subscription receives; waitFor resolves on arrival, not by polling. */
class Inbox {
  readonly got: { subject: string; data: string }[] = [];
  private waiters: { pred: (m: { subject: string; data: string }) => boolean; res: () => void }[] = [];
  readonly errors: Error[] = [];

  constructor(nc: NatsConnection, subject: string) {
    nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          this.errors.push(err);
          return;
        }
        const m = { subject: msg.subject, data: dec.decode(msg.data) };
        this.got.push(m);
        this.waiters = this.waiters.filter((w) => (w.pred(m) ? (w.res(), false) : true));
      },
    });
  }

  waitFor(pred: (m: { subject: string; data: string }) => boolean, timeoutMs: number): Promise<boolean> {
    if (this.got.some(pred)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      const waiter = { pred, res: () => (clearTimeout(timer), resolve(true)) };
      this.waiters.push(waiter);
    });
  }
}

/**
 * Subscription interest crosses routes asynchronously, so a first message can be published before
 * the remote server knows about the subscriber: publish again until it arrives.
 */
async function publishUntilReceived(pub: NatsConnection, subject: string, inbox: Inbox, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const data = `probe-${Math.random()}`;
  for (;;) {
    pub.publish(subject, enc.encode(data));
    if (await inbox.waitFor((m) => m.subject === subject && m.data === data, 100)) return;
    if (Date.now() > deadline) throw new Error(`${subject}: nothing delivered within ${timeoutMs}ms`);
  }
}

/** Collects a connection's status events from now on. */
function statuses(nc: NatsConnection): { seen: Status[]; waitFor(pred: (s: Status) => boolean, timeoutMs?: number): Promise<Status> } {
  const seen: Status[] = [];
  const waiters: { pred: (s: Status) => boolean; res: (s: Status) => void }[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      seen.push(s);
      for (const w of [...waiters]) if (w.pred(s)) (waiters.splice(waiters.indexOf(w), 1), w.res(s));
    }
  })();
  return {
    seen,
    waitFor(pred, timeoutMs = 10_000) {
      const found = seen.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no matching status within ${timeoutMs}ms; saw ${JSON.stringify(seen)}`)), timeoutMs);
        waiters.push({ pred, res: (s) => (clearTimeout(timer), res(s)) });
      });
    },
  };
}

const port = (url: string) => Number(new URL(url).port);
const serverPort = (nc: NatsConnection) => Number(nc.getServer().split(':').pop());

test('a 3-server cluster starts, fully routed, and carries messages between servers', async (t) => {
  const m = /^max_payload:\s*(\d+)MB\s*$/m.exec(readFileSync(join(REPO, 'nats.conf'), 'utf8'));
  t.truthy(m, 'nats.conf sets max_payload in MB');
  const confMaxPayload = Number(m![1]) * 1024 * 1024;
  const t0 = Date.now();
  const { c, creds } = await startCluster(t);
  t.log(`cluster ready in ${Date.now() - t0}ms`);

  t.is(c.urls.length, 3);
  t.is(new Set(c.servers.flatMap((s) => [s.clientPort, s.clusterPort, s.httpPort])).size, 9);
  for (const [i, s] of c.servers.entries()) {
    t.is(s.url, `nats://127.0.0.1:${s.clientPort}`);
    t.is(c.urls[i], s.url);
    t.true(s.running && alive(s.pid));
    const routez = (await (await fetch(`http://127.0.0.1:${s.httpPort}/routez`)).json()) as { routes: { remote_id: string }[] };
    t.is(new Set(routez.routes.map((r) => r.remote_id)).size, 2, `${s.name} has routes to both peers`);
    const varz = (await (await fetch(`http://127.0.0.1:${s.httpPort}/varz`)).json()) as Record<string, unknown>;
    t.is(varz.max_payload, confMaxPayload, 'nats.conf is the config in force');
    t.is(varz.ping_interval, 5e9);
    t.is((varz.cluster as { name: string }).name, 'submarine');
  }

  const sub = await nats(t, c.urls[0]!, creds.member);
  const pub = await nats(t, c.urls[2]!, creds.member);
  t.is(serverPort(sub), port(c.urls[0]!));
  t.is(serverPort(pub), port(c.urls[2]!));
  const inbox = new Inbox(sub, 'c1.>');
  await sub.flush();
  await publishUntilReceived(pub, 'c1.raft.n1', inbox);
  pub.publish('c1.events.hello', enc.encode('hi'));
  t.true(await inbox.waitFor((m) => m.subject === 'c1.events.hello' && m.data === 'hi', 5000));
});

test('connections without valid credentials are refused, and so are rogue routes', async (t) => {
  const { c, creds } = await startCluster(t);
  const refused = { code: 'AUTHORIZATION_VIOLATION' };
  await t.throwsAsync(connect({ servers: c.urls[0] }), refused, 'no credentials');
  await t.throwsAsync(connect({ servers: c.urls[1], user: creds.member.user, pass: creds.member.pass + 'x' }), refused, 'wrong member password');
  await t.throwsAsync(connect({ servers: c.urls[1], user: creds.client.user, pass: creds.client.pass + 'x' }), refused, 'wrong client password');
  await t.throwsAsync(connect({ servers: c.urls[2], user: creds.route.user, pass: creds.route.pass }), refused, 'route credentials are not a client login');

  // A server (or anything) joining on the cluster port must speak TLS with the broker's route
  // certificate (nats.conf: routes always run TLS) before its route credentials are even read: a
  // plain-text client is closed without a word in clear (nats-server 2.9 sends nothing before the
  // TLS handshake on a TLS route port) and never gets a PONG.
  const reply = await new Promise<string>((resolve, reject) => {
    let buf = '';
    let sent = false;
    const s = tcpConnect(c.servers[0]!.clusterPort, '127.0.0.1');
    const timer = setTimeout(() => (s.destroy(), reject(new Error(`route connection not closed; got ${buf}`))), 5000);
    s.on('data', (d) => {
      buf += d.toString();
      if (!sent && buf.includes('\r\n')) {
        sent = true;
        s.write(`CONNECT ${JSON.stringify({ verbose: false, pedantic: false, user: 'rogue', pass: 'rogue', tls_required: false, name: 'rogue', cluster: 'submarine' })}\r\nPING\r\n`);
      }
    });
    s.on('error', () => {});
    s.on('close', () => (clearTimeout(timer), resolve(buf)));
  });
  t.notRegex(reply, /INFO|PONG/);
});

test('a client may use api, events, watch and inboxes but can neither publish nor subscribe on raft', async (t) => {
  const { c, creds } = await startCluster(t);
  const member = await nats(t, c.urls[0]!, creds.member);
  const client = await nats(t, c.urls[1]!, creds.client);
  const clientStatus = statuses(client);
  const inbox = new Inbox(member, 'c1.>');
  await member.flush();

  await publishUntilReceived(client, 'c1.api.x', inbox);
  await publishUntilReceived(client, 'c1.api', inbox);
  await publishUntilReceived(client, 'c1.events.topic', inbox);

  // Forbidden publish, then an allowed marker on the same path: messages from one publisher keep
  // their order, so once the marker is in, a delivered raft message would already be too.
  client.publish('c1.raft.n1', enc.encode('forged vote'));
  client.publish('c1.api.marker', enc.encode('after-raft'));
  t.true(await inbox.waitFor((m) => m.subject === 'c1.api.marker', 5000), 'the marker arrives');
  t.false(inbox.got.some((m) => m.subject.startsWith('c1.raft.')), 'the raft message was not delivered');
  const violation = await clientStatus.waitFor((s) => s.type === Events.Error && s.data === 'PERMISSIONS_VIOLATION');
  t.like(violation.permissionContext, { operation: 'publish', subject: 'c1.raft.n1' });
  t.false(client.isClosed(), 'a permission violation does not close the connection');

  // Watches and replies reach the client; raft traffic cannot be overheard.
  const watches = new Inbox(client, 'c1.watch.>');
  const raftSpy = new Inbox(client, 'c1.raft.>');
  await clientStatus.waitFor((s) => s.type === Events.Error && s.permissionContext?.subject === 'c1.raft.>');
  await until('the denied subscription to report its error', () => raftSpy.errors.length > 0, 5000);
  t.is((raftSpy.errors[0] as Error & { code?: string }).code, 'PERMISSIONS_VIOLATION');
  await publishUntilReceived(member, 'c1.watch.w1', watches);
  member.publish('c1.raft.n2', enc.encode('real raft'));
  member.publish('c1.watch.w1', enc.encode('marker'));
  t.true(await watches.waitFor((m) => m.data === 'marker', 5000));
  t.is(raftSpy.got.length, 0);

  member.subscribe('c1.api.echo', { callback: (_e, m) => m.respond(m.data) });
  await member.flush();
  const deadline = Date.now() + 10_000;
  let reply: string | null = null;
  while (reply === null) {
    try {
      reply = dec.decode((await client.request('c1.api.echo', enc.encode('ping'), { timeout: 500 })).data);
    } catch (err) {
      if (Date.now() > deadline) throw err; // no responders until the interest has crossed the route
    }
  }
  t.is(reply, 'ping');
});

test('killing a server: connections fail over to the others, and the server rejoins on restart', async (t) => {
  const { c, creds } = await startCluster(t);
  const opts = { maxReconnectAttempts: -1, reconnectTimeWait: 100, pingInterval: 1000, noRandomize: true };
  const sub = await nats(t, c.urls, creds.member, opts);
  const pub = await nats(t, c.urls, creds.member, opts);
  t.is(serverPort(sub), c.servers[0]!.clientPort);
  t.is(serverPort(pub), c.servers[0]!.clientPort);
  const subStatus = statuses(sub);
  const pubStatus = statuses(pub);
  const inbox = new Inbox(sub, 'c1.events.>');
  await publishUntilReceived(pub, 'c1.events.before', inbox);

  const killed = c.servers[0]!.pid;
  await c.killServer(0);
  t.false(alive(killed));
  t.false(c.servers[0]!.running);
  await Promise.all([subStatus, pubStatus].map((s) => s.waitFor((x) => x.type === Events.Reconnect)));
  t.not(serverPort(sub), c.servers[0]!.clientPort);
  t.not(serverPort(pub), c.servers[0]!.clientPort);
  await publishUntilReceived(pub, 'c1.events.after', inbox);

  await c.startServer(0);
  t.true(c.servers[0]!.running);
  t.not(c.servers[0]!.pid, killed);
  const again = await nats(t, c.urls[0]!, creds.member);
  await publishUntilReceived(again, 'c1.events.restarted', inbox);
});

test('stop() and stopServer() leave no process behind; stop() is idempotent', async (t) => {
  const c = await startNatsCluster({ dir: await tempDir(t), credentials: generateCredentials() });
  t.teardown(() => c.stop());
  const pids = c.servers.map((s) => s.pid);
  t.true(pids.every((p) => alive(p)));

  await c.stopServer(1);
  t.throws(() => process.kill(pids[1]!, 0), { code: 'ESRCH' });
  t.false(c.servers[1]!.running);
  await c.stopServer(1); // already stopped: nothing to do

  await c.stop();
  for (const pid of pids) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `pid ${pid} is gone`);
  await c.stop();
  await t.throwsAsync(c.startServer(0), { message: /stopped/ });
});

test('the CLI prints the URLs, stops cleanly on SIGTERM, and its servers die with it on SIGKILL', async (t) => {
  const dir = await tempDir(t);
  const runCli = async () => {
    const cli = spawn(process.execPath, ['--import', 'tsx', 'scripts/nats-cluster.ts', '--dir', dir], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    t.teardown(() => void cli.kill('SIGKILL'));
    let stderr = '';
    cli.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | string | null>((res) => cli.on('exit', (code, sig) => res(code ?? sig)));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      cli.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
      });
      void exited.then((code) => reject(new Error(`CLI exited (${code}) before printing: ${stderr}`)));
    });
    const info = JSON.parse(line) as { urls: string[]; servers: { pid: number }[]; credentialsFile: string };
    return { cli, exited, info, pids: info.servers.map((s) => s.pid) };
  };

  const first = await runCli();
  t.is(first.info.urls.length, 3);
  t.is(first.info.credentialsFile, join(dir, 'credentials.json'));
  t.is((await stat(first.info.credentialsFile)).mode & 0o777, 0o600);
  const creds = JSON.parse(await readFile(first.info.credentialsFile, 'utf8')) as NatsCredentials;
  const nc = await connect({ servers: first.info.urls[1], user: creds.member.user, pass: creds.member.pass });
  await nc.close();
  first.cli.kill('SIGTERM');
  t.is(await first.exited, 0);
  t.true(first.pids.every((p) => !alive(p)));

  // The CLI dies without any chance to clean up: the orphan guard must still take the servers down.
  const second = await runCli();
  t.deepEqual(JSON.parse(await readFile(second.info.credentialsFile, 'utf8')), creds, 'credentials are reused');
  t.true(second.pids.every((p) => alive(p)));
  second.cli.kill('SIGKILL');
  await second.exited;
  await until('the orphaned servers to die', () => second.pids.every((p) => !alive(p)));
  t.pass();
});

test('a server that cannot start fails fast with its log tail', async (t) => {
  const dir = await tempDir(t);
  const confPath = join(dir, 'broken.conf');
  await writeFile(confPath, 'port: $SUBMARINE_NO_SUCH_VARIABLE\n');
  const t0 = Date.now();
  const err = await t.throwsAsync(startNatsCluster({ dir, credentials: generateCredentials(), confPath, size: 1 }), { instanceOf: NatsStartError });
  t.regex(err!.message, /SUBMARINE_NO_SUCH_VARIABLE/);
  t.regex(err!.message, /nats-0\.log/);
  t.true(Date.now() - t0 < 5000);
});

test('secrets that look like numbers or sizes, or contain URL and config syntax, still work', async (t) => {
  const creds: NatsCredentials = {
    member: { user: '12MB', pass: '-5abc' },
    client: { user: '1e5', pass: '12345' },
    route: { user: 'true', pass: 'p@ss:/w"o\\rd $HOME #1' },
  };
  const { c } = await startCluster(t, creds, 2); // resolving means the routes authenticated
  const member = await nats(t, c.urls[0]!, creds.member);
  const client = await nats(t, c.urls[1]!, creds.client);
  const inbox = new Inbox(member, 'c1.api.>');
  await member.flush();
  await publishUntilReceived(client, 'c1.api.x', inbox);
  t.pass();
});

test('credentials: generated at random, stored 0600 with parent dirs, reloaded, validated', async (t) => {
  const a = generateCredentials();
  const b = generateCredentials();
  for (const role of ['member', 'client', 'route'] as const) {
    t.regex(a[role].pass, /^[A-Za-z0-9_-]{32}$/);
    t.not(a[role].pass, b[role].pass);
  }
  t.is(new Set([a.member.user, a.client.user, a.route.user]).size, 3);

  const dir = await tempDir(t);
  const file = join(dir, 'x', 'y', 'credentials.json');
  const created = loadOrCreateCredentials(file);
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.deepEqual(loadOrCreateCredentials(file), created);

  await writeFile(file, '{"member":{"user":"m","pass":"p"},"client":{"user":"c"}}');
  t.throws(() => loadOrCreateCredentials(file), { instanceOf: CredentialsFileError, message: /credentials\.json.*"client\.pass"/ });
  await writeFile(file, 'not json');
  t.throws(() => loadOrCreateCredentials(file), { instanceOf: CredentialsFileError, message: /not JSON/ });
});

test('client requests: a member nobody serves fails at once with NoRespondersError, a silent one with TimeoutError, and answers reach the right caller', async (t) => {
  const { c, creds } = await startCluster(t, generateCredentials(), 1);
  // A long request timeout: no-responders must answer well before it, even on a loaded machine.
  const client = await ClusterClient.connect({ nats: c.urls, user: creds.client.user, pass: creds.client.pass, requestTimeoutMs: 10_000, cluster: 'test' });
  t.teardown(() => client.close());
  const started = performance.now();
  const e1 = await t.throwsAsync(client.status('nobody'));
  t.is(e1?.name, 'NoRespondersError');
  t.true(performance.now() - started < 5000, 'no-responders must not wait for the timeout');
  const quick = await ClusterClient.connect({ nats: c.urls, user: creds.client.user, pass: creds.client.pass, requestTimeoutMs: 400, cluster: 'test' });
  t.teardown(() => quick.close());
  // A member that takes the request and never answers.
  const member = await nats(t, c.urls, creds.member);
  member.subscribe(subjects.api('test', 'silent'));
  await member.flush();
  const e2 = await t.throwsAsync(quick.status('silent'));
  t.true(e2 instanceof TimeoutError, String(e2));
  // A member that answers out of order: each caller gets its own answer.
  member.subscribe(subjects.api('test', 'echo'), {
    callback: (_err, m) => {
      const req = decodeEnvelope(m.data, { cluster: 'test' }).body as { op: string };
      const delay = Math.floor(Math.random() * 30);
      setTimeout(() => m.respond(encodeEnvelope('test', 'res', { ok: true, status: { id: `${req.op} ${m.reply}` } })), delay);
    },
  });
  await member.flush();
  const replies = await Promise.all(Array.from({ length: 20 }, () => client.status('echo')));
  t.is(new Set(replies.map((r) => r[0]!.id)).size, 20);
});
