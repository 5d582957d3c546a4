/**
 * Cluster events: the original Zeppelin/Submarine ClusterEvent topics (interpreter, note, auth,
 * notebook-auth, interpreter-setting) plus user topics, in two delivery modes.
 *
 * fast     Over NATS subjects, at most once. A broadcast is one publish to
 *          `<cluster>.events.<topic>`; every instance with a listener for the topic subscribes there.
 *          A unicast is a request to `<cluster>.events.<topic>.<member>`: the target answers on the
 *          request inbox once its listeners ran, so the sender learns of delivery, or gets an
 *          EventDeliveryError saying why not (no responders = the member is gone; timeout; no listener).
 *          Listeners are called in arrival order; a broadcast does not wait for async ones to settle.
 * durable  Through the Raft log. An event is a committed put under `events/<topic>/<id>` (unicast:
 *          `events-to/<member>/<topic>/<id>`), ids being zero-padded numbers taken from blocks of the
 *          cluster counter `events-seq`. Each subscriber watches every topic it listens to from its stored
 *          cursor, so delivery is in log order, and a subscriber that was down replays what it missed.
 *
 * Cursors. The position of a stream is (revision, key) of the last event whose listeners finished:
 * events of one publisher batch share a revision and are ordered by key within it. Positions are
 * kept in a local file (`cursorDir`, replaced atomically) or, without one, in the metadata center under
 * `events-cursor/<member>`. Writes are coalesced (one in flight, the newest wins), so after a graceful
 * close() or unsubscribe the stored cursor is exact: a restarted subscriber gets every missed event
 * exactly once. After a crash the events processed since the last cursor write are delivered again
 * (at least once); their `meta.id` / `meta.revision` let a listener with side effects dedupe.
 *
 * Retention. A publisher cleans the streams it writes to every `cleanupEvery` events: it lists the
 * stream and deletes, with conditional deletes (expectedRevision = the event's modRevision), everything
 * but the newest `keepLast` events / `keepBytes` bytes / events younger than `keepRevisions`. The plan
 * is a pure function of the listed state (planRetention). A subscriber whose cursor fell behind the
 * watch history gets a fresh list (ClusterClient watch onResync): it replays the retained events after
 * its cursor, in order, and is told through `onResync` that older ones may be gone.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import type { Msg, Subscription } from 'nats';
import type { ClusterClient, Watcher } from '../src/client.ts';
import { decodeEnvelope, DecodeError, encodeEnvelope, type DecodeErrorReason } from '../src/codec.ts';
import { MetaError } from '../src/errors.ts';
import { Counters, RateLimitedLog } from '../src/metrics.ts';
import { subjects, subjectToken } from '../src/nats/subjects.ts';
import type { KeyValue, MetaCommand, MetaResult, WatchEvent } from '../src/sm/metadata.ts';
import { NodeFileSystem, type FileSystem } from '../src/storage/fs.ts';
import { silentLogger, type Logger } from './ports.ts';

// ---------------------------------------------------------------------------------------------
// Topics, keys, limits

/** Topics of the original ClusterManagerServer (same constant names, readable values). */
export const CLUSTER_INTP_EVENT_TOPIC = 'interpreter';
export const CLUSTER_NOTE_EVENT_TOPIC = 'note';
export const CLUSTER_AUTH_EVENT_TOPIC = 'auth';
export const CLUSTER_NB_AUTH_EVENT_TOPIC = 'notebook-auth';
export const CLUSTER_INTP_SETTING_EVENT_TOPIC = 'interpreter-setting';
export const BUILTIN_TOPICS = [
  CLUSTER_INTP_EVENT_TOPIC, CLUSTER_NOTE_EVENT_TOPIC, CLUSTER_AUTH_EVENT_TOPIC, CLUSTER_NB_AUTH_EVENT_TOPIC, CLUSTER_INTP_SETTING_EVENT_TOPIC,
] as const;

/**
 * An event's size: its encoded NATS envelope (fast) or its encoded stored value (durable). 256 KiB
 * equals the metadata center's value limit and stays well under the broker's 1 MB max_payload.
 */
export const DEFAULT_MAX_EVENT_BYTES = 256 * 1024;
export const MAX_PAYLOAD_DEPTH = 32;
export const MAX_MEMBER_ID_LENGTH = 256;
const TOPIC_RE = /^[A-Za-z0-9_-]{1,64}$/;
const ID_DIGITS = 16;
/** Ids reserved per `events-seq` increment: one extra log write per this many durable events. */
export const EVENT_ID_BLOCK = 1024;
/** A durable batch (one log entry) stays under the API request limit (512 KiB) and holds at most this many events. */
const BATCH_MAX_BYTES = 384 * 1024;
const BATCH_MAX_EVENTS = 256;
const DELETE_BATCH = 256;

export const eventKeys = {
  seq: 'events-seq',
  broadcastPrefix: (topic: string) => `events/${topic}/`,
  unicastPrefix: (member: string, topic: string) => `events-to/${subjectToken(member)}/${topic}/`,
  cursor: (member: string) => `events-cursor/${subjectToken(member)}`,
  /** Fixed width, so key order is numeric order (within a revision, events are ordered by key). */
  id: (n: number) => String(n).padStart(ID_DIGITS, '0'),
};

export type EventMode = 'fast' | 'durable';

export class InvalidTopicError extends Error {
  override readonly name = 'InvalidTopicError';
}

export class EventTooLargeError extends Error {
  override readonly name = 'EventTooLargeError';
  constructor(readonly topic: string, readonly bytes: number, readonly limit: number) {
    super(`event on topic "${topic}" is ${bytes} bytes encoded, over the limit of ${limit} bytes (maxEventBytes)`);
  }
}

/** Why a unicast was not confirmed. */
export type DeliveryFailure = 'noResponders' | 'timeout' | 'noListener' | 'listenerFailed' | 'badAck' | 'transport';

export class EventDeliveryError extends Error {
  override readonly name = 'EventDeliveryError';
  constructor(readonly member: string, readonly topic: string, readonly reason: DeliveryFailure, detail: string) {
    super(`event on topic "${topic}" to member ${member} was not delivered: ${detail}`);
  }
}

export function topicProblem(topic: unknown): string | null {
  if (typeof topic !== 'string') return `topic must be a string, got ${typeof topic}`;
  return TOPIC_RE.test(topic) ? null : `topic ${JSON.stringify(topic.length > 80 ? topic.slice(0, 80) + '…' : topic)} is invalid: 1..64 characters of [A-Za-z0-9_-]`;
}

