/**
 * The client outbox: writes that could not reach the cluster wait here, durably, and are
 * retried in order until their commit is confirmed. Applied exactly once because every item
 * keeps one (session, seq) pair for all its retries and across restarts: the cluster remembers
 * the session's results and answers a repeat with the stored one.
 *
 * The session is one the cluster handed out (`openSession`), stored here before its first use.
 * If the cluster has forgotten it (evicted after many newer sessions while this outbox was
 * away), the head item's outcome is unknown: it is reported as a SessionLostError, not sent again
 * under a new session (that could apply it twice), and the next item opens a new session.
 *
 * On disk, one append-only file of frames (encodeFrame from the WAL):
 *   {t:'h', client}        header, first record; written with the file, atomically
 *   {t:'i', seq, cmd, at}  an enqueued item
 *   {t:'a', seq}           every item with a seq <= this one is finished
 *   {t:'s', session, from} items from seq `from` on are sent under cluster session `session`
 *                          (as its seq `seq - from + 1`); session null: none yet
 * Compaction rewrites the file as header + latest ack + pending items (temp, fsync, rename,
 * dir fsync), so a crash leaves either the old or the new file.
 *
 * The chart (machines/outbox.ts) decides when to submit, back off and retry; this class owns
 * the disk, the timers and the submit promises.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { createActor, type Actor } from 'xstate';
import { outboxMachine, type OutboxEvent } from '../machines/outbox.ts';
import { NodeFileSystem, type AppendHandle, type FileSystem } from '../src/storage/fs.ts';
import { WalCorruptionError } from '../src/storage/errors.ts';
import { TMP_SUFFIX, checkFrame, decodeFramedFile, encodeFrame, toPlainBytes } from '../src/storage/wal.ts';
import { realClock, silentLogger, type Clock, type Logger } from './ports.ts';
import { jitteredBackoff, RetryTimer } from './retry.ts';
import { SessionLostError } from '../src/errors.ts';
import { concatBytes as concat } from '../src/bytes.ts';

export interface OutboxItem {
  seq: number;
  command: Uint8Array;
  /** Wall-clock ms at enqueue; informational only. */
  enqueuedAt: number;
}

/** Resolves when the command is committed (with its result); rejects on failure. */
export interface OutboxSubmit {
  (item: { client: string; seq: number; command: Uint8Array }): Promise<unknown>;
}

export type OutboxOutcome = { ok: true; result: unknown } | { ok: false; error: Error };

export interface OutboxOptions {
  dir: string;
  fs?: FileSystem;
  submit: OutboxSubmit;
  /**
   * Opens a session in the cluster (its id). Without it the outbox's own client id is the session
   * (a cluster that accepts client-chosen sessions, e.g. tests).
   */
  openSession?: () => Promise<string>;
  /** Network, no-quorum and not-leader errors are retryable; a rejected command is not. */
  isRetryable(err: unknown): boolean;
  clock?: Clock;
  random?: () => number;
  /** Retry n waits uniformly in [minMs, min(maxMs, minMs * 2^(n-1))]. Default 100..5000. */
  backoff?: { minMs: number; maxMs: number };
  logger?: Logger;
  /** Default: generated on first open and stored in `dir`. Must match the stored one. */
  clientId?: string;
  /** Rewrite the file once this many finished items sit in it (default 1000). */
  compactAfter?: number;
}

/** What open() found on disk. */
export interface OutboxRecovery {
  records: number;
  pending: number;
  /** Bytes cut from a torn last record (a crash mid-append), 0 if none. */
  truncatedBytes: number;
  tornReason: string | null;
}

export class OutboxClosedError extends Error {
  override readonly name = 'OutboxClosedError';
  constructor(message = 'outbox is closed') {
    super(message);
  }
}

const LOG_FILE = 'outbox.log';

interface SessionRef {
  id: string;
  from: number;
}

type Rec =
  | { t: 'h'; client: string }
  | { t: 's'; session: string | null; from: number }
  | { t: 'i'; seq: number; cmd: Uint8Array; at: number }
  | { t: 'a'; seq: number };

interface Write {
  frame: Uint8Array;
  /** Runs in the writer loop right after the fsync, before the next group is written. */
  durable(): void;
  resolve(): void;
  reject(err: unknown): void;
}

const isSeq = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 1;

