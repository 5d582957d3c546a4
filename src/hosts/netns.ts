// Hosts as Linux network namespaces, for multi-host tests and chaos runs (a tool, not library code).
//
// createHosts({ count, prefix }) makes one namespace per host, a veth pair per host whose root-side
// end sits on a bridge in the root namespace, and gives the bridge an address so that clients in the
// root namespace (tests, the chaos workload) reach every host. Addresses come from a private /24
// (10.77.0.0/24 by default) that exists only on that bridge and inside those namespaces: the hosts
// get no default route and nothing is forwarded anywhere else, so no traffic leaves the machine.
//
// Faults are the network's: cutLink/restoreLink take the root-side veth down/up (both directions),
// dropFrom/dropTo add iptables DROP rules inside one namespace (one direction; `-m statistic` for
// partial loss). Delay is not here: this kernel has no sch_netem, see delay-proxy.ts.
//
// Everything is named with the prefix (default `sch-`); createHosts removes leftovers with that
// prefix from an earlier crashed run first, and cleanup() (idempotent; also run at process exit)
// kills the processes it started and those still inside the namespaces, then deletes the
// namespaces (with them their iptables rules) and the links. A run stopped by a signal (Ctrl-C)
// leaves its hosts until the next createHosts with that prefix, or
// `npx tsx src/hosts/netns.ts cleanup [PREFIX]`. Runs at the same time need distinct prefixes (none
// a prefix of another: `sch-` would clean up `sch-x-`) and distinct subnets.
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export const DEFAULT_PREFIX = 'sch-';
export const DEFAULT_SUBNET = '10.77.0';

export interface Host {
  /** Short name (`h1`, `h2`, ...). */
  readonly name: string;
  /** The host's address on the bridge. */
  readonly ip: string;
  /** The network namespace (`<prefix>h1`). */
  readonly netns: string;
  /** The veth end in the root namespace, on the bridge (cutLink takes it down). */
  readonly vethRoot: string;
  /** The veth end inside the namespace. */
  readonly vethNs: string;
}

export interface HostsOptions {
  count: number;
  /** Prefix of every namespace and link made; leftovers with it are removed first. Default `sch-`. */
  prefix?: string;
  /** First three octets of the private /24: bridge `.1`, hosts `.11`, `.12`, ... Default `10.77.0`. */
  subnet?: string;
}

export type Availability = { ok: true } | { ok: false; reason: string };