export function validateTopic(topic: string): string {
  const p = topicProblem(topic);
  if (p) throw new InvalidTopicError(p);
  return topic;
}

function memberProblem(id: unknown): string | null {
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_MEMBER_ID_LENGTH ? null : `member id must be a string of 1..${MAX_MEMBER_ID_LENGTH} characters`;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || ArrayBuffer.isView(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Payloads are plain data, the same in both modes (what the metadata center stores): null, booleans,
 * finite numbers, strings, bytes, arrays and plain objects, nested at most MAX_PAYLOAD_DEPTH deep.
 */
export function payloadProblem(v: unknown, depth = 0): string | null {
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || v instanceof Uint8Array) return null;
  if (typeof v === 'number') return Number.isFinite(v) ? null : 'payload numbers must be finite';
  if (depth >= MAX_PAYLOAD_DEPTH) return `payload is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`;
  const items = Array.isArray(v) ? v : isPlainObject(v) ? Object.values(v) : null;
  if (!items) {
    const kind = v === undefined ? 'undefined' : typeof v === 'object' ? ((v as object).constructor?.name ?? 'object') : typeof v;
    return `payload contains unsupported ${kind} (plain data only)`;
  }
  for (const item of items) {
    const p = payloadProblem(item, depth + 1);
    if (p) return p;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The event body (fast envelope body and durable stored value) and its validation

export interface EventBody {
  from: string;
  topic: string;
  /** Unique per event: `f…` for fast events, the zero-padded key id for durable ones. */
  id: string;
  payload: unknown;
  /** Unicast target. */
  to?: string;
  /** The publisher asked to get its own broadcast (includeSelf). */
  echo?: boolean;
}

export const EVENT_KIND = 'event';
export const ACK_KIND = 'eventAck';

/** `misrouted`: a valid-looking event that arrived on another topic's or member's subject (or key). */
export type EventCheck = { ok: true; body: EventBody } | { ok: false; problem: string; misrouted?: true };

/** Validates an untrusted body; `expect` is what the subject (or key) it arrived on says. */
export function checkEventBody(raw: unknown, expect: { topic: string; to?: string }): EventCheck {
  const bad = (problem: string): EventCheck => ({ ok: false, problem });
  const misrouted = (problem: string): EventCheck => ({ ok: false, problem, misrouted: true });
  if (!isPlainObject(raw)) return bad('event body must be a map');
  const { from, topic, id, payload, to, echo } = raw;
  if (memberProblem(from)) return bad('event.from must be a member id string');
  if (topic !== expect.topic) return misrouted(`event.topic ${JSON.stringify(topic)} does not match the topic it arrived on (${expect.topic})`);
  if (typeof id !== 'string' || id.length === 0 || id.length > 128) return bad('event.id must be a string of 1..128 characters');
  if (!('payload' in raw)) return bad('event.payload is missing');
  const p = payloadProblem(payload);
  if (p) return bad(`event.payload: ${p}`);
  if (echo !== undefined && typeof echo !== 'boolean') return bad('event.echo must be a boolean');
  if (expect.to !== undefined ? to !== expect.to : to !== undefined) return misrouted(`event.to ${JSON.stringify(to)} does not match the destination it arrived on`);
  const body: EventBody = { from: from as string, topic, id, payload };
  if (to !== undefined) body.to = to as string;
  if (echo) body.echo = true;
  return { ok: true, body };
}

export type DropReason = DecodeErrorReason | 'misrouted';
export type FastDecode = { ok: true; body: EventBody } | { ok: false; reason: DropReason; message: string };

/** Decodes a fast event off the wire. Never throws: bad input is a reason to drop and count. */
export function decodeFastEvent(bytes: Uint8Array, expect: { cluster: string; maxBytes: number; topic: string; to?: string }): FastDecode {
  try {
    const env = decodeEnvelope(bytes, { cluster: expect.cluster, maxBytes: expect.maxBytes });
    if (env.kind !== EVENT_KIND) return { ok: false, reason: 'unknownType', message: `envelope kind ${JSON.stringify(env.kind)} is not an event` };
    const c = checkEventBody(env.body, { topic: expect.topic, to: expect.to });
    if (!c.ok) return { ok: false, reason: c.misrouted ? 'misrouted' : 'badShape', message: c.problem };
    return c;
  } catch (err) {
    if (err instanceof DecodeError) return { ok: false, reason: err.reason, message: err.message };
    return { ok: false, reason: 'malformed', message: (err as Error)?.message ?? String(err) };
  }
}

export type AckBody = { id: string; ok: true; listeners: number } | { id: string; ok: false; reason: 'noListener' | 'listenerFailed'; message: string };

export function checkAck(raw: unknown, id: string): AckBody | null {
  if (!isPlainObject(raw) || raw.id !== id) return null;
  if (raw.ok === true) return Number.isSafeInteger(raw.listeners) ? { id, ok: true, listeners: raw.listeners as number } : null;
  if (raw.ok === false && (raw.reason === 'noListener' || raw.reason === 'listenerFailed') && typeof raw.message === 'string') {
    return { id, ok: false, reason: raw.reason, message: raw.message };
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Durable stream positions, replay and dedupe (pure)

/** Last processed event of a stream; key null = every event of `revision` is processed. */
export interface StreamPosition {
  revision: number;
  key: string | null;
}

/** Is the event at (revision, key) after the position, in stream order (revision, then key)? */
export function isAfter(pos: StreamPosition, revision: number, key: string): boolean {
  if (revision !== pos.revision) return revision > pos.revision;
  return pos.key !== null && key > pos.key;
}

/** The watch revision to resume from: the revision itself may hold unprocessed events of the same batch. */
export function watchFromRevision(pos: StreamPosition): number {
  return pos.key === null ? pos.revision : Math.max(0, pos.revision - 1);
}

/** Retained events of a listed stream still to be processed after `pos`, in stream order. */
export function selectReplay(kvs: readonly KeyValue[], pos: StreamPosition): KeyValue[] {
  return kvs.filter((kv) => isAfter(pos, kv.modRevision, kv.key)).sort(byStreamOrder);
}

export function byStreamOrder(a: KeyValue, b: KeyValue): number {
  if (a.modRevision !== b.modRevision) return a.modRevision - b.modRevision;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Ids seen recently, bounded (FIFO eviction): the second line of defence against redelivery. */
export class RecentIds {
  private readonly set = new Set<string>();
  constructor(private readonly capacity = 4096) {}
  has(id: string): boolean {
    return this.set.has(id);
  }
  add(id: string): void {
    this.set.add(id);
    if (this.set.size > this.capacity) this.set.delete(this.set.values().next().value as string);
  }
}

// ---------------------------------------------------------------------------------------------
// Retention (pure)

export interface RetentionPolicy {
  /** Newest events kept per stream (default 1000). */
  keepLast?: number;
  /**
   * Newest bytes kept per stream (default 512 KiB; the newest event is always kept). A resyncing
   * subscriber re-lists the whole stream (a page per 512 KiB), so this bounds what it reads.
   */
  keepBytes?: number;
  /** Also drop events more than this many revisions older than the listed revision. */
  keepRevisions?: number;
}

export const DEFAULT_RETENTION: Required<Omit<RetentionPolicy, 'keepRevisions'>> = { keepLast: 1000, keepBytes: 512 * 1024 };

const sizePackr = new Packr({ useRecords: false, structuredClone: false });
export const encodedSize = (value: unknown): number => sizePackr.pack(value).byteLength;

/**
 * The conditional deletes that bring one listed stream within the policy. Keeps the newest events (in
 * stream order) while all limits hold and deletes everything older: the outcome depends only on the
 * listed keys, revisions, sizes and the policy, never on the order of the input or on a clock.
 */
export function planRetention(
  kvs: readonly KeyValue[], listRevision: number, policy: RetentionPolicy = {}, sizeOf: (kv: KeyValue) => number = (kv) => encodedSize(kv.value),
): { key: string; expectedRevision: number }[] {
  const keepLast = policy.keepLast ?? DEFAULT_RETENTION.keepLast;
  const keepBytes = policy.keepBytes ?? DEFAULT_RETENTION.keepBytes;
  const oldestKept = policy.keepRevisions === undefined ? -Infinity : listRevision - policy.keepRevisions;
  const newestFirst = [...kvs].sort(byStreamOrder).reverse();
  let kept = 0;
  let bytes = 0;
  let i = 0;
  for (; i < newestFirst.length; i++) {
    const kv = newestFirst[i]!;
    if (kept >= keepLast || kv.modRevision <= oldestKept) break;
    const size = sizeOf(kv);
    if (kept > 0 && bytes + size > keepBytes) break;
    kept++;
    bytes += size;
  }
  return newestFirst.slice(i).reverse().map((kv) => ({ key: kv.key, expectedRevision: kv.modRevision }));
}

// ---------------------------------------------------------------------------------------------
// Cursor storage

export type CursorMap = Record<string, StreamPosition>;

export interface CursorStore {
  readonly kind: string;
  load(): Promise<CursorMap>;
  save(cursors: CursorMap): Promise<void>;
}

interface CursorDoc {
  v: 1;
  member: string;
  streams: Record<string, [number, string | null]>;
}

export function encodeCursorDoc(member: string, cursors: CursorMap): CursorDoc {
  const streams: CursorDoc['streams'] = {};
  for (const name of Object.keys(cursors).sort()) streams[name] = [cursors[name]!.revision, cursors[name]!.key];
  return { v: 1, member, streams };
}

/** Throws a clear error on anything but a valid cursor document of `member`. */
export function decodeCursorDoc(raw: unknown, member: string, where: string): CursorMap {
  const fail = (why: string): never => {
    throw new Error(`events cursor ${where}: ${why}`);
  };
  if (!isPlainObject(raw) || raw.v !== 1) return fail('unsupported format');
  if (raw.member !== member) return fail(`belongs to member ${JSON.stringify(raw.member)}, not ${JSON.stringify(member)}`);
  if (!isPlainObject(raw.streams)) return fail('streams must be a map');
  const out: CursorMap = {};
  for (const [name, v] of Object.entries(raw.streams)) {
    if (!Array.isArray(v) || v.length !== 2 || !Number.isSafeInteger(v[0]) || v[0] < 0 || !(v[1] === null || typeof v[1] === 'string')) {
      return fail(`stream ${JSON.stringify(name)} has a bad position`);
    }
    out[name] = { revision: v[0] as number, key: v[1] as string | null };
  }
  return out;
}

/**
 * One JSON file per member in `dir`, replaced atomically (temp file, fdatasync, rename, directory
 * fsync): a crash leaves the old or the new cursor, never a torn one.
 */
export class FileCursorStore implements CursorStore {
  readonly kind = 'file';
  readonly path: string;
  private readonly tmp: string;
  private dirReady = false;

  constructor(private readonly dir: string, private readonly member: string, private readonly fs: FileSystem = new NodeFileSystem()) {
    this.path = join(dir, `events-cursor-${subjectToken(member)}.json`);
    this.tmp = `${this.path}.tmp`;
  }

  async load(): Promise<CursorMap> {
    let bytes: Uint8Array;
    try {
      bytes = await this.fs.readFile(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw new Error(`events cursor ${this.path}: not valid JSON`);
    }
    return decodeCursorDoc(raw, this.member, this.path);
  }

  async save(cursors: CursorMap): Promise<void> {
    if (!this.dirReady) {
      await this.fs.mkdirp(this.dir);
      this.dirReady = true;
    }
    await this.fs.writeFile(this.tmp, new TextEncoder().encode(JSON.stringify(encodeCursorDoc(this.member, cursors))));
    await this.fs.rename(this.tmp, this.path);
    await this.fs.syncDir(this.dir);
  }
}

/** Cursors under `events-cursor/<member>` in the metadata center: survives losing the subscriber's disk. */
export class ClusterCursorStore implements CursorStore {
  readonly kind = 'cluster';
  constructor(private readonly client: ClusterClient, private readonly member: string, private readonly write: (cmd: MetaCommand) => Promise<MetaResult>) {}

  async load(): Promise<CursorMap> {
    const { kv } = await this.client.get(eventKeys.cursor(this.member));
    return kv ? decodeCursorDoc(kv.value, this.member, eventKeys.cursor(this.member)) : {};
  }

  async save(cursors: CursorMap): Promise<void> {
    const r = await this.write({ op: 'put', key: eventKeys.cursor(this.member), value: encodeCursorDoc(this.member, cursors) });
    if (!r.ok) throw new MetaError(r.code, r.message, r.revision);
  }
}

/** In memory (tests, or subscribers that only need replay across unsubscribe / re-subscribe). */
export class MemoryCursorStore implements CursorStore {
  readonly kind = 'memory';
  saves = 0;
  cursors: CursorMap = {};
  async load(): Promise<CursorMap> {
    return structuredClone(this.cursors);
  }
  async save(cursors: CursorMap): Promise<void> {
    this.saves++;
    this.cursors = structuredClone(cursors);
  }
}

/**
 * The positions of all streams of one subscriber and their write-behind to a CursorStore: at most
 * one save in flight, later changes coalesced into the next save; a failed save is retried.
 */
export class CursorBook {
  private readonly positions = new Map<string, StreamPosition>();
  private dirty = false;
  private active = false;
  private writing: Promise<void> = Promise.resolve();
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  lastError: Error | null = null;

  constructor(private readonly store: CursorStore, initial: CursorMap, private readonly onError: (err: Error) => void = () => {}, private readonly retryMs = 500) {
    for (const [name, pos] of Object.entries(initial)) this.positions.set(name, pos);
  }

  get(name: string): StreamPosition | undefined {
    return this.positions.get(name);
  }

  snapshot(): CursorMap {
    return Object.fromEntries(this.positions);
  }

  set(name: string, pos: StreamPosition): void {
    this.positions.set(name, pos);
    this.dirty = true;
    this.kick();
  }

  /** Resolves once everything set so far is stored; throws if the store keeps failing. */
  async flush(attempts = 3): Promise<void> {
    for (let i = 0; ; i++) {
      while (this.active) await this.writing;
      if (!this.dirty) return;
      if (i >= attempts) throw this.lastError ?? new Error('events cursor: not stored');
      this.kick();
    }
  }

  /** Stops retrying in the background (flush first to store the final positions). */
  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private kick(): void {
    if (this.active) return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.active = true;
    this.writing = this.loop();
  }

  /** `active` is cleared in the same turn as the last dirty check: a set() after it starts a new loop. */
  private async loop(): Promise<void> {
    for (;;) {
      if (!this.dirty) {
        this.active = false;
        return;
      }
      this.dirty = false;
      try {
        await this.store.save(this.snapshot());
        this.lastError = null;
      } catch (err) {
        this.dirty = true;
        this.lastError = err as Error;
        this.active = false;
        this.onError(err as Error);
        if (!this.closed) {
          this.retryTimer = setTimeout(() => this.kick(), this.retryMs);
          this.retryTimer.unref?.();
        }
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The actor

export interface EventMeta {
  from: string;
  topic: string;
  mode: EventMode;
  id: string;
  /** Durable events: the revision that committed it. */
  revision?: number;
  /** Unicast events: this member. */
  to?: string;
}

/** Payloads are shared between listeners (durable ones are frozen): treat them as read-only. */
export type EventListener = (payload: unknown, meta: EventMeta) => void | Promise<void>;

export interface ResyncInfo {
  stream: string;
  topic: string;
  /** The position the subscriber had; retained events after it are replayed, older ones may be gone. */
  from: StreamPosition;
  listedRevision: number;
  replayed: number;
}

export interface ClusterEventsOptions {
  /**
   * The client this instance publishes, watches and writes through. Its own writes are serialized; a
   * ClusterClient session expects increasing sequence numbers, so other code writing concurrently
   * through the same client can, on a retry, make one of the two fail as a stale sequence: prefer a
   * client of its own.
   */
  client: ClusterClient;
  /** This member's id (e.g. the server name): unicast address and `from` of its events. */
  memberId: string;
  logger?: Logger;
  /** Where durable cursors live: a directory (local file) — default: the metadata center. */
  cursorDir?: string;
  cursorStore?: CursorStore;
  maxEventBytes?: number;
  retention?: RetentionPolicy;
  /** A publisher cleans a stream after this many events written to it (default keepLast / 4, at least 16). */
  cleanupEvery?: number;
  /** A subscriber's cursor fell behind the retained history (see ResyncInfo). */
  onResync?(info: ResyncInfo): void;
  /** Start point of a broadcast stream with no stored cursor: 'now' (default) or every retained event. Unicast streams always start at the retained events. */
  freshStart?: 'now' | 'retained';
}

interface PendingEvent {
  prefix: string;
  body: Omit<EventBody, 'id'>;
  bytes: number;
  resolve(r: { id: string; revision: number }): void;
  reject(err: Error): void;
}

type StreamState = 'opening' | 'live' | 'retrying' | 'closed';

export interface EventsStatus {
  memberId: string;
  cursorStore: string;
  topics: string[];
  streams: { name: string; state: StreamState; position: StreamPosition | null; queued: number }[];
  pendingDurable: number;
  counters: Record<string, number>;
}

export class ClusterEvents {
  readonly memberId: string;
  readonly cluster: string;
  readonly counters = new Counters();
  private readonly client: ClusterClient;
  private readonly log: Logger;
  private readonly limiter = new RateLimitedLog();
  private readonly maxEventBytes: number;
  private readonly retention: RetentionPolicy;
  private readonly cleanupEvery: number;
  private readonly instance = randomBytes(6).toString('base64url');
  private fastSeq = 0;
  private readonly listeners = new Map<string, Set<EventListener>>();
  private readonly fastSubs = new Map<string, Subscription>();
  private readonly streams = new Map<string, DurableStream>();
  private unicastSub: Subscription | null = null;
  private book!: CursorBook;
  private storeKind = '';
  private closed = false;
  /** Every write of this instance, in order: a ClusterClient session must not have two writes racing. */
  private lane: Promise<unknown> = Promise.resolve();
  private pending: PendingEvent[] = [];
  private flushing = false;
  private idNext = 0;
  private idEnd = 0;
  private readonly written = new Map<string, number>();
  private readonly cleaning = new Map<string, Promise<number>>();

  private constructor(private readonly o: ClusterEventsOptions) {
    const mp = memberProblem(o.memberId);
    if (mp) throw new TypeError(`ClusterEvents: ${mp}`);
    this.memberId = o.memberId;
    this.client = o.client;
    this.cluster = o.client.cluster;
    this.log = o.logger ?? silentLogger;
    this.maxEventBytes = o.maxEventBytes ?? DEFAULT_MAX_EVENT_BYTES;
    this.retention = o.retention ?? {};
    this.cleanupEvery = o.cleanupEvery ?? Math.max(16, Math.floor((this.retention.keepLast ?? DEFAULT_RETENTION.keepLast) / 4));
  }

  static async start(o: ClusterEventsOptions): Promise<ClusterEvents> {
    const ev = new ClusterEvents(o);
    const store = o.cursorStore
      ?? (o.cursorDir ? new FileCursorStore(o.cursorDir, o.memberId) : new ClusterCursorStore(o.client, o.memberId, (cmd) => ev.serial(() => o.client.write(cmd))));
    ev.storeKind = store.kind;
    ev.book = new CursorBook(store, await store.load(), (err) => {
      ev.counters.inc('events_cursor_save_failures_total');
      if (ev.limiter.check('cursor') >= 0) ev.log.warn({ member: ev.memberId, err: err.message }, 'events: storing the cursor failed; retrying');
    });
    // Every unicast to this member, whatever the topic: a live member with no listener answers
    // noListener instead of leaving the sender to guess from silence.
    ev.unicastSub = o.client.nc.subscribe(`${ev.cluster}.events.*.${subjectToken(ev.memberId)}`, {
      callback: (err, m) => {
        if (!err) void ev.onUnicast(m);
      },
    });
    await o.client.nc.flush();
    return ev;
  }

  // ---- publishing ------------------------------------------------------------------------------

  async broadcast(topic: string, msg: unknown, o: { mode?: EventMode; includeSelf?: boolean } = {}): Promise<{ id: string; revision?: number }> {
    this.checkOpen();
    validateTopic(topic);
    this.checkPayload(topic, msg);
    const mode = o.mode ?? 'fast';
    const body: Omit<EventBody, 'id'> = { from: this.memberId, topic, payload: msg, ...(o.includeSelf ? { echo: true } : {}) };
    if (mode === 'durable') return this.publishDurable(eventKeys.broadcastPrefix(topic), body);
    const id = this.nextFastId();
    const bytes = this.encodeFast({ ...body, id });
    this.client.nc.publish(subjects.events(this.cluster, topic), bytes);
    this.counters.inc('events_sent_total', { mode: 'fast', kind: 'broadcast' });
    return { id };
  }

  /**
   * fast: resolves once the target's listeners ran (it acknowledges on the request inbox); rejects with
   * EventDeliveryError when the member is gone, has no listener, a listener failed, or no ack came in
   * time. durable: resolves once committed; the target processes it when it is up.
   */
  async unicast(memberId: string, topic: string, msg: unknown, o: { mode?: EventMode; timeoutMs?: number } = {}): Promise<{ id: string; revision?: number; listeners?: number }> {
    this.checkOpen();
    const mp = memberProblem(memberId);
    if (mp) throw new TypeError(`unicast: ${mp}`);
    validateTopic(topic);
    this.checkPayload(topic, msg);
    const body: Omit<EventBody, 'id'> = { from: this.memberId, topic, payload: msg, to: memberId };
    if ((o.mode ?? 'fast') === 'durable') return this.publishDurable(eventKeys.unicastPrefix(memberId, topic), body);
    const id = this.nextFastId();
    const timeoutMs = o.timeoutMs ?? 2000;
    const bytes = this.encodeFast({ ...body, id });
    this.counters.inc('events_sent_total', { mode: 'fast', kind: 'unicast' });
    let reply: Msg;
    try {
      reply = await this.client.nc.request(subjects.eventsTo(this.cluster, topic, memberId), bytes, { timeout: timeoutMs });
    } catch (err) {
      const code = (err as { code?: string }).code;
      const failure = code === '503'
        ? new EventDeliveryError(memberId, topic, 'noResponders', `no responders: no events instance of member ${memberId} is connected (the member is gone or not started)`)
        : code === 'TIMEOUT' || code === '408'
          ? new EventDeliveryError(memberId, topic, 'timeout', `no acknowledgement within ${timeoutMs} ms (member overloaded, a slow listener, or the message was lost); it may or may not have been processed`)
          : new EventDeliveryError(memberId, topic, 'transport', `NATS request failed (${(err as Error).message})`);
      this.counters.inc('events_unicast_failures_total', { reason: failure.reason });
      throw failure;
    }
    let ack: AckBody | null = null;
    try {
      ack = checkAck(decodeEnvelope(reply.data, { cluster: this.cluster, maxBytes: 64 * 1024 }).body, id);
    } catch {
      ack = null;
    }
    if (!ack) {
      this.counters.inc('events_unicast_failures_total', { reason: 'badAck' });
      throw new EventDeliveryError(memberId, topic, 'badAck', 'the acknowledgement was malformed');
    }
    if (!ack.ok) {
      this.counters.inc('events_unicast_failures_total', { reason: ack.reason });
      throw new EventDeliveryError(memberId, topic, ack.reason, ack.message);
    }
    return { id, listeners: ack.listeners };
  }

  // ---- listening -------------------------------------------------------------------------------

  /** Listens to fast and durable events of `topic` (broadcasts and unicasts to this member). */
  on(topic: string, listener: EventListener): () => void {
    this.checkOpen();
    validateTopic(topic);
    if (typeof listener !== 'function') throw new TypeError('on: listener must be a function');
    let set = this.listeners.get(topic);
    if (!set) {
      set = new Set();
      this.listeners.set(topic, set);
      this.subscribeTopic(topic);
    }
    // A distinct box per call, so the same function registered twice unsubscribes separately.
    const box: EventListener = (p, m) => listener(p, m);
    set.add(box);
    return () => {
      const s = this.listeners.get(topic);
      if (!s?.delete(box) || s.size > 0) return;
      this.listeners.delete(topic);
      void this.unsubscribeTopic(topic);
    };
  }

  /** Resolves once every topic listened to is subscribed on the broker and its durable streams are watching. */
  async ready(): Promise<void> {
    await Promise.all([...this.streams.values()].map((s) => s.opened));
    await this.client.nc.flush();
  }

  /** Runs the retention cleanup now for every stream this instance wrote to; returns the number deleted. */
  async cleanup(): Promise<number> {
    let n = 0;
    for (const prefix of [...this.written.keys()]) {
      // A cleanup already running listed an older state: let it finish, then plan afresh.
      while (this.cleaning.has(prefix)) await this.cleaning.get(prefix);
      n += await this.cleanupStream(prefix);
    }
    return n;
  }

  status(): EventsStatus {
    return {
      memberId: this.memberId,
      cursorStore: this.storeKind,
      topics: [...this.listeners.keys()].sort(),
      streams: [...this.streams.values()].map((s) => ({ name: s.name, state: s.state, position: this.book.get(s.name) ?? null, queued: s.queued })),
      pendingDurable: this.pending.length,
      counters: this.counters.toJSON(),
    };
  }

  /**
   * Stops listening (the current durable listener call finishes first), waits for durable publishes
   * already accepted, and stores the final cursors. The ClusterClient stays open (it is the caller's).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unicastSub?.unsubscribe();
    for (const s of this.fastSubs.values()) s.unsubscribe();
    this.fastSubs.clear();
    this.listeners.clear();
    await Promise.all([...this.streams.values()].map((s) => s.close()));
    this.streams.clear();
    await this.lane.catch(() => {});
    while (this.flushing) await this.lane.catch(() => {});
    await Promise.allSettled(this.cleaning.values());
    try {
      await this.book.flush();
    } catch (err) {
      this.log.warn({ member: this.memberId, err: (err as Error).message }, 'events: final cursor not stored; events since the last stored cursor will be delivered again');
    }
    this.book.close();
    await this.client.nc.flush().catch(() => {});
  }

  // ---- internals: fast path ----------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new Error(`ClusterEvents of ${this.memberId} is closed`);
  }

  private checkPayload(topic: string, msg: unknown): void {
    const p = payloadProblem(msg);
    if (p) throw new TypeError(`event on topic "${topic}": ${p}`);
  }

  private nextFastId(): string {
    return `f${this.instance}-${(++this.fastSeq).toString(36)}`;
  }

  private encodeFast(body: EventBody): Uint8Array {
    const bytes = encodeEnvelope(this.cluster, EVENT_KIND, body);
    if (bytes.byteLength > this.maxEventBytes) throw new EventTooLargeError(body.topic, bytes.byteLength, this.maxEventBytes);
    return bytes;
  }

  private subscribeTopic(topic: string): void {
    this.fastSubs.set(topic, this.client.nc.subscribe(subjects.events(this.cluster, topic), {
      callback: (err, m) => {
        if (!err) this.onBroadcast(topic, m);
      },
    }));
    for (const [name, prefix, kind] of [[`b/${topic}`, eventKeys.broadcastPrefix(topic), 'b'], [`u/${topic}`, eventKeys.unicastPrefix(this.memberId, topic), 'u']] as const) {
      const stream = new DurableStream({
        name, topic, prefix, kind, memberId: this.memberId, client: this.client, book: this.book, log: this.log, counters: this.counters,
        freshStart: kind === 'u' ? 'retained' : this.o.freshStart ?? 'now',
        deliver: (body, meta) => this.dispatch(body.topic, body.payload, meta),
        onResync: (info) => {
          this.counters.inc('events_resyncs_total');
          this.log.warn({ member: this.memberId, ...info }, 'events: cursor behind the watch history; replaying the retained events, older ones may be gone');
          try {
            this.o.onResync?.(info);
          } catch (err) {
            this.log.error({ err: (err as Error).message }, 'events: onResync hook threw');
          }
        },
      });
      this.streams.set(name, stream);
      stream.start();
    }
  }

  private async unsubscribeTopic(topic: string): Promise<void> {
    this.fastSubs.get(topic)?.unsubscribe();
    this.fastSubs.delete(topic);
    const closing: Promise<void>[] = [];
    for (const name of [`b/${topic}`, `u/${topic}`]) {
      const s = this.streams.get(name);
      if (!s) continue;
      this.streams.delete(name);
      closing.push(s.close());
    }
    await Promise.all(closing);
    await this.book.flush().catch(() => {});
  }

  private drop(reason: string, message: string, subject: string): void {
    this.counters.inc('events_dropped_total', { reason });
    if (this.limiter.check(`drop:${reason}`) >= 0) this.log.warn({ member: this.memberId, reason, subject, err: message }, 'events: dropped an invalid event');
  }

  private onBroadcast(topic: string, m: Msg): void {
    try {
      const d = decodeFastEvent(m.data, { cluster: this.cluster, maxBytes: this.maxEventBytes, topic });
      if (!d.ok) return this.drop(d.reason, d.message, m.subject);
      if (d.body.from === this.memberId && !d.body.echo) return;
      this.counters.inc('events_received_total', { mode: 'fast' });
      void this.dispatch(topic, d.body.payload, { from: d.body.from, topic, mode: 'fast', id: d.body.id });
    } catch (err) {
      this.drop('internal', (err as Error).message, m.subject);
    }
  }

  private async onUnicast(m: Msg): Promise<void> {
    const respond = (ack: AckBody) => {
      if (!m.reply) return;
      try {
        m.respond(encodeEnvelope(this.cluster, ACK_KIND, ack));
      } catch {
        // Connection gone: the sender times out.
      }
    };
    try {
      const parts = m.subject.split('.');
      const topic = parts[parts.length - 2]!;
      if (topicProblem(topic)) return this.drop('misrouted', `bad topic token ${JSON.stringify(topic)}`, m.subject);
      const d = decodeFastEvent(m.data, { cluster: this.cluster, maxBytes: this.maxEventBytes, topic, to: this.memberId });
      if (!d.ok) return this.drop(d.reason, d.message, m.subject);
      const { body } = d;
      this.counters.inc('events_received_total', { mode: 'fast' });
      if (!this.listeners.get(topic)?.size) {
        return respond({ id: body.id, ok: false, reason: 'noListener', message: `member ${this.memberId} has no listener for topic "${topic}"` });
      }
      const { listeners, errors } = await this.dispatch(topic, body.payload, { from: body.from, topic, mode: 'fast', id: body.id, to: this.memberId });
      if (errors.length) {
        return respond({ id: body.id, ok: false, reason: 'listenerFailed', message: `${errors.length} of ${listeners} listeners of member ${this.memberId} failed: ${errors[0]!.message}` });
      }
      respond({ id: body.id, ok: true, listeners });
    } catch (err) {
      this.drop('internal', (err as Error).message, m.subject);
    }
  }

  /** Calls every listener of the topic (in registration order) and waits for all of them. */
  private async dispatch(topic: string, payload: unknown, meta: EventMeta): Promise<{ listeners: number; errors: Error[] }> {
    const set = this.listeners.get(topic);
    if (!set || set.size === 0) return { listeners: 0, errors: [] };
    const pending: Promise<void>[] = [];
    const errors: Error[] = [];
    for (const fn of [...set]) {
      try {
        const r = fn(payload, meta);
        if (r && typeof (r as Promise<void>).then === 'function') pending.push(r as Promise<void>);
      } catch (err) {
        errors.push(err as Error);
      }
    }
    for (const r of await Promise.allSettled(pending)) if (r.status === 'rejected') errors.push(r.reason as Error);
    if (errors.length) {
      this.counters.inc('events_listener_errors_total', { topic }, errors.length);
      if (this.limiter.check(`listener:${topic}`) >= 0) this.log.error({ member: this.memberId, topic, mode: meta.mode, err: errors[0]?.message }, 'events: a listener failed');
    }
    this.counters.inc('events_delivered_total', { mode: meta.mode });
    return { listeners: set.size, errors };
  }

  // ---- internals: durable path -----------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.lane.then(fn, fn);
    this.lane = p.catch(() => {});
    return p;
  }

  private publishDurable(prefix: string, body: Omit<EventBody, 'id'>): Promise<{ id: string; revision: number }> {
    // The id is not known yet; a fixed-width placeholder makes the measured size exact.
    const bytes = encodedSize({ ...body, id: eventKeys.id(0) });
    if (bytes > this.maxEventBytes) return Promise.reject(new EventTooLargeError(body.topic, bytes, this.maxEventBytes));
    return new Promise((resolve, reject) => {
      this.pending.push({ prefix, body, bytes, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        void this.serial(() => this.flushDurable());
      }
    });
  }

  /**
   * Group commit: everything queued while the previous batch was in flight goes into one log entry.
   * One batch per turn of the write lane, so cursor saves and retention deletes are not starved by
   * a long burst. `flushing` is cleared in the same turn as the empty-queue check, so an event
   * queued after it always starts a new flush (an await between the two would strand it).
   */
  private async flushDurable(): Promise<void> {
    if (this.pending.length > 0) {
      const batch: PendingEvent[] = [];
      let bytes = 0;
      while (this.pending.length > 0 && batch.length < BATCH_MAX_EVENTS && (batch.length === 0 || bytes + this.pending[0]!.bytes <= BATCH_MAX_BYTES)) {
        const p = this.pending.shift()!;
        batch.push(p);
        bytes += p.bytes;
      }
      try {
        await this.writeBatch(batch);
      } catch (err) {
        for (const p of batch) p.reject(err as Error);
      }
    }
    if (this.pending.length === 0) {
      this.flushing = false;
      return;
    }
    void this.serial(() => this.flushDurable());
  }

  private async writeBatch(batch: PendingEvent[]): Promise<void> {
    if (this.idEnd - this.idNext < batch.length) {
      const block = Math.max(EVENT_ID_BLOCK, batch.length);
      const r = await this.client.write({ op: 'incr', key: eventKeys.seq, by: block });
      if (!r.ok) throw new MetaError(r.code, r.message, r.revision);
      const end = r.kv!.value as number;
      this.idNext = end - block + 1;
      this.idEnd = end + 1;
    }
    const ids = batch.map(() => eventKeys.id(this.idNext++));
    const ops: MetaCommand[] = batch.map((p, i) => ({ op: 'put', key: p.prefix + ids[i], value: { ...p.body, id: ids[i] } }));
    const r = await this.client.write(ops.length === 1 ? ops[0]! : { op: 'batch', ops });
    if (!r.ok) {
      if (batch.length === 1) throw new MetaError(r.code, r.message, r.revision);
      // One bad event must not sink the others: write them one by one (fresh ids).
      for (const p of batch) await this.writeBatch([p]).catch((err: Error) => p.reject(err));
      return;
    }
    for (const [i, p] of batch.entries()) {
      this.counters.inc('events_sent_total', { mode: 'durable', kind: p.body.to === undefined ? 'broadcast' : 'unicast' });
      p.resolve({ id: ids[i]!, revision: r.revision });
      this.noteWritten(p.prefix);
    }
  }

  private noteWritten(prefix: string): void {
    const n = (this.written.get(prefix) ?? 0) + 1;
    this.written.set(prefix, n);
    if (n >= this.cleanupEvery && !this.cleaning.has(prefix)) {
      this.written.set(prefix, 0);
      void this.cleanupStream(prefix);
    }
  }

  private cleanupStream(prefix: string): Promise<number> {
    const running = this.cleaning.get(prefix);
    if (running) return running;
    const p = (async () => {
      try {
        const listed = await this.client.list(prefix);
        const plan = planRetention(listed.kvs, listed.revision, this.retention);
        let deleted = 0;
        for (let i = 0; i < plan.length; i += DELETE_BATCH) deleted += await this.deleteConditionally(plan.slice(i, i + DELETE_BATCH));
        if (deleted) this.counters.inc('events_cleanup_deleted_total', undefined, deleted);
        return deleted;
      } catch (err) {
        this.counters.inc('events_cleanup_failures_total');
        if (this.limiter.check('cleanup') >= 0) this.log.warn({ member: this.memberId, prefix, err: (err as Error).message }, 'events: retention cleanup failed; retried after the next writes');
        return 0;
      } finally {
        this.cleaning.delete(prefix);
      }
    })();
    this.cleaning.set(prefix, p);
    return p;
  }

  /**
   * Deletes only the versions that were listed. A batch fails as a whole if one of them is gone
   * already (another publisher cleaned concurrently): then each is tried alone.
   */
  private async deleteConditionally(chunk: { key: string; expectedRevision: number }[]): Promise<number> {
    const ops: MetaCommand[] = chunk.map((d) => ({ op: 'delete', key: d.key, expectedRevision: d.expectedRevision }));
    const r = await this.serial(() => this.client.write({ op: 'batch', ops }));
    if (r.ok) return chunk.length;
    if (r.code !== 'casFailed') throw new MetaError(r.code, r.message, r.revision);
    let n = 0;
    for (const op of ops) {
      const one = await this.serial(() => this.client.write(op));
      if (one.ok) n++;
    }
    return n;
  }
}

// ---------------------------------------------------------------------------------------------
// One durable stream of one subscriber: a watch from the stored cursor, processed in order

interface StreamHost {
  name: string;
  topic: string;
  prefix: string;
  kind: 'b' | 'u';
  memberId: string;
  client: ClusterClient;
  book: CursorBook;
  log: Logger;
  counters: Counters;
  freshStart: 'now' | 'retained';
  deliver(body: EventBody, meta: EventMeta): Promise<unknown>;
  onResync(info: ResyncInfo): void;
}

type QueueItem = { kv: KeyValue } | { resyncTo: number };

class DurableStream {
  state: StreamState = 'opening';
  readonly name: string;
  readonly opened: Promise<void>;
  private markOpened!: () => void;
  private watcher: Watcher | null = null;
  private queue: QueueItem[] = [];
  private head = 0;
  private draining = false;
  private drained: Promise<void> = Promise.resolve();
  private running: Promise<void> | null = null;
  private readonly recent = new RecentIds();
  private position: StreamPosition = { revision: 0, key: null };

  constructor(private readonly h: StreamHost) {
    this.name = h.name;
    this.opened = new Promise((r) => (this.markOpened = r));
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  start(): void {
    this.running = this.openLoop();
  }

  async close(): Promise<void> {
    this.state = 'closed';
    this.markOpened();
    await this.running;
    await this.watcher?.close().catch(() => {});
    this.watcher = null;
    await this.drained;
    this.queue = [];
    this.head = 0;
  }

  private async openLoop(): Promise<void> {
    let delayMs = 100;
    while (this.state !== 'closed') {
      try {
        let pos = this.h.book.get(this.name);
        let fromRevision: number;
        if (pos) {
          this.position = pos;
          fromRevision = watchFromRevision(pos);
        } else if (this.h.freshStart === 'retained') {
          // First subscription, starting from what retention kept (the watch history may still hold
          // deleted events): process the listed events, then follow the watch from the list's revision.
          // The cursor is stored as they are processed.
          const listed = await this.h.client.list(this.h.prefix);
          this.position = { revision: 0, key: null };
          for (const kv of selectReplay(listed.kvs, this.position)) this.push({ kv });
          this.push({ resyncTo: listed.revision });
          fromRevision = listed.revision;
        } else {
          // First subscription, from now on: the cursor is stored at once, so events published while
          // it is down later are replayed even if it never processed one.
          pos = { revision: (await this.h.client.get(eventKeys.seq)).revision, key: null };
          this.h.book.set(this.name, pos);
          this.position = pos;
          fromRevision = pos.revision;
        }
        const w = await this.h.client.watch(this.h.prefix, {
          fromRevision,
          onEvent: (ev) => this.onWatchEvent(ev),
          onResync: (kvs, revision) => this.onResync(kvs, revision),
          onError: (err) => this.h.log.debug({ stream: this.name, err: err.message }, 'events: watch interrupted; resuming'),
        });
        if ((this.state as StreamState) === 'closed') {
          await w.close().catch(() => {});
          return;
        }
        this.watcher = w;
        this.state = 'live';
        this.markOpened();
        return;
      } catch (err) {
        if ((this.state as StreamState) === 'closed') return;
        this.state = 'retrying';
        this.h.log.warn({ stream: this.name, err: (err as Error).message }, 'events: cannot open the durable stream yet; retrying');
        await new Promise((r) => setTimeout(r, delayMs));
        delayMs = Math.min(delayMs * 2, 2000);
      }
    }
  }

  private onWatchEvent(ev: WatchEvent): void {
    if (ev.type !== 'put' || this.state === 'closed') return; // deletes are retention at work
    this.push({ kv: ev.kv });
  }

  private onResync(kvs: KeyValue[], revision: number): void {
    if (this.state === 'closed') return;
    // Items still queued are after the position too; the drain filters by position, so duplicates go.
    const from = this.lastQueuedPosition();
    const replay = selectReplay(kvs, from);
    this.h.onResync({ stream: this.name, topic: this.h.topic, from, listedRevision: revision, replayed: replay.length });
    for (const kv of replay) this.push({ kv });
    this.push({ resyncTo: revision });
  }

  private lastQueuedPosition(): StreamPosition {
    for (let i = this.queue.length - 1; i >= this.head; i--) {
      const it = this.queue[i]!;
      if ('kv' in it) return { revision: it.kv.modRevision, key: it.kv.key };
      return { revision: it.resyncTo, key: null };
    }
    return this.position;
  }

  private push(item: QueueItem): void {
    this.queue.push(item);
    if (this.draining) return;
    this.draining = true;
    this.drained = this.drain();
  }

  /** `draining` is cleared in the same turn as the empty-queue check: a push after it starts a new drain. */
  private async drain(): Promise<void> {
    for (;;) {
      if (this.head >= this.queue.length || this.state === 'closed') {
        this.draining = false;
        return;
      }
      const item = this.queue[this.head]!;
      this.queue[this.head++] = undefined as never;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      if ('resyncTo' in item) {
        if (item.resyncTo > this.position.revision) this.advance({ revision: item.resyncTo, key: null });
        continue;
      }
      const { kv } = item;
      if (!isAfter(this.position, kv.modRevision, kv.key)) {
        this.h.counters.inc('events_duplicates_skipped_total');
        continue;
      }
      const check = checkEventBody(kv.value, { topic: this.h.topic, to: this.h.kind === 'u' ? this.h.memberId : undefined });
      if (!check.ok) {
        this.h.counters.inc('events_dropped_total', { reason: 'badStored' });
        this.h.log.warn({ stream: this.name, key: kv.key, err: check.problem }, 'events: skipped an invalid durable event');
      } else if (this.recent.has(check.body.id)) {
        this.h.counters.inc('events_duplicates_skipped_total');
      } else {
        this.recent.add(check.body.id);
        const { body } = check;
        if (!(body.from === this.h.memberId && !body.echo && body.to === undefined)) {
          this.h.counters.inc('events_received_total', { mode: 'durable' });
          const meta: EventMeta = { from: body.from, topic: body.topic, mode: 'durable', id: body.id, revision: kv.modRevision };
          if (body.to !== undefined) meta.to = body.to;
          await this.h.deliver(body, meta);
        }
      }
      this.advance({ revision: kv.modRevision, key: kv.key });
    }
  }

  private advance(pos: StreamPosition): void {
    this.position = pos;
    this.h.book.set(this.name, pos);
  }
}
