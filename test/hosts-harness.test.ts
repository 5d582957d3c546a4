// The namespace host harness itself (src/hosts/): hosts reachable from the root namespace, link
// cuts, one-way loss, the delay proxy, and a cleanup that leaves nothing behind. Needs root, `ip
// netns` and iptables; elsewhere one test says it is skipped and why (SUBMARINE_REQUIRE_NETNS=1
// turns that into a failure, for CI).
import test, { type ExecutionContext } from 'ava';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { createDelayProxy } from '../src/hosts/delay-proxy.ts';
import { available, cleanupPrefix, createHosts, listLinksSync, listNamespacesSync, type Host, type HostSet } from '../src/hosts/netns.ts';

// Not under the default `sch-` (whose start-up cleanup would remove these) and its own /24, so a
// multi-host test using the defaults can run at the same time as this file.
const PREFIX = 'schh-';
const SUBNET = '10.77.9';
const ECHO_PORT = 7000;
const UDP_PORT = 7001;

// Runs in each namespace: a TCP echo server, a UDP socket that prints what it receives, and stdin
// commands to send UDP or try a TCP connect from inside the host.
const AGENT = `
const net = require('net'), dgram = require('dgram'), readline = require('readline');
const out = (s) => process.stdout.write(s + '\\n');
const tcp = net.createServer((s) => { s.on('error', () => {}); s.pipe(s); });
const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => out('recv ' + r.address + ' ' + m));
let up = 0;
const ready = () => { if (++up === 2) out('ready'); };
tcp.listen(${ECHO_PORT}, '0.0.0.0', ready);
udp.bind(${UDP_PORT}, '0.0.0.0', ready);
readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const [cmd, ip, port, n, tag] = line.split(' ');
  if (cmd === 'send') {
    for (let i = 0; i < Number(n); i++) {
      udp.send(tag + ':' + i, Number(port), ip);
      if (i % 20 === 19) await new Promise((r) => setTimeout(r, 2));
    }
    out('sent ' + tag);
  } else if (cmd === 'connect') {
    const s = net.connect({ host: ip, port: Number(port) });
    const t = setTimeout(() => { s.destroy(); out('connect ' + tag + ' timeout'); }, Number(n));
    s.on('connect', () => { clearTimeout(t); s.destroy(); out('connect ' + tag + ' ok'); });
    s.on('error', (e) => { clearTimeout(t); out('connect ' + tag + ' ' + e.code); });
  }
}).on('close', () => process.exit(0));
`;

class Agent {
  readonly lines: string[] = [];
  private waiters: (() => void)[] = [];
  constructor(readonly host: Host, readonly child: ChildProcess) {
    let buf = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async waitFor(pred: (line: string) => boolean, ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.host.name}: no matching line within ${ms} ms (last: ${this.lines.slice(-3).join(' | ')})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
  command(line: string): void {
    this.child.stdin!.write(line + '\n');
  }
  /** Connect from inside this host; resolves 'ok', 'timeout' or an error code. */
  async tryConnect(ip: string, port: number, ms: number): Promise<string> {
    const tag = `c${Math.random().toString(36).slice(2, 8)}`;
    this.command(`connect ${ip} ${port} ${ms} ${tag}`);
    const line = await this.waitFor((l) => l.startsWith(`connect ${tag} `), ms + 2000);
    return line.split(' ')[2]!;
  }
  /** Sends n UDP datagrams tagged `tag` to ip:UDP_PORT. */
  async sendUdp(ip: string, n: number, tag: string): Promise<void> {
    this.command(`send ${ip} ${UDP_PORT} ${n} ${tag}`);
    await this.waitFor((l) => l === `sent ${tag}`, 5000);
  }
  received(tag: string, from?: string): number {
    const re = /^recv (\S+) (\S+):\d+$/;
    return this.lines.filter((l) => {
      const m = re.exec(l);
      return m !== null && m[2] === tag && (!from || m[1] === from);
    }).length;
  }
}

type Outcome = { ok: true; ms: number } | { ok: false; why: string };

/** Connects from the root namespace and echoes one message; never throws. */
function echoOnce(ip: string, port: number, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host: ip, port, noDelay: true });
    const done = (o: Outcome): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(o);
    };
    const timer = setTimeout(() => done({ ok: false, why: 'timeout' }), timeoutMs);
    s.on('error', (e: NodeJS.ErrnoException) => done({ ok: false, why: e.code ?? e.message }));
    s.on('connect', () => s.write('hello\n'));
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got === 'hello\n') done({ ok: true, ms: performance.now() - t0 });
    });
  });
}

