/**
 * Cluster configuration: defaults < site XML < JSON file < environment < flags.
 *
 * Every value is parsed and checked in the layer it came from, and carries its key and source along,
 * so that any error can say exactly which setting in which place is wrong. Cross-field checks
 * (id among peers, heartbeat timeout vs interval, election timeout vs tick) run once, on the merged
 * result, and blame the setting that was actually given rather than a default.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULT_ELECTION_TIMEOUT_MS } from './raft/state.ts';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface ClusterConfig {
  /** This member's id; one of `peers`. */
  id: string;
  /** Member ids, e.g. `['127.0.0.1:6000', '127.0.0.1:6001']`. */
  peers: string[];
  /** Cluster name (NATS subject prefix). */
  cluster: string;
  /** NATS server URLs, normalized to `nats://` or `tls://`. */
  nats: string[];
  natsUser?: string;
  natsPass?: string;
  natsCredentialsFile?: string;
  /** CA of the broker's servers (PEM): connections use TLS and check the servers' certificates and names. */
  natsCaFile?: string;
  /** Client certificate and key (PEM) for a broker that verifies clients. */
  natsCertFile?: string;
  natsKeyFile?: string;
  dataDir: string;
  /** submarine.server.addr and workbench.server.addr, in that order, without duplicates. */
  serverAddrs: string[];
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  electionTimeoutMs: { min: number; max: number };
  heartbeatTickMs: number;
  dashboardPort?: number;
  /** This member serves GET /metrics (Prometheus text) on 127.0.0.1:metricsPort. */
  metricsPort?: number;
  /** Snapshot the metadata center and compact the log every this many applied entries (default 10000). */
  snapshotEveryEntries: number;
  /**
   * Leader: how long a commit-index advance with no new entries to carry it waits for the next
   * append before a commit-only append takes it to the followers; 0 sends it at once (default 2).
   */
  commitFlushDelayMs: number;
  logLevel: LogLevel;
  /** Non-fatal findings worth logging at startup. */
  warnings: string[];
}

export interface LoadConfigOptions {
  /** Command-line arguments without node and script; default `process.argv.slice(2)`. */
  argv?: string[];
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Site XML used when neither --site-xml nor SUBMARINE_SITE_XML / ZEPPELIN_SITE_XML names one. */
  siteXmlPath?: string;
  /** JSON file used when neither --config nor SUBMARINE_CONFIG names one. */
  jsonPath?: string;
  /** Base for relative file paths and for finding conf/*-site.xml; default `process.cwd()`. */
  cwd?: string;
  /** The argv is shared with a host program: ignore flags and arguments that are not ours. */
  allowUnknownFlags?: boolean;
  /** A member joining a running cluster: its id need not be among the (existing) peers yet. */
  joining?: boolean;
}

/** "flag --x", "env X", "default", or "key in /path/file": where a setting came from, said once. */
const where = ({ key, source }: { key: string; source: string }): string =>
  source === 'default' || source === `env ${key}` || source === `flag ${key}` ? source : `${key} in ${source}`;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The setting as spelled where it was given: XML property, JSON field, env variable or `--flag`. */
  readonly key: string;
  /** Where it was given: a file path, `env NAME`, `flag --name`, `option NAME` or `default`. */
  readonly source: string;
  /** Line in the source file, when known. */
  readonly line?: number;

  constructor(key: string, source: string, detail: string, line?: number) {
    super(`${where({ key, source })}${line === undefined ? '' : ` (line ${line})`}: ${detail}`);
    this.key = key;
    this.source = source;
    if (line !== undefined) this.line = line;
  }
}

// ---------------------------------------------------------------------------------------------
// Site XML (Hadoop-style <configuration><property><name/><value/></property></configuration>)

interface XmlElement {
  name: string;
  line: number;
  children: XmlElement[];
  /** Direct text content, entities decoded, CDATA included. */
  text: string;
}

const XML_NAME = /[A-Za-z_:\u00C0-\uFFFF][-A-Za-z0-9_:.\u00B7\u00C0-\uFFFF]*/y;
const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