function parseRecord(v: unknown): Rec | null {
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (r.t === 'h' && typeof r.client === 'string' && r.client !== '') return { t: 'h', client: r.client };
  if (r.t === 'a' && (r.seq === 0 || isSeq(r.seq))) return { t: 'a', seq: r.seq as number };
  if (r.t === 's' && (r.session === null || (typeof r.session === 'string' && r.session !== '')) && isSeq(r.from)) {
    return { t: 's', session: r.session as string | null, from: r.from as number };
  }
  if (r.t === 'i' && isSeq(r.seq) && r.cmd instanceof Uint8Array && typeof r.at === 'number') {
    return { t: 'i', seq: r.seq, cmd: toPlainBytes(r.cmd)!, at: r.at };
  }
  return null;
}


interface LoadedLog {
  client: string | null;
  session: SessionRef | null;
  items: OutboxItem[];
  ackedThrough: number;
  lastSeq: number;
  finishedInFile: number;
  recovery: OutboxRecovery;
}

/**
 * Reads the log. A bad frame with no valid frame after it is a torn tail (the last append was
 * cut by a crash) and is reported and cut; a bad frame followed by valid data is corruption
 * and refused, as in the WAL: dropping acknowledged items silently would lose writes.
 */
function readLog(bytes: Uint8Array): LoadedLog & { validBytes: number } {
  const out: LoadedLog & { validBytes: number } = {
    client: null,
    session: null,
    items: [],
    ackedThrough: 0,
    lastSeq: 0,
    finishedInFile: 0,
    validBytes: 0,
    recovery: { records: 0, pending: 0, truncatedBytes: 0, tornReason: null },
  };
  let offset = 0;
  while (offset < bytes.length) {
    const frame = checkFrame(bytes, offset);
    if (!frame.ok) {
      for (let at = offset + 1; at < bytes.length; at++) {
        if (checkFrame(bytes, at).ok) throw new WalCorruptionError(LOG_FILE, offset, `${frame.reason}, followed by a valid record at byte ${at}`);
      }
      out.recovery.tornReason = frame.reason;
      out.recovery.truncatedBytes = bytes.length - offset;
      break;
    }
    const rec = parseRecord(decodeFramedFile(LOG_FILE, bytes.subarray(offset, offset + frame.length)));
    if (rec === null) throw new WalCorruptionError(LOG_FILE, offset, 'record of unknown shape');
    if ((rec.t === 'h') !== (offset === 0)) throw new WalCorruptionError(LOG_FILE, offset, 'header must be the first record, and only it');
    if (rec.t === 'h') out.client = rec.client;
    else if (rec.t === 's') out.session = rec.session === null ? null : { id: rec.session, from: rec.from };
    else if (rec.t === 'i') {
      if (rec.seq <= out.lastSeq) throw new WalCorruptionError(LOG_FILE, offset, `item seq ${rec.seq} not above ${out.lastSeq}`);
      out.lastSeq = rec.seq;
      out.items.push({ seq: rec.seq, command: rec.cmd, enqueuedAt: rec.at });
    } else if (rec.seq > out.ackedThrough) {
      out.ackedThrough = rec.seq;
      out.lastSeq = Math.max(out.lastSeq, rec.seq);
    }
    out.recovery.records++;
    offset += frame.length;
  }
  out.validBytes = offset;
  const before = out.items.length;
  out.items = out.items.filter((it) => it.seq > out.ackedThrough);
  out.finishedInFile = before - out.items.length;
  out.recovery.pending = out.items.length;
  return out;
}

export class Outbox {
  readonly clientId: string;
  readonly recovery: OutboxRecovery;

  private readonly fs: FileSystem;
  private readonly dir: string;
  private readonly o: OutboxOptions;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly compactAfter: number;
  private readonly machineActor: Actor<typeof outboxMachine>;

  private handle: AppendHandle;
  private items: OutboxItem[];
  private nextSeq: number;
  private ackedThrough: number;
  private finishedInFile: number;
  /** The cluster session items are sent under (durable before its first use). */
  private session: SessionRef | null;
  /** enqueue() calls accepted but not yet durable: whenDrained waits for them too. */
  private enqueuing = 0;

  private readonly writes: Write[] = [];
  private writing: Promise<void> | null = null;
  private failure: unknown = null;
  private closed = false;