/** Echo over an open socket; resolves false when no echo came within ms. */
function echoOn(s: net.Socket, msg: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    let got = '';
    const on = (d: Buffer): void => {
      got += d.toString();
      if (got.endsWith(msg)) finish(true);
    };
    const finish = (v: boolean): void => {
      clearTimeout(t);
      s.off('data', on);
      resolve(v);
    };
    const t = setTimeout(() => finish(false), ms);
    s.on('data', on);
    s.write(msg);
  });
}

async function openSocket(ip: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: ip, port, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Round trips of one 32-byte message on one connection, in ms. */
async function rtts(ip: string, port: number, rounds: number): Promise<number[]> {
  const s = await openSocket(ip, port);
  const out: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const msg = `ping ${String(i).padStart(6, '0')} ${'x'.repeat(20)}`;
    const t0 = performance.now();
    if (!(await echoOn(s, msg, 2000))) throw new Error(`no echo for round ${i}`);
    out.push(performance.now() - t0);
  }
  s.destroy();
  return out;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A live process (a zombie waiting for a reaper counts as dead: it holds no sockets). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const avail = await available(PREFIX);

if (!avail.ok) {
  const title = `hosts harness: SKIPPED, ${avail.reason}`;
  test(title, (t) => {
    t.log(`skipped: ${avail.reason}`);
    if (process.env.SUBMARINE_REQUIRE_NETNS === '1') t.fail(`SUBMARINE_REQUIRE_NETNS=1 but ${avail.reason}`);
    else t.pass();
  });
} else {
  let hs: HostSet;
  let agents: Agent[] = [];
  const staleNs = `${PREFIX}h9`;
  const staleLink = `${PREFIX}old`;

  test.before(async () => {
    // Leftovers of a crashed run: createHosts must remove them.
    cleanupPrefix(PREFIX);
    execFileSync('ip', ['netns', 'add', staleNs]);
    execFileSync('ip', ['link', 'add', staleLink, 'type', 'bridge']);
    hs = await createHosts({ count: 3, prefix: PREFIX, subnet: SUBNET });
    agents = hs.hosts.map((h) => new Agent(h, hs.spawnIn(h, process.execPath, ['-e', AGENT], { stdio: ['pipe', 'pipe', 'inherit'] })));
    await Promise.all(agents.map((a) => a.waitFor((l) => l === 'ready', 10_000)));
  });

  test.after.always(async () => {
    await hs?.cleanup();
  });

  const clear = (t: ExecutionContext): void => {
    t.teardown(async () => {
      for (const h of hs.hosts) await hs.clearFaults(h);
    });
  };

  test.serial('three hosts in namespaces: leftovers removed, each echo server runs in its own namespace and answers the root namespace', async (t) => {
    t.false(listNamespacesSync(PREFIX).includes(staleNs), 'stale namespace of an earlier run removed');
    t.false(listLinksSync(PREFIX).includes(staleLink), 'stale link of an earlier run removed');
    t.deepEqual(listNamespacesSync(PREFIX).sort(), hs.hosts.map((h) => h.netns).sort());
    const rootNet = readlinkSync('/proc/self/ns/net');
    const nets = new Set<string>();
    for (const a of agents) {
      const pid = a.child.pid!;
      const inNs = execFileSync('ip', ['netns', 'pids', a.host.netns], { encoding: 'utf8' }).split(/\s+/);
      t.true(inNs.includes(String(pid)), `${a.host.name}'s agent (pid ${pid}) is inside ${a.host.netns}`);
      nets.add(readlinkSync(`/proc/${pid}/ns/net`));
      const r = await echoOnce(a.host.ip, ECHO_PORT, 2000);
      t.true(r.ok, `echo from the root namespace to ${a.host.name} ${a.host.ip}: ${JSON.stringify(r)}`);
    }
    t.is(nets.size, 3, 'three distinct network namespaces');
    t.false(nets.has(rootNet), 'none of them is the root namespace');
    // Hosts reach each other over the bridge, and the root namespace by the bridge address.
    t.is(await agents[0]!.tryConnect(hs.hosts[1]!.ip, ECHO_PORT, 2000), 'ok');
    t.is(await agents[2]!.tryConnect(hs.hosts[0]!.ip, ECHO_PORT, 2000), 'ok');
    // Nothing routes out: a host has no default route, so an outside address is unreachable.
    const routes = execFileSync('ip', ['-n', hs.hosts[0]!.netns, 'route', 'show'], { encoding: 'utf8' });
    t.notRegex(routes, /default/);
    t.not(await agents[0]!.tryConnect('192.0.2.1', 80, 1000), 'ok');
  });

  test.serial('cutLink: echoes and connects to the host time out both ways; restoreLink brings them back', async (t) => {
    t.timeout(20_000);
    clear(t);
    const [h1, h2] = hs.hosts as [Host, Host];
    const open = await openSocket(h1.ip, ECHO_PORT);
    t.teardown(() => open.destroy());
    t.true(await echoOn(open, 'before\n', 1000), 'echo before the cut');

    const tCut = performance.now();
    await hs.cutLink(h1);
    const cutMs = performance.now() - tCut;
    t.false(await echoOn(open, 'during\n', 700), 'no echo on an open connection during the cut');
    const during = await echoOnce(h1.ip, ECHO_PORT, 700);
    t.false(during.ok, `no new connection during the cut (${JSON.stringify(during)})`);
    t.not(await agents[0]!.tryConnect(h2.ip, ECHO_PORT, 700), 'ok', 'the cut host cannot reach out either');
    t.true((await echoOnce(h2.ip, ECHO_PORT, 1000)).ok, 'the other hosts are unaffected');

    const tRestore = performance.now();
    await hs.restoreLink(h1);
    let firstNew = -1;
    while (performance.now() - tRestore < 5000) {
      const r = await echoOnce(h1.ip, ECHO_PORT, 50);
      if (r.ok) {
        firstNew = performance.now() - tRestore;
        break;
      }
    }
    t.true(firstNew >= 0, 'a new connection echoes within 5 s of the restore');
    // The open connection retransmits on its own backoff; its echoes arrive after the restore.
    const tOld = performance.now();
    t.true(await echoOn(open, 'after\n', 8000), 'the open connection recovers');
    const oldMs = performance.now() - tOld;
    t.is(await agents[0]!.tryConnect(h2.ip, ECHO_PORT, 2000), 'ok');
    t.log(`during the cut a new connection ended with ${during.ok ? "ok" : during.why}`);
    t.log(`cutLink ${cutMs.toFixed(1)} ms; restore → first new echo ${firstNew.toFixed(1)} ms; open connection echoed ${oldMs.toFixed(0)} ms after the restore`);
  });

  test.serial('dropFrom(A, B) with probability 1: A receives nothing from B, B still receives from A', async (t) => {
    t.timeout(20_000);
    clear(t);
    const [a, b] = agents as [Agent, Agent];
    const [hA, hB] = [a.host, b.host];
    // Both directions work before the fault (so the checks below can see a delivery).
    await b.sendUdp(hA.ip, 5, 'pre-ba');
    await a.sendUdp(hB.ip, 5, 'pre-ab');
    await a.waitFor((l) => l.includes(' pre-ba:4'), 2000);
    await b.waitFor((l) => l.includes(' pre-ab:4'), 2000);

    await hs.dropFrom(hA, hB.ip);
    t.regex(await hs.rules(hA), new RegExp(`-A INPUT -s ${hB.ip.replace(/\./g, '\\.')}/32 .*-j DROP`));
    await b.sendUdp(hA.ip, 20, 'ba');
    await a.sendUdp(hB.ip, 20, 'ab');
    await b.waitFor((l) => l.includes(' ab:19'), 2000);
    await new Promise((r) => setTimeout(r, 300));
    t.is(a.received('ba', hB.ip), 0, 'A got nothing from B');
    t.is(b.received('ab', hA.ip), 20, 'B got everything from A');
    // TCP needs both ways, so B cannot connect to A; the root namespace still can (only B is dropped).
    t.not(await b.tryConnect(hA.ip, ECHO_PORT, 700), 'ok');
    t.true((await echoOnce(hA.ip, ECHO_PORT, 1000)).ok, 'A still answers the root namespace');
    // A third host is not affected either way.
    const c = agents[2]!;
    await c.sendUdp(hA.ip, 5, 'ca');
    await a.waitFor((l) => l.includes(' ca:4'), 2000);

    await hs.clearFaults(hA);
    t.notRegex(await hs.rules(hA), /DROP/);
    await b.sendUdp(hA.ip, 5, 'post-ba');
    await a.waitFor((l) => l.includes(' post-ba:4'), 2000);
  });

  test.serial('dropFrom with probability 0.5 drops about half of the datagrams', async (t) => {
    t.timeout(20_000);
    clear(t);
    const [a, b] = agents as [Agent, Agent];
    await hs.dropFrom(a.host, b.host.ip, 0.5);
    t.regex(await hs.rules(a.host), /--mode random --probability 0\.5/);
    const n = 400;
    await b.sendUdp(a.host.ip, n, 'half');
    await new Promise((r) => setTimeout(r, 300));
    const got = a.received('half', b.host.ip);
    t.log(`received ${got} of ${n} at drop probability 0.5`);
    // Binomial(400, 0.5): sd 10, so 120..280 is eight sd either side.
    t.true(got >= 120 && got <= 280, `received ${got} of ${n}`);
  });

  test.serial('delay proxy: adds the configured delay, jitter within its range, changeable at run time, bytes in order', async (t) => {
    t.timeout(30_000);
    const h1 = hs.hosts[0]!;
    const proxy = await createDelayProxy({ listen: { host: hs.bridgeIp, port: 0 }, target: { host: h1.ip, port: ECHO_PORT }, delay: { minMs: 20, maxMs: 20 } });
    t.teardown(() => proxy.close());

    const direct = await rtts(h1.ip, ECHO_PORT, 30);
    const fixed = await rtts(proxy.host, proxy.port, 20);
    t.log(`RTT direct p50 ${median(direct).toFixed(2)} ms; through the proxy at 20 ms per direction p50 ${median(fixed).toFixed(2)} ms, min ${Math.min(...fixed).toFixed(2)} ms`);
    t.true(median(direct) < 10, `direct RTT ${median(direct)}`);
    t.true(Math.min(...fixed) >= 39.5, `every proxied RTT holds both 20 ms delays: min ${Math.min(...fixed)}`);
    t.true(median(fixed) <= 80, `proxied RTT p50 ${median(fixed)} stays near 40 ms`);

    proxy.setDelay({ minMs: 1, maxMs: 80 });
    const jit = await rtts(proxy.host, proxy.port, 40);
    const [lo, hi] = [Math.min(...jit), Math.max(...jit)];
    t.log(`jitter 1-80 ms per direction: RTT min ${lo.toFixed(1)} p50 ${median(jit).toFixed(1)} max ${hi.toFixed(1)} ms`);
    t.true(lo >= 2 && hi <= 250, `RTTs within 2..160 ms (+slack for a loaded machine): ${lo}..${hi}`);
    t.true(hi - lo >= 20, `RTTs vary with jitter: ${lo}..${hi}`);

    proxy.setDelay({ up: { minMs: 5, maxMs: 5 }, down: { minMs: 0, maxMs: 0 } });
    const changed = await rtts(proxy.host, proxy.port, 20);
    t.true(Math.min(...changed) >= 4.5 && median(changed) <= 30, `after setDelay(5 up, 0 down): p50 ${median(changed)}`);

    // Order: many small writes under heavy jitter come back byte for byte.
    proxy.setDelay({ minMs: 1, maxMs: 80 });
    const s = await openSocket(proxy.host, proxy.port);
    t.teardown(() => s.destroy());
    const sent: string[] = [];
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    const heldBefore = proxy.stats().heldForOrder;
    for (let i = 0; i < 300; i++) {
      const m = `<${i}>`;
      sent.push(m);
      s.write(m);
      await new Promise((r) => setTimeout(r, i % 10 === 9 ? 1 : 0));
    }
    const want = sent.join('');
    const deadline = Date.now() + 5000;
    while (got.length < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    t.is(got, want, 'bytes echoed through the jittered proxy in order');
    t.true(proxy.stats().heldForOrder > heldBefore, 'jitter drew delays that would have reordered chunks');
  });

  test.serial('cleanup leaves no namespaces, links, iptables rules or processes, and is idempotent', async (t) => {
    const h3 = hs.hosts[2]!;
    await hs.dropFrom(h3, hs.hosts[0]!.ip);
    // A grandchild that spawnIn does not know about: cleanup finds it through `ip netns pids`.
    const sh = hs.spawnIn(h3, 'sh', ['-c', 'sleep 60 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const grandchild = await new Promise<number>((resolve) => sh.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
    const pids = [...hs.pids(), grandchild];
    t.is(pids.length, 5, 'three agents, the shell and its sleep');
    t.true(pids.every(alive));

    await hs.cleanup();
    await hs.cleanup();
    t.deepEqual(listNamespacesSync(PREFIX), [], 'no namespaces with the prefix');
    t.deepEqual(listLinksSync(PREFIX), [], 'no links with the prefix');
    t.throws(() => execFileSync('ip', ['netns', 'exec', h3.netns, 'iptables', '-S'], { stdio: 'ignore' }), undefined, 'the namespace holding the rules is gone');
    for (let i = 0; i < 50 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 20));
    t.deepEqual(pids.filter(alive), [], 'every process killed');
    t.deepEqual(hs.pids(), []);
    const addrs = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
    t.false(addrs.includes(` ${SUBNET}.`), 'the bridge address is gone from the root namespace');
  });
}