const lineAt = (text: string, pos: number): number => {
  let line = 1;
  for (let i = 0; i < pos && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
};

/**
 * A small, strict XML reader: enough of XML 1.0 for configuration files (elements, attributes,
 * text, CDATA, comments, processing instructions, a DOCTYPE to skip, the five predefined entities
 * and character references). Anything else is an error with a line number, not a silent guess:
 * a half-read site file would quietly drop cluster settings.
 */
class XmlReader {
  private pos = 0;

  constructor(
    private readonly src: string,
    private readonly source: string,
  ) {
    if (src.charCodeAt(0) === 0xfeff) this.pos = 1; // byte-order mark
  }

  document(): XmlElement {
    let root: XmlElement | undefined;
    for (;;) {
      this.skipSpace();
      if (this.pos >= this.src.length) break;
      if (this.at('<?')) this.skipPast('?>', 'processing instruction');
      else if (this.at('<!--')) this.skipPast('-->', 'comment');
      else if (this.at('<!DOCTYPE')) this.skipDoctype();
      else if (this.at('<') && !root) root = this.element();
      else if (this.at('<')) this.fail('a second top-level element (only one root is allowed)');
      else this.fail('text outside the root element');
    }
    return root ?? this.fail('no root element');
  }

  private element(): XmlElement {
    const start = this.pos;
    const line = lineAt(this.src, start);
    this.pos++; // '<'
    const name = this.name('element name');
    const el: XmlElement = { name, line, children: [], text: '' };
    // Attributes are parsed only to be skipped correctly (a '>' may sit inside a quoted value).
    for (;;) {
      this.skipSpace();
      if (this.at('/>')) {
        this.pos += 2;
        return el;
      }
      if (this.at('>')) {
        this.pos++;
        break;
      }
      if (this.pos >= this.src.length) this.fail(`<${name}> tag is not closed`, start);
      this.name(`attribute name in <${name}>`);
      this.skipSpace();
      if (!this.at('=')) this.fail(`attribute in <${name}> needs ="value"`);
      this.pos++;
      this.skipSpace();
      const quote = this.src[this.pos];
      if (quote !== '"' && quote !== "'") this.fail(`attribute value in <${name}> must be quoted`);
      const end = this.src.indexOf(quote, this.pos + 1);
      if (end < 0) this.fail(`unterminated attribute value in <${name}>`);
      const raw = this.src.slice(this.pos + 1, end);
      if (raw.includes('<')) this.fail(`'<' in an attribute value of <${name}>`);
      this.decode(raw, this.pos + 1);
      this.pos = end + 1;
    }
    for (;;) {
      if (this.pos >= this.src.length) this.fail(`<${name}> opened on line ${line} is never closed`, start);
      if (this.at('</')) {
        const closeAt = this.pos;
        this.pos += 2;
        const endName = this.name('closing tag name');
        this.skipSpace();
        if (!this.at('>')) this.fail(`</${endName}> tag is not closed`);
        this.pos++;
        if (endName !== name) this.fail(`</${endName}> does not match <${name}> opened on line ${line}`, closeAt);
        return el;
      }
      if (this.at('<!--')) this.skipPast('-->', 'comment');
      else if (this.at('<![CDATA[')) {
        const end = this.src.indexOf(']]>', this.pos);
        if (end < 0) this.fail('unterminated CDATA section');
        el.text += this.src.slice(this.pos + 9, end);
        this.pos = end + 3;
      } else if (this.at('<?')) this.skipPast('?>', 'processing instruction');
      else if (this.at('<!')) this.fail('unexpected markup declaration inside an element');
      else if (this.at('<')) el.children.push(this.element());
      else {
        const next = this.src.indexOf('<', this.pos);
        const end = next < 0 ? this.src.length : next;
        el.text += this.decode(this.src.slice(this.pos, end), this.pos);
        this.pos = end;
      }
    }
  }

  private decode(raw: string, offset: number): string {
    let out = '';
    let i = 0;
    for (let amp = raw.indexOf('&'); amp >= 0; amp = raw.indexOf('&', i)) {
      out += raw.slice(i, amp);
      const semi = raw.indexOf(';', amp);
      const ref = semi < 0 ? '' : raw.slice(amp + 1, semi);
      let ch: string | undefined = NAMED_ENTITIES[ref];
      const num = /^#(?:([0-9]{1,7})|x([0-9A-Fa-f]{1,6}))$/.exec(ref);
      if (num) {
        const cp = num[1] !== undefined ? Number(num[1]) : parseInt(num[2]!, 16);
        if (cp > 0 && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff)) ch = String.fromCodePoint(cp);
      }
      if (ch === undefined) {
        const shown = semi < 0 || semi - amp > 12 ? "a bare '&' (write &amp;)" : `unknown entity &${ref};`;
        this.fail(shown, offset + amp);
      }
      out += ch;
      i = semi + 1;
    }
    return out + raw.slice(i);
  }

  private name(what: string): string {
    XML_NAME.lastIndex = this.pos;
    const m = XML_NAME.exec(this.src);
    if (!m) this.fail(`expected ${what}`);
    this.pos += m[0].length;
    return m[0];
  }

  private skipDoctype(): void {
    // Skipped, not interpreted: entities declared here are then reported as unknown where used.
    let depth = 0;
    for (let i = this.pos + 9; i < this.src.length; i++) {
      const c = this.src[i];
      if (c === '[') depth++;
      else if (c === ']') depth--;
      else if (c === '>' && depth <= 0) {
        this.pos = i + 1;
        return;
      }
    }
    this.fail('unterminated DOCTYPE');
  }

  private skipPast(terminator: string, what: string): void {
    const end = this.src.indexOf(terminator, this.pos + 2);
    if (end < 0) this.fail(`unterminated ${what}`);
    this.pos = end + terminator.length;
  }

  private skipSpace(): void {
    while (this.pos < this.src.length && /\s/.test(this.src[this.pos]!)) this.pos++;
  }

  private at(s: string): boolean {
    return this.src.startsWith(s, this.pos);
  }

  private fail(detail: string, pos = this.pos): never {
    throw new ConfigError('xml', this.source, `malformed XML: ${detail}`, lineAt(this.src, pos));
  }
}

interface SiteEntry {
  value: string;
  line: number;
}

