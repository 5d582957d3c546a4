/**
 * Which NATS connections members and clients may open: TLS for anything that leaves this host.
 *
 * A `tls://` URL alone does not make nats.js use TLS (measured: nats.js 2.29 connects in clear to
 * a plain server given `tls://host:port` and no `tls` option), so `natsTlsOption` turns TLS on
 * whenever a URL says tls:// or a CA / client certificate is configured; nats.js then checks the
 * server's certificate against the CA and its name against the URL's host (Node's
 * checkServerIdentity).
 */
import { isIP } from 'node:net';

/** 127.0.0.0/8, ::1 and localhost: addresses no other host can reach. 0.0.0.0 is every address, not loopback. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

export interface NatsTls {
  /** CA certificate(s) that sign the broker's servers (PEM file). Without it: the system's CAs. */
  caFile?: string;
  /** Client certificate and key (PEM files), for a broker that verifies clients. */
  certFile?: string;
  keyFile?: string;
}

export class InsecureTransportError extends Error {
  override name = 'InsecureTransportError';
}

const urlHost = (url: string): string => {
  try {
    return new URL(url.includes('://') ? url : `nats://${url}`).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return url;
  }
};

const isTlsUrl = (url: string): boolean => /^tls:\/\//i.test(url.trim());

/**
 * Throws unless every URL is loopback or tls:// (or TLS files are configured, which makes every
 * connection TLS), or `insecure` is set. The message names the first offending URL.
 */
export function checkNatsTransport(urls: string[], o: { tls?: NatsTls | undefined; insecure?: boolean | undefined } = {}): void {
  if (o.insecure) return;
  if (o.tls && (o.tls.caFile || o.tls.certFile)) return;
  const bad = urls.find((u) => !isTlsUrl(u) && !isLoopbackHost(urlHost(u)));
  if (bad !== undefined) {
    throw new InsecureTransportError(
      `NATS server URL '${bad}' is not on loopback and not tls://: refusing to send credentials and Raft traffic in clear across the network ` +
        '(the original cluster\'s Raft port took unauthenticated traffic: CVE-2024-41169). Use tls:// URLs with the broker\'s CA ' +
        '(--nats-ca FILE, SUBMARINE_NATS_CA, natsCaFile in the JSON config, submarine.cluster.nats.ca in the site XML), or pass --insecure on a trusted test network.',
    );
  }
}

/** The `tls` connect option for nats.js, or undefined for a plain connection. */
export function natsTlsOption(urls: string[], tls?: NatsTls): { caFile?: string; certFile?: string; keyFile?: string } | undefined {
  const wanted = urls.some(isTlsUrl) || Boolean(tls?.caFile || tls?.certFile);
  if (!wanted) return undefined;
  const out: { caFile?: string; certFile?: string; keyFile?: string } = {};
  if (tls?.caFile) out.caFile = tls.caFile;
  if (tls?.certFile) out.certFile = tls.certFile;
  if (tls?.keyFile) out.keyFile = tls.keyFile;
  return out;
}
