/**
 * Certificates for the broker and its clients, made with Debian's `openssl` command.
 *
 * Why openssl and not an npm library: it is maintained (security updates come with the
 * distribution), it is already on every machine that runs the broker (nats-server comes from the
 * same archive), and node:crypto can make keys and verify certificates but has no X.509 writer.
 * No new dependency, and nothing of ours parses or signs ASN.1.
 *
 * `makeCerts` writes a CA and one key + certificate per host (the `certs` command);
 * `ensureRouteCert` writes the self-signed certificate the broker's routes use when no CA is given
 * (nats-server 2.9 cannot turn route TLS off per server with one config file: see nats.conf).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { accessSync, chmodSync, constants as fsConstants, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';

export function findOpenssl(): string {
  for (const c of ['/usr/bin/openssl', ...(process.env.PATH ?? '').split(':').filter(Boolean).map((d) => join(d, 'openssl'))]) {
    try {
      accessSync(c, fsConstants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  throw new Error('openssl not found at /usr/bin/openssl nor on PATH: install Debian\'s openssl package (apt-get install openssl)');
}

function openssl(args: string[]): void {
  try {
    execFileSync(findOpenssl(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr?.toString().trim() || e.message}`);
  }
}

/** A DNS name or an IP address usable in a certificate's subjectAltName. */
export function checkCertName(name: string): string {
  if (isIP(name)) return name;
  if (!/^(?=.{1,253}$)[A-Za-z0-9_*]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*$/.test(name)) {
    throw new Error(`'${name}' is neither a host name nor an IP address`);
  }
  return name;
}

const san = (names: string[]): string => [...new Set(names)].map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`)).join(',');

export interface MakeCertsOptions {
  /** Host names, one certificate each (file names `<host>.crt` / `<host>.key`). */
  hosts: string[];
  /** IP addresses, paired with `hosts` by position (the IP of each host), or none. */
  ips?: string[];
  /** Add localhost and 127.0.0.1 to every certificate (tests, a broker reached locally too). */
  localhost?: boolean;
  out: string;
  /** Validity of host certificates in days (default 825); the CA gets 10 years. */
  days?: number;
}

export interface MadeCerts {
  ca: string;
  caKey: string;
  /** The CA existed in `out` and was reused. */
  reusedCa: boolean;
  hosts: { host: string; cert: string; key: string; names: string[] }[];
}

/**
 * A CA (ca.crt, ca.key) in `out` — reused when it is already there, so hosts can be added later —
 * and per host a key and a certificate signed by it for both TLS server and client use (routes
 * authenticate each other with them). Keys are written 0600.
 */
export function makeCerts(o: MakeCertsOptions): MadeCerts {
  if (o.hosts.length === 0) throw new Error('certs: no hosts given');
  const hosts = o.hosts.map(checkCertName);
  if (new Set(hosts.map((h) => h.toLowerCase())).size !== hosts.length) throw new Error('certs: a host is listed twice');
  const ips = (o.ips ?? []).map((ip) => {
    if (!isIP(ip)) throw new Error(`certs: '${ip}' is not an IP address`);
    return ip;
  });
  if (ips.length > 0 && ips.length !== hosts.length) {
    throw new Error(`certs: --ips must give one IP per host, in the same order (${hosts.length} hosts, ${ips.length} IPs)`);
  }
  const days = o.days ?? 825;
  mkdirSync(o.out, { recursive: true, mode: 0o700 });
  const ca = join(o.out, 'ca.crt');
  const caKey = join(o.out, 'ca.key');
  const reusedCa = existsSync(ca) && existsSync(caKey);
  if (!reusedCa) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', caKey, '-out', ca, '-days', '3650', '-subj', '/CN=submarine-cluster CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    chmodSync(caKey, 0o600);
  }
  const made: MadeCerts['hosts'] = [];
  const tmp = join(o.out, `.tmp-${randomBytes(6).toString('hex')}`);
  try {
    for (const [i, host] of hosts.entries()) {
      const names = [host, ...(ips[i] !== undefined ? [ips[i]!] : []), ...(o.localhost ? ['localhost', '127.0.0.1'] : [])];
      const key = join(o.out, `${host}.key`);
      const cert = join(o.out, `${host}.crt`);
      const csr = `${tmp}.csr`;
      const ext = `${tmp}.ext`;
      writeFileSync(ext, [
        `subjectAltName=${san(names)}`,
        'extendedKeyUsage=serverAuth,clientAuth',
        'keyUsage=critical,digitalSignature',
        'basicConstraints=critical,CA:FALSE',
        '',
      ].join('\n'));
      rmSync(key, { force: true });
      openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
        '-keyout', key, '-out', csr, '-subj', `/CN=${host}`]);
      chmodSync(key, 0o600);
      openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-set_serial', `0x${randomBytes(16).toString('hex')}`,
        '-days', String(days), '-out', cert, '-extfile', ext]);
      made.push({ host, cert, key, names: [...new Set(names)] });
    }
  } finally {
    rmSync(`${tmp}.csr`, { force: true });
    rmSync(`${tmp}.ext`, { force: true });
  }
  return { ca, caKey, reusedCa, hosts: made };
}

export interface RouteCert {
  cert: string;
  key: string;
}

/**
 * The self-signed certificate (with its key, 0600) that broker routes use when no CA was given:
 * `<dir>/route.crt` and `<dir>/route.key`, made once and then reused. Every server of one broker
 * must use the same pair (each trusts exactly this certificate), so it lives next to the
 * credentials it goes with. Names: localhost, 127.0.0.1 and `extraNames`.
 */
export function ensureRouteCert(dir: string, extraNames: string[] = []): RouteCert {
  const cert = join(dir, 'route.crt');
  const key = join(dir, 'route.key');
  if (existsSync(cert) && existsSync(key)) {
    try {
      new X509Certificate(readFileSync(cert));
      return { cert, key };
    } catch {
      // unreadable: make a new one
    }
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  rmSync(key, { force: true });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '3650', '-subj', '/CN=submarine-cluster routes',
    '-addext', `subjectAltName=${san(['localhost', '127.0.0.1', ...extraNames.map(checkCertName)])}`]);
  chmodSync(key, 0o600);
  return { cert, key };
}

/** nats.conf values are parsed as config: a path is passed JSON-quoted so it stays one string. */
export const confString = (s: string): string => JSON.stringify(s);