function readSiteXml(xml: string, source: string): Map<string, SiteEntry> {
  const root = new XmlReader(xml, source).document();
  if (root.name !== 'configuration') {
    throw new ConfigError('xml', source, `root element must be <configuration>, found <${root.name}>`, root.line);
  }
  const out = new Map<string, SiteEntry>();
  for (const p of root.children) {
    if (p.name !== 'property') continue; // Hadoop files may also hold <include> and friends.
    const names = p.children.filter((c) => c.name === 'name');
    const values = p.children.filter((c) => c.name === 'value');
    const name = names.length === 1 ? names[0]!.text.trim() : '';
    if (!name) throw new ConfigError('xml', source, '<property> needs exactly one non-empty <name>', p.line);
    if (values.length > 1) throw new ConfigError(name, source, 'more than one <value>', p.line);
    // As in Hadoop, a property without <value> sets nothing; a later duplicate overrides an earlier one.
    if (values.length === 1) out.set(name, { value: values[0]!.text.trim(), line: p.line });
  }
  return out;
}

/** Properties of a Hadoop-style site file; names and values are trimmed. */
export function parseSiteXml(xml: string, source = 'site XML'): Map<string, string> {
  return new Map([...readSiteXml(xml, source)].map(([k, e]) => [k, e.value]));
}

// ---------------------------------------------------------------------------------------------
// Flags

const FLAG_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function parseArgv(argv: string[], strict: boolean): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break; // conventional end of options: the rest is not ours
    if (!arg.startsWith('--')) {
      if (!strict) continue;
      // Typically a list broken by a space: `--peers a, b`.
      throw new ConfigError(arg, 'command line', `unexpected argument '${arg}' (flags are --name value or --name=value; quote lists that contain spaces)`);
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    if (!FLAG_NAME.test(name)) {
      if (!strict) continue;
      throw new ConfigError(arg, 'command line', `'${arg}' is not a valid flag`);
    }
    if (eq >= 0) out[name] = arg.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1]!.startsWith('--')) out[name] = argv[++i]!;
    else out[name] = true;
  }
  return out;
}

/**
 * `--key value`, `--key=value` and bare `--flag` (true). A later repeat wins. Stops at `--`.
 * A stray positional argument is an error: it is usually half of a list split by the shell.
 */
export function parseFlags(argv: string[]): Record<string, string | boolean> {
  return parseArgv(argv, true);
}

// ---------------------------------------------------------------------------------------------
// Values: each parser checks one setting from one source and throws a ConfigError naming both.

type Settable = Omit<ClusterConfig, 'warnings'>;
type Field = keyof Settable;
type Value<F extends Field> = NonNullable<Settable[F]>;
interface At {
  key: string;
  source: string;
  line?: number;
}
interface Setting<T> extends At {
  value: T;
}
type Layer = { [F in Field]?: Setting<Value<F>> };

const bad = (at: At, detail: string): never => {
  throw new ConfigError(at.key, at.source, detail, at.line);
};

// setTimeout treats anything above 2^31-1 ms as 1 ms: a huge timeout would become a tight loop.
const MAX_TIMER_MS = 2 ** 31 - 1;

const splitList = (raw: string): string[] =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

function unique(items: string[], at: At): string[] {
  const seen = new Set<string>();
  for (const item of items) {
    const k = item.toLowerCase(); // host names are case-insensitive; ids compared the same way to be safe
    if (seen.has(k)) bad(at, `lists '${item}' more than once`);
    seen.add(k);
  }
  return items;
}

function splitHostPort(entry: string): { host: string; port: number } | string {
  let host: string;
  let portText: string;
  if (entry.startsWith('[')) {
    const close = entry.indexOf(']');
    if (close < 0) return "missing ']' after the IPv6 address";
    host = entry.slice(1, close);
    if (!/^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$/.test(host) || !host.includes(':')) return `'${host}' is not an IPv6 address`;
    if (entry[close + 1] !== ':') return 'missing :port';
    host = `[${host}]`;
    portText = entry.slice(close + 2);
  } else {
    const colon = entry.lastIndexOf(':');
    if (colon < 0) return 'missing :port';
    host = entry.slice(0, colon);
    portText = entry.slice(colon + 1);
    if (host.includes(':')) return 'an IPv6 address needs brackets, e.g. [::1]:6000';
    if (host === '') return 'empty host';
    if (!/^[A-Za-z0-9._-]+$/.test(host)) return `bad host '${host}'`;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return `bad port '${portText}'`;
  const port = Number(portText);
  if (port < 1 || port > 65535) return `port ${port} is outside 1..65535`;
  return { host, port };
}

/** host:port, as the released Zeppelin/Submarine code builds member ids (port read as an integer). */
function hostPort(entry: string, at: At): string {
  const hp = splitHostPort(entry);
  if (typeof hp === 'string') return bad(at, `bad entry '${entry}': ${hp}`);
  return `${hp.host}:${hp.port}`;
}

/** "host:port,host:port": split on ',', trimmed, empty entries skipped, duplicates rejected. */
const addrList = (raw: string, at: At): string[] => unique(splitList(raw).map((e) => hostPort(e, at)), at);

function memberId(raw: string, at: At): string {
  const id = raw.trim();
  if (!/^[^\s,\x00-\x1f\x7f]{1,255}$/.test(id)) bad(at, `bad member id '${raw}' (1-255 characters, no spaces or commas)`);
  return id;
}

const idList = (raw: string, at: At): string[] => unique(splitList(raw).map((e) => memberId(e, at)), at);

function natsUrl(raw: string, at: At): string {
  const s = raw.trim();
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(s)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    const hp = splitHostPort(s);
    if (typeof hp === 'string') return bad(at, `NATS server '${s}' is neither a nats:// or tls:// URL nor host:port (${hp})`);
    return `nats://${hp.host}:${hp.port}`;
  }
  if (scheme !== 'nats' && scheme !== 'tls') return bad(at, `NATS server '${s}' uses ${scheme}://; expected nats:// or tls://`);
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return bad(at, `NATS server URL '${s}' does not parse`);
  }
  if (!url.hostname) bad(at, `NATS server URL '${s}' has no host`);
  if (url.port === '0') bad(at, `NATS server URL '${s}' has port 0`);
  if ((url.pathname && url.pathname !== '/') || url.search || url.hash) bad(at, `NATS server URL '${s}' must not have a path, query or fragment`);
  return s;
}