  /** Bumped whenever a submit's answer must be ignored (a newer attempt, or close). */
  private attemptToken = 0;
  private readonly retryTimer: RetryTimer;
  private readonly listeners = new Set<(seq: number, outcome: OutboxOutcome) => void>();
  private drainWaiters: { resolve(): void; reject(err: unknown): void }[] = [];

  private constructor(o: OutboxOptions, fs: FileSystem, handle: AppendHandle, log: LoadedLog & { client: string }) {
    this.o = o;
    this.fs = fs;
    this.dir = o.dir;
    this.clock = o.clock ?? realClock;
    this.logger = o.logger ?? silentLogger;
    this.compactAfter = o.compactAfter ?? 1000;
    this.handle = handle;
    this.clientId = log.client;
    this.items = log.items;
    this.nextSeq = log.lastSeq + 1;
    this.ackedThrough = log.ackedThrough;
    this.finishedInFile = log.finishedInFile;
    this.session = log.session;
    this.recovery = log.recovery;

    const nextDelayMs = jitteredBackoff(o.backoff ?? { minMs: 100, maxMs: 5000 }, o.random ?? Math.random);
    this.retryTimer = new RetryTimer(this.clock, () => this.signal({ type: 'RETRY_DUE' }));
    const machine = outboxMachine.provide({
      actions: {
        submitHead: () => this.submitHead(),
        scheduleRetry: ({ context }) => this.retryTimer.schedule(context.delayMs),
        cancelRetry: () => this.retryTimer.cancel(),
      },
    });
    this.machineActor = createActor(machine, { input: { pending: this.items.length, nextDelayMs } });
  }

  /** Opens (or creates) the outbox in `o.dir` and starts sending recovered items. */
  static async open(o: OutboxOptions): Promise<Outbox> {
    const fs = o.fs ?? new NodeFileSystem();
    const logger = o.logger ?? silentLogger;
    const path = join(o.dir, LOG_FILE);
    await fs.mkdirp(o.dir);
    const names = await fs.list(o.dir);
    if (names.includes(LOG_FILE + TMP_SUFFIX)) {
      // An interrupted compaction: the renamed file (old or new) is the truth.
      await fs.remove(join(o.dir, LOG_FILE + TMP_SUFFIX));
    }
    let log: LoadedLog & { validBytes: number };
    if (names.includes(LOG_FILE)) {
      const bytes = await fs.readFile(path);
      log = readLog(bytes);
      if (log.client === null) throw new WalCorruptionError(LOG_FILE, 0, 'no header record');
      if (o.clientId !== undefined && o.clientId !== log.client) {
        // Pending items may already be applied under the stored session: a new id would apply them twice.
        throw new Error(`outbox in ${o.dir} belongs to client ${log.client}, not ${o.clientId}`);
      }
    } else {
      const client = o.clientId ?? newClientId(o.random);
      await writeAtomic(fs, o.dir, [encodeFrame({ t: 'h', client })]);
      log = {
        client,
        session: null,
        items: [],
        ackedThrough: 0,
        lastSeq: 0,
        finishedInFile: 0,
        validBytes: 0,
        recovery: { records: 0, pending: 0, truncatedBytes: 0, tornReason: null },
      };
    }
    const handle = await fs.openAppend(path);
    if (log.recovery.tornReason !== null) {
      await handle.truncate(log.validBytes);
      await handle.datasync();
      logger.warn(
        { dir: o.dir, offset: log.validBytes, bytes: log.recovery.truncatedBytes, reason: log.recovery.tornReason },
        `outbox: torn tail cut (${log.recovery.truncatedBytes} bytes at byte ${log.validBytes})`,
      );
    }
    const outbox = new Outbox(o, fs, handle, log as LoadedLog & { client: string });
    logger.info({ dir: o.dir, client: outbox.clientId, pending: log.items.length, nextSeq: outbox.nextSeq }, 'outbox opened');
    outbox.machineActor.start();
    return outbox;
  }

  /** The running chart, for the dashboard. */
  get actor(): Actor<typeof outboxMachine> {
    return this.machineActor;
  }

  /** Stores the command durably; resolves after its fsync with the seq it will be sent under. */
  enqueue(command: Uint8Array): Promise<{ seq: number }> {
    if (this.closed) return Promise.reject(new OutboxClosedError());
    if (this.failure !== null) return Promise.reject(this.failedError());
    const seq = this.nextSeq++;
    const item: OutboxItem = { seq, command: command.slice(), enqueuedAt: Date.now() };
    this.enqueuing++;
    const done = () => {
      this.enqueuing--;
      this.checkDrained();
    };
    return this.write({ t: 'i', seq, cmd: item.command, at: item.enqueuedAt }, () => {
      this.items.push(item);
      this.signal({ type: 'ENQUEUED', seq });
    }).then(
      () => (done(), { seq }),
      (err) => {
        done();
        throw err;
      },
    );
  }