export interface HostSet {
  readonly hosts: readonly Host[];
  readonly prefix: string;
  /** The bridge in the root namespace and its address (what a host sees the root namespace as). */
  readonly bridge: string;
  readonly bridgeIp: string;
  /** Runs `cmd args` inside the host's namespace (`ip netns exec`); the process is killed by cleanup(). */
  spawnIn(host: Host, cmd: string, args?: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** PIDs of processes started by spawnIn that have not exited yet. */
  pids(): number[];
  /** Host's link down: nothing in or out of the host (root-side veth down). */
  cutLink(host: Host): Promise<void>;
  restoreLink(host: Host): Promise<void>;
  /** One-way loss: `host` drops packets arriving from `peerIp` (iptables INPUT in its namespace). */
  dropFrom(host: Host, peerIp: string, probability?: number): Promise<void>;
  /** One-way loss the other way: `host` drops packets it sends to `peerIp` (iptables OUTPUT). */
  dropTo(host: Host, peerIp: string, probability?: number): Promise<void>;
  /** Removes the host's iptables rules and brings its link back up. */
  clearFaults(host: Host): Promise<void>;
  /** The host's iptables rules (`iptables -S`), for checks and reports. */
  rules(host: Host): Promise<string>;
  /** Kills processes, deletes namespaces and links. Idempotent. */
  cleanup(): Promise<void>;
}

const IFNAMSIZ = 15;

function checkPrefix(prefix: string): void {
  // Longest name made: `${prefix}h99-br`.
  if (!/^[a-z][a-z0-9-]*$/.test(prefix) || `${prefix}h99-br`.length > IFNAMSIZ) {
    throw new Error(`hosts prefix ${JSON.stringify(prefix)}: lowercase letters, digits and '-', at most ${IFNAMSIZ - 6} characters`);
  }
}

function checkSubnet(subnet: string): void {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(subnet);
  const o = m ? m.slice(1).map(Number) : [];
  const priv = o.length === 3 && o.every((x) => x <= 255) &&
    (o[0] === 10 || (o[0] === 172 && o[1]! >= 16 && o[1]! <= 31) || (o[0] === 192 && o[1] === 168));
  if (!priv) throw new Error(`hosts subnet ${JSON.stringify(subnet)}: three octets of a private range (10/8, 172.16/12, 192.168/16)`);
}

async function ip(args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileP('ip', args as string[], { encoding: 'utf8' });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

function ipSync(args: readonly string[]): string {
  try {
    return execFileSync('ip', args as string[], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return '';
  }
}

async function iptablesIn(netns: string, args: readonly string[]): Promise<string> {
  return ip(['netns', 'exec', netns, 'iptables', '-w', ...args]);
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function hasIptables(): boolean {
  if (['/usr/sbin/iptables', '/sbin/iptables', '/usr/bin/iptables'].some((p) => existsSync(p))) return true;
  try {
    execFileSync('iptables', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

let probeSeq = 0;

/**
 * Whether namespace hosts can be made here: Linux, root, `ip netns`, veth and bridge links, and
 * iptables working inside a namespace. Leaves nothing behind.
 */
export async function available(prefix = DEFAULT_PREFIX): Promise<Availability> {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (!isRoot()) return { ok: false, reason: 'network namespaces need root (run the tests as root, as CI does)' };
  try {
    await execFileP('ip', ['-V']);
  } catch {
    return { ok: false, reason: "the 'ip' command (iproute2) is not installed" };
  }
  if (!hasIptables()) return { ok: false, reason: "iptables is not installed (bash scripts/ensure-iptables.sh, or 'apt-get install iptables')" };
  checkPrefix(prefix);
  const ns = `${prefix}probe${process.pid % 1000}${probeSeq++ % 10}`.slice(0, IFNAMSIZ);
  const a = `${prefix}pa${process.pid % 10000}`.slice(0, IFNAMSIZ);
  const b = `${prefix}pb${process.pid % 10000}`.slice(0, IFNAMSIZ);
  const br = `${prefix}pbr${process.pid % 1000}`.slice(0, IFNAMSIZ);
  try {
    await ip(['netns', 'add', ns]);
    await ip(['link', 'add', br, 'type', 'bridge']);
    await ip(['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
    await ip(['link', 'set', b, 'netns', ns]);
    await ip(['link', 'set', a, 'master', br]);
    await ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    await iptablesIn(ns, ['-S', 'INPUT']);
    await iptablesIn(ns, ['-A', 'INPUT', '-s', '192.0.2.254', '-m', 'statistic', '--mode', 'random', '--probability', '0.5', '-j', 'DROP']);
    return { ok: true };
  } catch (err) {
    return { ok: false, reason: `cannot make namespace hosts here: ${(err as Error).message}` };
  } finally {
    ipSync(['link', 'del', a]);
    ipSync(['link', 'del', br]);
    ipSync(['netns', 'del', ns]);
  }
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/**
 * Removes every namespace and root-namespace link whose name starts with `prefix`, killing the
 * processes inside those namespaces first. Synchronous so it can run at process exit.
 */
export function cleanupPrefix(prefix: string = DEFAULT_PREFIX): { namespaces: string[]; links: string[]; killed: number[] } {
  checkPrefix(prefix);
  const namespaces = listNamespacesSync(prefix);
  const killed: number[] = [];
  for (const ns of namespaces) {
    for (const p of ipSync(['netns', 'pids', ns]).split(/\s+/).filter(Boolean)) {
      const pid = Number(p);
      if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) {
        killPid(pid);
        killed.push(pid);
      }
    }
  }
  const links = listLinksSync(prefix);
  // Deleting a veth end deletes its peer wherever it is (a peer already gone just fails here).
  for (const l of links) ipSync(['link', 'del', l]);
  for (const ns of namespaces) ipSync(['netns', 'del', ns]);
  return { namespaces, links, killed };
}

/** Namespaces whose name starts with `prefix`. */
export function listNamespacesSync(prefix: string = DEFAULT_PREFIX): string[] {
  return ipSync(['netns', 'list'])
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Links in the root namespace whose name starts with `prefix`. */
export function listLinksSync(prefix: string = DEFAULT_PREFIX): string[] {
  return ipSync(['-o', 'link', 'show'])
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter((n) => n.startsWith(prefix));
}

function ruleArgs(peerIp: string, probability: number): string[] {
  if (!/^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(peerIp)) throw new Error(`not an IPv4 address: ${peerIp}`);
  if (!(probability > 0 && probability <= 1)) throw new Error(`drop probability must be in (0, 1], got ${probability}`);
  const stat = probability < 1 ? ['-m', 'statistic', '--mode', 'random', '--probability', String(probability)] : [];
  return [...stat, '-m', 'comment', '--comment', 'sch-fault', '-j', 'DROP'];
}

/** Makes `count` hosts; removes leftovers with the same prefix first. */
export async function createHosts(opts: HostsOptions): Promise<HostSet> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const subnet = opts.subnet ?? DEFAULT_SUBNET;
  checkPrefix(prefix);
  checkSubnet(subnet);
  if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > 99) throw new Error(`hosts count must be 1..99, got ${opts.count}`);
  if (!isRoot()) throw new Error('network namespaces need root');

  cleanupPrefix(prefix);
  // The /24 must be ours alone: no address or route in it may exist in the root namespace.
  const clash = ipSync(['-4', '-o', 'addr', 'show']).split('\n').find((l) => l.includes(` ${subnet}.`)) ??
    ipSync(['-4', 'route', 'show']).split('\n').find((l) => l.startsWith(`${subnet}.`));
  if (clash) throw new Error(`subnet ${subnet}.0/24 is already in use on this machine: ${clash.trim()}`);

  const bridge = `${prefix}br`;
  const bridgeIp = `${subnet}.1`;
  const hosts: Host[] = [];
  for (let i = 1; i <= opts.count; i++) {
    hosts.push({ name: `h${i}`, ip: `${subnet}.${10 + i}`, netns: `${prefix}h${i}`, vethRoot: `${prefix}h${i}-br`, vethNs: `${prefix}h${i}-ns` });
  }

  const children = new Set<ChildProcess>();
  let cleaned = false;
  const onExit = (): void => {
    for (const c of children) if (c.pid) killPid(c.pid);
    cleanupPrefix(prefix);
  };
  process.once('exit', onExit);

  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    process.removeListener('exit', onExit);
    const exits = [...children].filter((c) => c.exitCode === null && c.signalCode === null).map(
      (c) => new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        setTimeout(resolve, 2000).unref();
      }),
    );
    for (const c of children) if (c.pid) killPid(c.pid);
    cleanupPrefix(prefix);
    await Promise.all(exits);
    children.clear();
  };

  try {
    await ip(['link', 'add', bridge, 'type', 'bridge', 'forward_delay', '0']);
    await ip(['addr', 'add', `${bridgeIp}/24`, 'dev', bridge]);
    await ip(['link', 'set', bridge, 'up']);
    for (const h of hosts) {
      await ip(['netns', 'add', h.netns]);
      await ip(['link', 'add', h.vethRoot, 'type', 'veth', 'peer', 'name', h.vethNs]);
      await ip(['link', 'set', h.vethNs, 'netns', h.netns]);
      await ip(['link', 'set', h.vethRoot, 'master', bridge]);
      await ip(['link', 'set', h.vethRoot, 'up']);
      await ip(['-n', h.netns, 'link', 'set', 'lo', 'up']);
      await ip(['-n', h.netns, 'addr', 'add', `${h.ip}/24`, 'dev', h.vethNs]);
      await ip(['-n', h.netns, 'link', 'set', h.vethNs, 'up']);
    }
  } catch (err) {
    await cleanup();
    throw err;
  }

  const own = (host: Host): Host => {
    const h = hosts.find((x) => x.netns === host.netns);
    if (!h) throw new Error(`not a host of this set: ${host.name}`);
    if (cleaned) throw new Error('hosts were cleaned up');
    return h;
  };

  return {
    hosts,
    prefix,
    bridge,
    bridgeIp,
    spawnIn(host, cmd, args = [], spawnOpts = {}) {
      const h = own(host);
      const child = spawn('ip', ['netns', 'exec', h.netns, cmd, ...args], spawnOpts);
      children.add(child);
      child.once('exit', () => children.delete(child));
      child.once('error', () => children.delete(child));
      return child;
    },
    pids() {
      return [...children].filter((c) => c.exitCode === null && c.signalCode === null && c.pid).map((c) => c.pid!);
    },
    async cutLink(host) {
      await ip(['link', 'set', own(host).vethRoot, 'down']);
    },
    async restoreLink(host) {
      await ip(['link', 'set', own(host).vethRoot, 'up']);
    },
    async dropFrom(host, peerIp, probability = 1) {
      await iptablesIn(own(host).netns, ['-A', 'INPUT', '-s', peerIp, ...ruleArgs(peerIp, probability)]);
    },
    async dropTo(host, peerIp, probability = 1) {
      await iptablesIn(own(host).netns, ['-A', 'OUTPUT', '-d', peerIp, ...ruleArgs(peerIp, probability)]);
    },
    async clearFaults(host) {
      const h = own(host);
      await iptablesIn(h.netns, ['-F', 'INPUT']);
      await iptablesIn(h.netns, ['-F', 'OUTPUT']);
      await ip(['link', 'set', h.vethRoot, 'up']);
    },
    async rules(host) {
      return iptablesIn(own(host).netns, ['-S']);
    },
    cleanup,
  };
}

async function main(argv: string[]): Promise<void> {
  const [cmd, prefix = DEFAULT_PREFIX] = argv;
  if (cmd === 'cleanup') {
    const r = cleanupPrefix(prefix);
    process.stdout.write(`removed namespaces [${r.namespaces.join(' ')}], links [${r.links.join(' ')}], killed [${r.killed.join(' ')}]\n`);
  } else if (cmd === 'available') {
    const a = await available(prefix);
    process.stdout.write(a.ok ? 'ok\n' : `not available: ${a.reason}\n`);
    process.exitCode = a.ok ? 0 : 1;
  } else {
    process.stderr.write('usage: tsx src/hosts/netns.ts cleanup [PREFIX] | available [PREFIX]\n');
    process.exitCode = 2;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`netns: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