const natsList = (raw: string, at: At): string[] => splitList(raw).map((u) => natsUrl(u, at));

function nonEmpty(raw: string, at: At): string {
  if (raw.trim() === '') bad(at, 'is empty');
  return raw;
}

function checkInt(n: number, at: At, max: number, min = 1): number {
  if (!Number.isInteger(n) || n < min) bad(at, `must be ${min === 0 ? 'a non-negative' : 'a positive'} integer, got ${n}`);
  if (n > max) bad(at, `must be at most ${max}, got ${n}`);
  return n;
}

function intFromString(raw: string, at: At, max: number, min = 1): number {
  const s = raw.trim();
  // Strict: "3s", "3e3" or "1.5" are mistakes to report, not numbers to guess at.
  if (!/^[0-9]+$/.test(s)) bad(at, `must be ${min === 0 ? 'a non-negative' : 'a positive'} integer, got '${raw}'`);
  return checkInt(Number(s), at, max, min);
}

const MAX_COMMIT_FLUSH_DELAY_MS = 1000;

const timerMs = (raw: string, at: At): number => intFromString(raw, at, MAX_TIMER_MS);
const port = (raw: string, at: At): number => intFromString(raw, at, 65535);

function clusterName(raw: string, at: At): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(raw)) bad(at, `cluster name '${raw}' must be 1-64 of A-Z a-z 0-9 _ -`);
  return raw;
}

function logLevel(raw: string, at: At): LogLevel {
  const level = raw.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) bad(at, `log level '${raw}' is not one of ${LOG_LEVELS.join(', ')}`);
  return level as LogLevel;
}

function electionRange(raw: string, at: At): { min: number; max: number } {
  const m = /^\s*([0-9]+)\s*-\s*([0-9]+)\s*$/.exec(raw);
  if (!m) return bad(at, `must be min-max in ms, e.g. 150-300, got '${raw}'`);
  return { min: timerMs(m[1]!, at), max: timerMs(m[2]!, at) };
}

/** How each setting reads from a string (environment and flags). */
const FROM_STRING: { [F in Field]: (raw: string, at: At) => Value<F> } = {
  id: memberId,
  peers: idList,
  cluster: (raw, at) => clusterName(raw.trim(), at),
  nats: natsList,
  natsUser: nonEmpty,
  natsPass: nonEmpty,
  natsCredentialsFile: (raw, at) => nonEmpty(raw, at).trim(),
  natsCaFile: (raw, at) => nonEmpty(raw, at).trim(),
  natsCertFile: (raw, at) => nonEmpty(raw, at).trim(),
  natsKeyFile: (raw, at) => nonEmpty(raw, at).trim(),
  dataDir: (raw, at) => nonEmpty(raw, at).trim(),
  serverAddrs: addrList,
  heartbeatIntervalMs: timerMs,
  heartbeatTimeoutMs: timerMs,
  electionTimeoutMs: electionRange,
  heartbeatTickMs: timerMs,
  dashboardPort: port,
  metricsPort: port,
  snapshotEveryEntries: timerMs,
  commitFlushDelayMs: (raw, at) => intFromString(raw, at, MAX_COMMIT_FLUSH_DELAY_MS, 0),
  logLevel,
};

// ---------------------------------------------------------------------------------------------
// Sources

const set = <F extends Field>(layer: Layer, field: F, value: Value<F>, at: At): void => {
  (layer as Record<Field, Setting<unknown>>)[field] = { ...at, value };
};