  pending(): OutboxItem[] {
    return this.items.map((it) => ({ ...it }));
  }

  /** Final outcome per item: committed, or failed non-retryably. Returns an unsubscribe. */
  onResult(fn: (seq: number, outcome: OutboxOutcome) => void): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  /** Resolves once nothing is pending or being enqueued; rejects if the outbox closes first. */
  whenDrained(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.drainWaiters.push({ resolve, reject });
      this.checkDrained();
    });
  }

  /** Stops sending and retrying. Pending items stay on disk for the next open(). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.attemptToken++; // an in-flight submit's answer is dropped: next open resubmits the same seq
    this.signal({ type: 'CLOSE' });
    this.checkDrained();
    await this.writing;
    await this.handle.close().catch((err) => (this.failure === null ? Promise.reject(err) : undefined));
    this.logger.info({ dir: this.dir, pending: this.items.length }, 'outbox closed');
  }

  // ---- sending -------------------------------------------------------------------------------

  /** The chart's `submitHead`: one attempt for the head item. */
  private submitHead(): void {
    const head = this.items[0];
    if (!head) return; // unreachable: the chart only sends with pending > 0
    const token = ++this.attemptToken;
    const current = () => token === this.attemptToken && !this.closed && this.failure === null;
    // new Promise(): a submit that throws synchronously is a failed attempt, not a crash here.
    new Promise<unknown>((resolve) => resolve(this.submitUnderSession(head, current))).then(
      (result) => {
        if (current()) this.finish(head, { ok: true, result });
      },
      (err) => {
        if (!current()) return;
        const error = err instanceof Error ? err : new Error(String(err));
        if (error instanceof SessionLostError) {
          // Unknown outcome: report it, never resend under another session; the next item opens one.
          this.session = null;
          this.write({ t: 's', session: null, from: head.seq + 1 }, () => {}).catch(() => {});
          return this.finish(head, { ok: false, error });
        }
        let retryable = false;
        try {
          retryable = this.o.isRetryable(err);
        } catch (e) {
          this.logger.error({ err: String(e) }, 'outbox: isRetryable threw; treating the failure as final');
        }
        if (retryable) {
          this.logger.debug({ seq: head.seq, err: error.message }, 'outbox: retryable failure');
          this.signal({ type: 'FAILED', seq: head.seq, retryable: true, error: error.message });
        } else {
          this.finish(head, { ok: false, error });
        }
      },
    );
  }

  /** Sends the head under the stored session, opening (and storing) one first if there is none. */
  private async submitUnderSession(head: OutboxItem, current: () => boolean): Promise<unknown> {
    if (!this.o.openSession) return this.o.submit({ client: this.clientId, seq: head.seq, command: head.command });
    if (!this.session) {
      const id = await this.o.openSession();
      if (!current()) throw new OutboxClosedError('superseded');
      const session = { id, from: head.seq };
      await this.write({ t: 's', session: id, from: head.seq }, () => {
        this.session = session;
      });
    }
    const { id, from } = this.session!;
    return this.o.submit({ client: id, seq: head.seq - from + 1, command: head.command });
  }

  /** The head is done for good: record it durably, then report it and move on. */
  private finish(head: OutboxItem, outcome: OutboxOutcome): void {
    this.write({ t: 'a', seq: head.seq }, () => {
      this.items.shift();
      this.ackedThrough = head.seq;
      this.finishedInFile++;
    }).then(
      () => {
        for (const fn of this.listeners) {
          try {
            fn(head.seq, outcome);
          } catch (err) {
            this.logger.error({ seq: head.seq, err: String(err) }, 'outbox: onResult listener threw');
          }
        }
        if (outcome.ok) this.signal({ type: 'SENT', seq: head.seq, result: outcome.result });
        else this.signal({ type: 'FAILED', seq: head.seq, retryable: false, error: outcome.error.message });
        this.checkDrained();
      },
      // The write failure already stopped the outbox (see fail()); the item stays pending on disk.
      () => {},
    );
  }

  /** Events after close are dropped: the chart has reached its final state. */
  private signal(event: OutboxEvent): void {
    if (this.machineActor.getSnapshot().status === 'active') this.machineActor.send(event);
  }

  private checkDrained(): void {
    if (this.drainWaiters.length === 0) return;
    let settle: ((w: { resolve(): void; reject(err: unknown): void }) => void) | null = null;
    if (this.items.length === 0 && this.enqueuing === 0) settle = (w) => w.resolve();
    else if (this.failure !== null) settle = (w) => w.reject(this.failedError());
    else if (this.closed) settle = (w) => w.reject(new OutboxClosedError(`outbox closed with ${this.items.length} items pending`));
    if (settle === null) return;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    waiters.forEach(settle);
  }

  // ---- disk ----------------------------------------------------------------------------------

  private write(rec: Rec, durable: () => void): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failedError());
    return new Promise((resolve, reject) => {
      this.writes.push({ frame: encodeFrame(rec), durable, resolve, reject });
      if (!this.writing) this.writing = this.drainWrites();
    });
  }

  /**
   * The single writer: everything queued while a write is in flight goes out as the next
   * group, with one append and one fsync (group commit). Compaction runs between groups.
   */
  private async drainWrites(): Promise<void> {
    try {
      await Promise.resolve(); // calls made in the same tick join the first group
      while (this.writes.length > 0) {
        const group = this.writes.splice(0);
        if (this.failure !== null) {
          for (const w of group) w.reject(this.failedError());
          continue;
        }
        try {
          await this.handle.append(concat(group.map((w) => w.frame)));
          await this.handle.datasync();
        } catch (err) {
          this.fail(err);
          for (const w of group) w.reject(err);
          continue;
        }
        for (const w of group) w.durable();
        for (const w of group) w.resolve();
        if (this.finishedInFile >= this.compactAfter) {
          try {
            await this.compact();
          } catch (err) {
            this.fail(err);
          }
        }
      }
    } finally {
      this.writing = null;
    }
  }

  /** Rewrites the file without finished items. Runs inside the writer loop, so nothing races it. */
  private async compact(): Promise<void> {
    const frames = [encodeFrame({ t: 'h', client: this.clientId }), encodeFrame({ t: 'a', seq: this.ackedThrough })];
    if (this.session) frames.push(encodeFrame({ t: 's', session: this.session.id, from: this.session.from }));
    for (const it of this.items) frames.push(encodeFrame({ t: 'i', seq: it.seq, cmd: it.command, at: it.enqueuedAt }));
    // The ack record keeps the highest seq ever used even when no item is left, so seqs never repeat.
    await writeAtomic(this.fs, this.dir, frames);
    const old = this.handle;
    this.handle = await this.fs.openAppend(join(this.dir, LOG_FILE));
    await old.close();
    this.logger.info({ dir: this.dir, removed: this.finishedInFile, kept: this.items.length }, 'outbox compacted');
    this.finishedInFile = 0;
  }

  /**
   * A failed write or fsync leaves the file's state unknown (as in the storage): stop for good.
   * Whatever was durable is recovered by the next open(); committed-but-unacked items are
   * resubmitted under the same seq and deduplicated by the cluster.
   */
  private fail(err: unknown): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.logger.error({ dir: this.dir, err: String((err as Error)?.message ?? err) }, 'outbox: disk write failed; outbox stopped');
    this.attemptToken++;
    this.signal({ type: 'CLOSE' });
    this.checkDrained();
  }

  private failedError(): Error {
    return new Error(`outbox stopped after a disk failure: ${String((this.failure as Error)?.message ?? this.failure)}`, { cause: this.failure });
  }
}

/** write temp + fsync + rename + dir fsync: a crash leaves the old file or the new one, never half. */
async function writeAtomic(fs: FileSystem, dir: string, frames: Uint8Array[]): Promise<void> {
  const tmp = join(dir, LOG_FILE + TMP_SUFFIX);
  await fs.writeFile(tmp, concat(frames));
  await fs.rename(tmp, join(dir, LOG_FILE));
  await fs.syncDir(dir);
}

/** From the injected random when given (deterministic simulations), else from the OS. */
function newClientId(random?: () => number): string {
  const bytes = random ? Uint8Array.from({ length: 12 }, () => Math.floor(random() * 256)) : randomBytes(12);
  return `c-${Buffer.from(bytes).toString('base64url')}`;
}