/** Site XML keys; several keys for one field are aliases (Submarine / Zeppelin spellings). */
const XML_KEYS: { field: Field; keys: string[]; parse: (raw: string, at: At) => unknown; combine: 'same' | 'union' }[] = [
  { field: 'peers', keys: ['submarine.cluster.addr', 'zeppelin.cluster.addr'], parse: addrList, combine: 'same' },
  // Two daemons, two lists: together they are this deployment's server addresses.
  { field: 'serverAddrs', keys: ['submarine.server.addr', 'workbench.server.addr'], parse: addrList, combine: 'union' },
  // Submarine spells these without a prefix; released Zeppelin uses zeppelin.cluster.heartbeat.*.
  { field: 'heartbeatIntervalMs', keys: ['cluster.heartbeat.interval', 'zeppelin.cluster.heartbeat.interval'], parse: timerMs, combine: 'same' },
  { field: 'heartbeatTimeoutMs', keys: ['cluster.heartbeat.timeout', 'zeppelin.cluster.heartbeat.timeout'], parse: timerMs, combine: 'same' },
  { field: 'cluster', keys: ['submarine.cluster.name'], parse: FROM_STRING.cluster, combine: 'same' },
  { field: 'nats', keys: ['submarine.cluster.nats'], parse: natsList, combine: 'same' },
  { field: 'natsCaFile', keys: ['submarine.cluster.nats.ca'], parse: FROM_STRING.natsCaFile, combine: 'same' },
  { field: 'natsCertFile', keys: ['submarine.cluster.nats.cert'], parse: FROM_STRING.natsCertFile, combine: 'same' },
  { field: 'natsKeyFile', keys: ['submarine.cluster.nats.key'], parse: FROM_STRING.natsKeyFile, combine: 'same' },
  { field: 'dataDir', keys: ['submarine.cluster.data.dir'], parse: FROM_STRING.dataDir, combine: 'same' },
];

const sameValue = (a: unknown, b: unknown): boolean => {
  const norm = (v: unknown) => (Array.isArray(v) ? v.map((s) => String(s).toLowerCase()).sort() : v);
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
};

function xmlLayer(entries: Map<string, SiteEntry>, source: string): Layer {
  const layer: Layer = {};
  for (const { field, keys, parse, combine } of XML_KEYS) {
    let merged: Setting<unknown> | undefined;
    for (const key of keys) {
      const entry = entries.get(key);
      // An empty value means "not set": the released code treats an empty cluster.addr as "no cluster".
      if (!entry || entry.value === '') continue;
      const at: At = { key, source, line: entry.line };
      const value = parse(entry.value, at);
      if (!merged) merged = { ...at, value };
      else if (combine === 'union') {
        merged.value = [...new Map([...(merged.value as string[]), ...(value as string[])].map((a) => [a.toLowerCase(), a])).values()];
      } else if (!sameValue(merged.value, value)) {
        bad(at, `'${entry.value}' differs from ${merged.key} (line ${merged.line}); set one of them, or both alike`);
      }
    }
    if (merged) set(layer, field, merged.value as never, merged);
  }
  return layer;
}

const JSON_TYPES: { [F in Field]: 'string' | 'string[]' | 'integer' | 'range' } = {
  id: 'string',
  peers: 'string[]',
  cluster: 'string',
  nats: 'string[]',
  natsUser: 'string',
  natsPass: 'string',
  natsCredentialsFile: 'string',
  natsCaFile: 'string',
  natsCertFile: 'string',
  natsKeyFile: 'string',
  dataDir: 'string',
  serverAddrs: 'string[]',
  heartbeatIntervalMs: 'integer',
  heartbeatTimeoutMs: 'integer',
  electionTimeoutMs: 'range',
  heartbeatTickMs: 'integer',
  dashboardPort: 'integer',
  metricsPort: 'integer',
  snapshotEveryEntries: 'integer',
  commitFlushDelayMs: 'integer',
  logLevel: 'string',
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function jsonLayer(text: string, path: string): Layer {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    const pos = /position (\d+)/.exec((e as Error).message)?.[1];
    throw new ConfigError('json', path, `not valid JSON: ${(e as Error).message}`, pos === undefined ? undefined : lineAt(text, Number(pos)));
  }
  if (!isObject(data)) throw new ConfigError('json', path, 'must hold a JSON object');
  const layer: Layer = {};
  for (const [key, v] of Object.entries(data)) {
    const at: At = { key, source: path };
    const type = Object.hasOwn(JSON_TYPES, key) ? JSON_TYPES[key as Field] : undefined;
    if (!type) bad(at, `unknown field '${key}' (known: ${Object.keys(JSON_TYPES).join(', ')})`);
    const field = key as Field;
    const wrong = (): never => bad(at, `must be ${type === 'range' ? 'an object {min, max}' : type === 'string[]' ? 'an array of strings' : `a${type === 'integer' ? 'n' : ''} ${type}`}, got ${JSON.stringify(v)}`);
    let value: unknown;
    if (type === 'string') {
      if (typeof v !== 'string') wrong();
      value = FROM_STRING[field](v as string, at);
    } else if (type === 'integer') {
      if (typeof v !== 'number') wrong();
      if (field === 'commitFlushDelayMs') value = checkInt(v as number, at, MAX_COMMIT_FLUSH_DELAY_MS, 0);
      else value = checkInt(v as number, at, field === 'dashboardPort' || field === 'metricsPort' ? 65535 : MAX_TIMER_MS);
    } else if (type === 'string[]') {
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) wrong();
      // Reuse the list parser so arrays and comma lists obey the same rules (trim, skip empty, no duplicates).
      const items = v as string[];
      if (items.some((s) => s.includes(','))) bad(at, 'an array entry contains a comma; give one item per entry');
      value = FROM_STRING[field](items.join(','), at);
    } else {
      if (!isObject(v)) wrong();
      const r = v as Record<string, unknown>;
      for (const k of Object.keys(r)) if (k !== 'min' && k !== 'max') bad({ key: `${key}.${k}`, source: path }, `unknown field '${key}.${k}'`);
      const bound = (k: 'min' | 'max'): number => {
        const sub = { key: `${key}.${k}`, source: path };
        if (typeof r[k] !== 'number') bad(sub, `must be an integer, got ${JSON.stringify(r[k])}`);
        return checkInt(r[k] as number, sub, MAX_TIMER_MS);
      };
      value = { min: bound('min'), max: bound('max') };
    }
    set(layer, field, value as never, at);
  }
  return layer;
}

const ENV_VARS: Record<string, Field> = {
  SUBMARINE_CLUSTER_ID: 'id',
  SUBMARINE_CLUSTER_PEERS: 'peers',
  SUBMARINE_CLUSTER_NAME: 'cluster',
  SUBMARINE_NATS: 'nats',
  SUBMARINE_NATS_USER: 'natsUser',
  SUBMARINE_NATS_PASS: 'natsPass',
  SUBMARINE_NATS_CREDENTIALS: 'natsCredentialsFile',
  SUBMARINE_NATS_CA: 'natsCaFile',
  SUBMARINE_NATS_CERT: 'natsCertFile',
  SUBMARINE_NATS_KEY: 'natsKeyFile',
  SUBMARINE_DATA_DIR: 'dataDir',
  SUBMARINE_HEARTBEAT_INTERVAL_MS: 'heartbeatIntervalMs',
  SUBMARINE_HEARTBEAT_TIMEOUT_MS: 'heartbeatTimeoutMs',
  SUBMARINE_ELECTION_TIMEOUT_MS: 'electionTimeoutMs',
  SUBMARINE_DASHBOARD_PORT: 'dashboardPort',
  SUBMARINE_METRICS_PORT: 'metricsPort',
  SUBMARINE_SNAPSHOT_EVERY: 'snapshotEveryEntries',
  SUBMARINE_COMMIT_FLUSH_DELAY_MS: 'commitFlushDelayMs',
  SUBMARINE_LOG_LEVEL: 'logLevel',
};

const FLAGS: Record<string, Field> = {
  id: 'id',
  peers: 'peers',
  cluster: 'cluster',
  nats: 'nats',
  'nats-user': 'natsUser',
  'nats-pass': 'natsPass',
  'nats-credentials': 'natsCredentialsFile',
  'nats-ca': 'natsCaFile',
  'nats-cert': 'natsCertFile',
  'nats-key': 'natsKeyFile',
  'data-dir': 'dataDir',
  'heartbeat-interval': 'heartbeatIntervalMs',
  'heartbeat-timeout': 'heartbeatTimeoutMs',
  'election-timeout': 'electionTimeoutMs',
  'dashboard-port': 'dashboardPort',
  'metrics-port': 'metricsPort',
  'snapshot-every': 'snapshotEveryEntries',
  'commit-flush-delay': 'commitFlushDelayMs',
  'log-level': 'logLevel',
};
const FILE_FLAGS = ['config', 'site-xml'];
const KNOWN_FLAGS = [...Object.keys(FLAGS), ...FILE_FLAGS];

/** Empty variables count as unset: `FOO=` is how many launchers "unset" a variable. */
const envValue = (env: NodeJS.ProcessEnv, name: string): string | undefined => {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v;
};

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

function flagValue(flags: Record<string, string | boolean>, name: string): string | undefined {
  const v = flags[name];
  if (v === true || v === false) throw new ConfigError(`--${name}`, `flag --${name}`, 'needs a value');
  return v;
}

interface FileRef extends At {
  path: string;
}

function readNamed(ref: FileRef, what: string): string {
  try {
    return readFileSync(ref.path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError(ref.key, ref.source, code === 'ENOENT' ? `${what} ${ref.path} does not exist` : `cannot read ${what} ${ref.path}: ${(e as Error).message}`);
  }
}

/** The first source that names the file: flag, then environment, then the caller's option. */
function namedFile(cwd: string, candidates: [key: string, source: string, value: string | undefined][]): FileRef | undefined {
  for (const [key, source, value] of candidates) {
    if (value !== undefined) return { key, source, path: resolve(cwd, nonEmpty(value, { key, source })) };
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Merge and cross-check

const DEFAULTS = {
  cluster: 'submarine',
  nats: ['nats://127.0.0.1:4222'],
  serverAddrs: [] as string[],
  heartbeatIntervalMs: 3000,
  heartbeatTimeoutMs: 9000,
  electionTimeoutMs: { ...DEFAULT_ELECTION_TIMEOUT_MS },
  heartbeatTickMs: 50,
  snapshotEveryEntries: 10_000,
  commitFlushDelayMs: 2,
  logLevel: 'info' as LogLevel,
};
type Defaulted = keyof typeof DEFAULTS;

function resolveConfig(layers: Layer[], joining = false): ClusterConfig {
  const s: Layer = Object.assign({}, ...layers);
  const get = <F extends Defaulted>(f: F): Setting<(typeof DEFAULTS)[F]> =>
    (s[f] as Setting<(typeof DEFAULTS)[F]> | undefined) ?? { key: f, source: 'default', value: DEFAULTS[f] };
  // A cross-field error blames the setting someone actually wrote, not a default.
  const blame = (a: At, b: At): At => (a.source === 'default' ? b : a);
  const warnings: string[] = [];

  const peers = s.peers ?? bad({ key: 'peers', source: 'default' }, 'no cluster members configured: set submarine.cluster.addr in the site XML, SUBMARINE_CLUSTER_PEERS, or --peers');
  if (peers.value.length === 0) bad(peers, 'lists no cluster members');
  const peerList = `${peers.value.join(', ')} (from ${where(peers)})`;

  let id: string;
  if (s.id) {
    if (!joining && !peers.value.includes(s.id.value)) bad(s.id, `'${s.id.value}' is not one of the peers: ${peerList}`);
    id = s.id.value;
  } else {
    // Which member am I? The one peer that is also this server's own address.
    const servers = new Set(get('serverAddrs').value.map((a) => a.toLowerCase()));
    const mine = peers.value.filter((p) => servers.has(p.toLowerCase()));
    if (mine.length === 1) id = mine[0]!;
    else if (peers.value.length === 1) id = peers.value[0]!; // a one-member cluster: there is nobody else to be
    else {
      const why = mine.length === 0 ? 'no server address is among the peers' : `several server addresses are peers (${mine.join(', ')})`;
      return bad({ key: 'id', source: peers.source }, `cannot tell which member this is: pass --id (or SUBMARINE_CLUSTER_ID); ${why}; peers: ${peerList}`);
    }
  }

  const interval = get('heartbeatIntervalMs');
  const timeout = get('heartbeatTimeoutMs');
  const hb = `heartbeat timeout ${timeout.value} ms (${where(timeout)}) vs interval ${interval.value} ms (${where(interval)})`;
  // The released ClusterMonitor calls a timeout below the interval an error; below 3x it only warns.
  if (timeout.value < interval.value) bad(blame(timeout, interval), `${hb}: the timeout must not be below the interval`);
  if (timeout.value < 3 * interval.value) warnings.push(`${hb}: a timeout under 3x the interval may declare live servers dead`);

  const election = get('electionTimeoutMs');
  const tick = get('heartbeatTickMs');
  const { min, max } = election.value;
  if (min >= max) bad(election, `election timeout min ${min} ms must be below max ${max} ms`);
  // A follower must hear at least two leader heartbeats before it may start an election.
  if (min < 2 * tick.value) bad(blame(election, tick), `election timeout min ${min} ms must be at least 2x the heartbeat tick ${tick.value} ms (${where(tick)})`);

  if (s.natsPass && !s.natsUser) bad(s.natsPass, 'a NATS password needs a NATS user too');
  if (s.natsUser && !s.natsPass) bad(s.natsUser, 'a NATS user needs a NATS password too');
  if (s.natsCertFile && !s.natsKeyFile) bad(s.natsCertFile, 'a NATS client certificate needs its key too (natsKeyFile)');
  if (s.natsKeyFile && !s.natsCertFile) bad(s.natsKeyFile, 'a NATS client key needs its certificate too (natsCertFile)');
  if (s.natsPass?.source.startsWith('flag ')) warnings.push('--nats-pass on the command line is visible to other local users (ps); prefer SUBMARINE_NATS_PASS or --nats-credentials');

  // Member ids such as "127.0.0.1:6000" or "[::1]:6000" are not safe path segments everywhere.
  const safeId = id.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+$/, (dots) => '_'.repeat(dots.length));
  const config: ClusterConfig = {
    id,
    peers: [...peers.value],
    cluster: get('cluster').value,
    nats: [...get('nats').value],
    dataDir: s.dataDir?.value ?? `./data/${safeId}`,
    serverAddrs: [...get('serverAddrs').value],
    heartbeatIntervalMs: interval.value,
    heartbeatTimeoutMs: timeout.value,
    electionTimeoutMs: { min, max },
    heartbeatTickMs: tick.value,
    snapshotEveryEntries: get('snapshotEveryEntries').value,
    commitFlushDelayMs: get('commitFlushDelayMs').value,
    logLevel: get('logLevel').value,
    warnings,
  };
  if (config.nats.length === 0) bad(get('nats'), 'lists no NATS servers');
  if (s.natsUser) config.natsUser = s.natsUser.value;
  if (s.natsPass) config.natsPass = s.natsPass.value;
  if (s.natsCredentialsFile) config.natsCredentialsFile = s.natsCredentialsFile.value;
  if (s.natsCaFile) config.natsCaFile = s.natsCaFile.value;
  if (s.natsCertFile) config.natsCertFile = s.natsCertFile.value;
  if (s.natsKeyFile) config.natsKeyFile = s.natsKeyFile.value;
  if (s.dashboardPort) config.dashboardPort = s.dashboardPort.value;
  if (s.metricsPort) config.metricsPort = s.metricsPort.value;
  return config;
}

/**
 * Builds the configuration from, lowest to highest: defaults, site XML, JSON file, environment, flags.
 *
 * Site XML: --site-xml, else SUBMARINE_SITE_XML, else ZEPPELIN_SITE_XML, else `siteXmlPath`, else
 * conf/submarine-site.xml or conf/zeppelin-site.xml under cwd if present. JSON: --config, else
 * SUBMARINE_CONFIG, else `jsonPath`. A file that is named but missing is an error.
 */
export function loadConfig(o: LoadConfigOptions = {}): ClusterConfig {
  const env = o.env ?? process.env;
  const cwd = o.cwd ?? process.cwd();
  const flags = parseArgv(o.argv ?? process.argv.slice(2), !o.allowUnknownFlags);

  for (const name of Object.keys(flags)) {
    if (KNOWN_FLAGS.includes(name)) continue;
    if (o.allowUnknownFlags) {
      delete flags[name];
      continue;
    }
    const near = KNOWN_FLAGS.filter((k) => editDistance(k, name) <= 2);
    throw new ConfigError(`--${name}`, `flag --${name}`, `unknown flag${near.length ? `; did you mean --${near.join(' or --')}?` : ` (known: --${KNOWN_FLAGS.join(', --')})`}`);
  }

  const layers: Layer[] = [];

  const xmlRef = namedFile(cwd, [
    ['--site-xml', 'flag --site-xml', flagValue(flags, 'site-xml')],
    ['SUBMARINE_SITE_XML', 'env SUBMARINE_SITE_XML', envValue(env, 'SUBMARINE_SITE_XML')],
    ['ZEPPELIN_SITE_XML', 'env ZEPPELIN_SITE_XML', envValue(env, 'ZEPPELIN_SITE_XML')],
    ['siteXmlPath', 'option siteXmlPath', o.siteXmlPath],
  ]);
  if (xmlRef) {
    layers.push(xmlLayer(readSiteXml(readNamed(xmlRef, 'site XML file'), xmlRef.path), xmlRef.path));
  } else {
    // Conventional locations are optional: a server without a site file is fine.
    for (const name of ['submarine-site.xml', 'zeppelin-site.xml']) {
      const path = resolve(cwd, 'conf', name);
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw new ConfigError('xml', path, `cannot read site XML file: ${(e as Error).message}`);
      }
      layers.push(xmlLayer(readSiteXml(text, path), path));
      break;
    }
  }

  const jsonRef = namedFile(cwd, [
    ['--config', 'flag --config', flagValue(flags, 'config')],
    ['SUBMARINE_CONFIG', 'env SUBMARINE_CONFIG', envValue(env, 'SUBMARINE_CONFIG')],
    ['jsonPath', 'option jsonPath', o.jsonPath],
  ]);
  if (jsonRef) layers.push(jsonLayer(readNamed(jsonRef, 'JSON config file'), jsonRef.path));

  const envLayer: Layer = {};
  for (const [name, field] of Object.entries(ENV_VARS)) {
    const raw = envValue(env, name);
    const at = { key: name, source: `env ${name}` };
    if (raw !== undefined) set(envLayer, field, FROM_STRING[field](raw, at) as never, at);
  }
  layers.push(envLayer);

  const flagLayer: Layer = {};
  for (const [name, field] of Object.entries(FLAGS)) {
    const raw = flagValue(flags, name);
    const at = { key: `--${name}`, source: `flag --${name}` };
    if (raw !== undefined) set(flagLayer, field, FROM_STRING[field](raw, at) as never, at);
  }
  layers.push(flagLayer);

  return resolveConfig(layers, o.joining);
}

/** One role's user and password from a credentials file written by the project's NATS launcher. */
export function natsCredentials(file: string | undefined, who: 'member' | 'client'): { user: string; pass: string } | undefined {
  if (!file) return undefined;
  const all = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { user: string; pass: string }>;
  const c = all[who];
  if (!c?.user || !c?.pass) throw new ConfigError(`${file} has no ${who} credentials`, 'nats-credentials', file);
  return c;
}

/** TLS files of a connection from a config: undefined when none is set. */
export function natsTlsOf(c: Pick<ClusterConfig, 'natsCaFile' | 'natsCertFile' | 'natsKeyFile'>): { caFile?: string; certFile?: string; keyFile?: string } | undefined {
  if (!c.natsCaFile && !c.natsCertFile) return undefined;
  return { ...(c.natsCaFile ? { caFile: c.natsCaFile } : {}), ...(c.natsCertFile ? { certFile: c.natsCertFile } : {}), ...(c.natsKeyFile ? { keyFile: c.natsKeyFile } : {}) };
}

/** The same for the client commands, which read flags and environment only. */
export function natsTlsFromFlags(flags: Record<string, string | boolean>, env: NodeJS.ProcessEnv): { caFile?: string; certFile?: string; keyFile?: string } | undefined {
  const pick = (flag: string, name: string): string | undefined => {
    const v = flags[flag];
    if (v === true) throw new ConfigError(`--${flag}`, `flag --${flag}`, 'needs a FILE');
    return typeof v === 'string' && v.trim() !== '' ? v.trim() : envValue(env, name)?.trim();
  };
  const c = { natsCaFile: pick('nats-ca', 'SUBMARINE_NATS_CA'), natsCertFile: pick('nats-cert', 'SUBMARINE_NATS_CERT'), natsKeyFile: pick('nats-key', 'SUBMARINE_NATS_KEY') };
  if (Boolean(c.natsCertFile) !== Boolean(c.natsKeyFile)) throw new ConfigError('--nats-cert', 'command line', 'a NATS client certificate and its key go together (--nats-cert and --nats-key)');
  const out: Pick<ClusterConfig, 'natsCaFile' | 'natsCertFile' | 'natsKeyFile'> = {};
  if (c.natsCaFile) out.natsCaFile = c.natsCaFile;
  if (c.natsCertFile) out.natsCertFile = c.natsCertFile;
  if (c.natsKeyFile) out.natsKeyFile = c.natsKeyFile;
  return natsTlsOf(out);
}
