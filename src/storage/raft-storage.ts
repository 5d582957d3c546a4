/**
 * Durable Raft state over a FileSystem: WAL segments for entries and commit, an atomically
 * replaced file for term+vote, snapshot files that also mark where the WAL must be read from.
 *
 * One writer loop handles every write in call order. persist() calls queued while a write
 * is in flight form the next group: one append, one datasync (group commit). saveSnapshot()
 * is a barrier in the same queue, so it always sees a durable, stable log.
 *
 * Why a snapshot records `walStartSeq` (the first segment to replay) instead of relying on
 * which segments compaction managed to delete: a crash can leave any subset of deletions
 * on disk, and replaying a stale older segment could resurrect truncated entries.
 */
import { join } from 'node:path';
import type { Entry, HardState, Snapshot, SnapshotMeta } from '../raft/types.ts';
import type { SnapshotData } from '../raft/snapshot-data.ts';
import { crc32 } from 'node:zlib';
import type { LoadedState, PersistBatch, RaftStorage, RecoveryReport, StorageStats } from './types.ts';
import type { AppendHandle, FileSystem } from './fs.ts';
import { StorageClosedError, StorageFailedError, StorageUsageError, WalCorruptionError } from './errors.ts';
import {
  TERM_FILE,
  TMP_SUFFIX,
  SNAPSHOT_FILE_MAGIC,
  decodeSnapshotFile,
  decodeTermFile,
  encodeFrame,
  encodeSnapshotTrailer,
  entriesRecord,
  parseSegmentName,
  parseSnapshotName,
  readSegment,
  recordEntries,
  segmentName,
  snapshotName,
} from './wal.ts';
import type { SnapshotFile } from './wal.ts';
import { concatBytes as concat } from '../bytes.ts';

export interface StorageLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface DiskRaftStorageOptions {
  fs: FileSystem;
  dir: string;
  /** Rotate to a new segment once the active one reaches this size (default 64 MiB). */
  segmentBytes?: number;
  logger?: StorageLogger;
  /** Called after each WAL fdatasync with its duration and the entries it made durable (metrics). */
  onSync?(ms: number, entries: number): void;
}

interface ActiveSegment {
  seq: number;
  handle: AppendHandle;
  size: number;
  /** Holds a commit-only record not yet covered by a datasync. */
  unsynced: boolean;
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}
/** Where a snapshot leaves the log: decided in the writer queue, from the log as it stands there. */
interface Placement {
  keepLog: boolean;
  walStartSeq: number;
  commit: number;
}

type Op =
  | ({ kind: 'persist'; batch: PersistBatch } & Waiter)
  | ({ kind: 'snapshot'; snapshot: Snapshot; discardLog: boolean } & Waiter)
  /** An own snapshot whose data is written and synced to its temp file: place it and make it the base. */
  | ({ kind: 'snapshotCommit'; meta: SnapshotMeta; data: SnapshotDataWritten } & Waiter);

/** What the temp file holds after the magic: the data's length and CRC, for the trailer. */
interface SnapshotDataWritten {
  bytes: number;
  crc: number;
}

/** Snapshot pieces are written in batches of about this size (fewer syscalls, bounded copies). */
const SNAPSHOT_WRITE_BYTES = 1024 * 1024;

const silentLogger: StorageLogger = { info() {}, warn() {} };


export class DiskRaftStorage implements RaftStorage {
  private readonly fs: FileSystem;
  private readonly dir: string;
  private readonly segmentBytes: number;
  private readonly onSync: ((ms: number, entries: number) => void) | undefined;
  private readonly logger: StorageLogger;

  // Durable state, as a reload would see it. Entries are tracked by term and segment only.
  private hard: HardState = { term: 0, vote: null, commit: 0 };
  private recordedCommit = 0;
  private snapIndex = 0;
  private snapTerm = 0;
  private terms: number[] = []; // terms[k] is the term of entry snapIndex + 1 + k
  private entrySegs: number[] = []; // segment holding that entry
  private segments: number[] = []; // existing segment seqs, ascending
  private snapshotFiles: number[] = []; // indexes of snapshot files on disk
  private active: ActiveSegment | null = null;
  private nextSeq = 1;

  private readonly queue: Op[] = [];
  /** Own snapshots being written outside the writer queue. */
  private readonly background = new Set<Promise<void>>();
  private draining: Promise<void> | null = null; // the writer loop, while it runs
  private failure: unknown = null;
  private state: 'new' | 'loaded' | 'closed' = 'new';
  private readonly counters: StorageStats = { fsyncs: 0, entriesWritten: 0, bytesWritten: 0, persistCalls: 0 };

  constructor(options: DiskRaftStorageOptions) {
    this.fs = options.fs;
    this.dir = options.dir;
    this.segmentBytes = options.segmentBytes ?? 64 * 1024 * 1024;
    this.onSync = options.onSync;
    this.logger = options.logger ?? silentLogger;
  }

  stats(): StorageStats {
    return { ...this.counters };
  }

  persist(batch: PersistBatch): Promise<void> {
    this.counters.persistCalls++;
    return this.enqueue((w) => ({ kind: 'persist', batch, ...w }));
  }

  /**
   * A snapshot from the leader (discardLog) is written in the writer queue: nothing else may touch
   * the log meanwhile. An own snapshot (of entries this log holds) is written to its temp file
   * outside the queue — for a large state that takes seconds, and WAL appends must go on — and
   * only made the base (rename, compaction) in the queue.
   */
  saveSnapshot(snapshot: Snapshot, opts: { discardLog: boolean }): Promise<void> {
    if (opts.discardLog || this.state !== 'loaded' || this.failure !== null) {
      return this.enqueue((w) => ({ kind: 'snapshot', snapshot, discardLog: opts.discardLog, ...w }));
    }
    const job = this.writeOwnSnapshot(snapshot);
    this.background.add(job);
    const done = () => void this.background.delete(job);
    job.then(done, done);
    return job;
  }

  /**
   * The data (the large part) is written and synced here; where the snapshot leaves the log is
   * decided in the queue, from the log as it is then (a leader's snapshot may have replaced it
   * meanwhile), and written into the trailer there.
   */
  private async writeOwnSnapshot(snapshot: Snapshot): Promise<void> {
    const { meta } = snapshot;
    if (meta.index <= this.snapIndex) return this.ignoreSnapshot(meta);
    const data = await this.writeSnapshotData(snapshot);
    return this.enqueue((w) => ({ kind: 'snapshotCommit', meta, data, ...w }));
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    await Promise.allSettled([...this.background]);
    await this.draining;
    const active = this.active;
    this.active = null;
    // After a failure the handle may be dead (crashed sim, EIO); closing is best effort then.
    if (active) await active.handle.close().catch((err) => (this.failure === null ? Promise.reject(err) : undefined));
  }

  private enqueue(make: (w: Waiter) => Op): Promise<void> {
    if (this.state === 'new') return Promise.reject(new StorageUsageError('load() must complete before writes'));
    if (this.state === 'closed') return Promise.reject(new StorageClosedError());
    if (this.failure !== null) return Promise.reject(new StorageFailedError(this.failure));
    return new Promise((resolve, reject) => {
      this.queue.push(make({ resolve, reject }));
      if (!this.draining) this.draining = this.drain();
    });
  }

  /**
   * The single writer. `draining` is cleared in the same synchronous step that sees the
   * queue empty, so a call arriving from a just-resolved waiter always starts a new loop.
   */
  private async drain(): Promise<void> {
    try {
      // Calls made in the same tick as the first one join its group instead of the next.
      await Promise.resolve();
      while (this.queue.length > 0) {
        if (this.failure !== null) {
          for (const op of this.queue.splice(0)) op.reject(new StorageFailedError(this.failure));
          return;
        }
        const group: Op[] = [];
        if (this.queue[0]!.kind !== 'persist') group.push(this.queue.shift()!);
        else while (this.queue[0]?.kind === 'persist') group.push(this.queue.shift()!);
        try {
          const head = group[0]!;
          if (head.kind === 'snapshot') await this.writeSnapshot(head.snapshot, head.discardLog);
          else if (head.kind === 'snapshotCommit') await this.placeAndCommit(head.meta, head.data);
          else await this.writeGroup(group as Extract<Op, { kind: 'persist' }>[]);
          // Calls rejected as malformed inside writeGroup stay rejected: a promise settles once.
          for (const op of group) op.resolve();
        } catch (err) {
          // An IO error leaves the on-disk state unknown: refuse all further writes.
          this.failure = err;
          for (const op of group) op.reject(err);
        }
      }
    } finally {
      this.draining = null;
    }
  }

  private lastIndex(): number {
    return this.snapIndex + this.terms.length;
  }

  private termAt(index: number): number | undefined {
    if (index === this.snapIndex) return this.snapTerm;
    return this.terms[index - this.snapIndex - 1];
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  private checkEntries(entries: Entry[], lastIndex: number): string | null {
    const first = entries[0]!.index;
    if (first <= this.snapIndex) return `entry ${first} is at or below the snapshot index ${this.snapIndex}`;
    if (first > lastIndex + 1) return `entry ${first} leaves a gap after last index ${lastIndex}`;
    for (let k = 1; k < entries.length; k++) {
      if (entries[k]!.index !== first + k) return `batch not contiguous at position ${k}`;
    }
    return null;
  }

  /** One group commit: term file if term/vote changed, then one WAL append and one datasync (when it holds entries). */
  private async writeGroup(group: Extract<Op, { kind: 'persist' }>[]): Promise<void> {
    const frames: Uint8Array[] = [];
    const batches: Entry[][] = [];
    let next = { ...this.hard };
    let lastIndex = this.lastIndex();
    for (let k = 0; k < group.length; k++) {
      const { batch } = group[k]!;
      if (batch.entries && batch.entries.length > 0) {
        const problem = this.checkEntries(batch.entries, lastIndex);
        if (problem) {
          // A caller bug, not an IO failure: reject this call only.
          group[k]!.reject(new StorageUsageError(problem));
          continue;
        }
        frames.push(encodeFrame(entriesRecord(batch.entries)));
        batches.push(batch.entries);
        lastIndex = batch.entries.at(-1)!.index;
      }
      if (batch.hardState) next = { ...batch.hardState };
    }
    // Written before the entries: the disk must never hold entries of a term newer than its
    // stored term. The rare change pays for its own fsyncs; commit rides in the WAL below.
    if (next.term !== this.hard.term || next.vote !== this.hard.vote) {
      await this.writeAtomic(TERM_FILE, encodeFrame({ term: next.term, vote: next.vote }));
      this.hard.term = next.term;
      this.hard.vote = next.vote;
    }
    if (next.commit !== this.recordedCommit) frames.push(encodeFrame({ t: 'c', c: next.commit }));
    if (frames.length > 0) {
      const active = await this.activeSegment();
      const bytes = concat(frames);
      await active.handle.append(bytes);
      active.size += bytes.length;
      this.counters.bytesWritten += bytes.length;
      // The commit index alone needs no fsync (it is volatile in Raft: after a crash a lower one
      // is re-learned from the leader); syncing it would put a third fsync on every write's path.
      if (batches.length > 0) {
        const started = performance.now();
        await active.handle.datasync();
        this.counters.fsyncs++;
        active.unsynced = false;
        this.onSync?.(performance.now() - started, batches.reduce((n, b) => n + b.length, 0));
      } else active.unsynced = true;
      for (const entries of batches) this.applyEntries(entries, active.seq);
      this.recordedCommit = next.commit;
    }
    this.hard.commit = next.commit;
  }

  private applyEntries(entries: Entry[], seq: number): void {
    const keep = entries[0]!.index - this.snapIndex - 1;
    this.terms.length = keep;
    this.entrySegs.length = keep;
    for (const e of entries) {
      this.terms.push(e.term);
      this.entrySegs.push(seq);
    }
    this.counters.entriesWritten += entries.length;
  }

  /** The segment to append to; rotates once the current one is full. */
  private async activeSegment(): Promise<ActiveSegment> {
    if (this.active && this.active.size >= this.segmentBytes) {
      // A commit-only record may be unsynced (the writer syncs only groups with entries): the
      // next datasync goes to the new segment, so sync this one before leaving it.
      if (this.active.unsynced) {
        await this.active.handle.datasync();
        this.counters.fsyncs++;
      }
      await this.active.handle.close();
      this.active = null;
    }
    if (!this.active) {
      const seq = this.nextSeq++;
      const handle = await this.fs.openAppend(this.path(segmentName(seq)));
      // The new name must be durable before data in it is acknowledged.
      await this.fs.syncDir(this.dir);
      this.counters.fsyncs++;
      this.active = { seq, handle, size: 0, unsynced: false };
      this.segments.push(seq);
    }
    return this.active;
  }

  /** write temp + datasync + rename + fsync dir: after a crash the file is old or new, never half. */
  private async writeAtomic(name: string, bytes: Uint8Array): Promise<void> {
    const tmp = this.path(name + TMP_SUFFIX);
    await this.fs.writeFile(tmp, bytes);
    await this.fs.rename(tmp, this.path(name));
    await this.fs.syncDir(this.dir);
    this.counters.fsyncs += 2;
    this.counters.bytesWritten += bytes.length;
  }

  private ignoreSnapshot(meta: SnapshotMeta): void {
    this.logger.info({ index: meta.index, snapIndex: this.snapIndex }, 'snapshot not newer than the stored one: ignored');
  }

  private place(meta: SnapshotMeta, discardLog: boolean): Placement {
    // Raft keeps the log after a snapshot only when our entry at its index has its term.
    const keepLog = !discardLog && this.termAt(meta.index) === meta.term;
    let walStartSeq = this.nextSeq; // discarding: start over in a fresh segment
    if (keepLog) {
      const firstAfter = meta.index - this.snapIndex; // position of entry index + 1 in entrySegs
      walStartSeq = this.entrySegs[firstAfter] ?? this.active?.seq ?? this.nextSeq;
      for (let k = firstAfter; k < this.entrySegs.length; k++) walStartSeq = Math.min(walStartSeq, this.entrySegs[k]!);
    }
    // The commit as it stands after this snapshot: a discarded log cannot keep a commit past it.
    const commit = keepLog ? Math.max(this.hard.commit, meta.index) : meta.index;
    return { keepLog, walStartSeq, commit };
  }

  private tempName(meta: SnapshotMeta): string {
    return this.path(snapshotName(meta.index) + TMP_SUFFIX);
  }

  /** magic and data (piece by piece, CRC as it goes), then datasync. Each write awaits, so the event loop keeps turning. */
  private async writeSnapshotData(snapshot: Snapshot): Promise<SnapshotDataWritten> {
    const handle = await this.fs.openAppend(this.tempName(snapshot.meta));
    try {
      await handle.truncate(0); // a leftover of an attempt that failed in this process
      await handle.append(SNAPSHOT_FILE_MAGIC);
      let crc = 0;
      let bytes = 0;
      for (const batch of writeBatches(snapshot.data)) {
        crc = crc32(batch, crc);
        bytes += batch.length;
        await handle.append(batch);
      }
      await handle.datasync();
      this.counters.fsyncs++;
      this.counters.bytesWritten += bytes;
      return { bytes, crc };
    } finally {
      await handle.close();
    }
  }

  /** The trailer (what the data is, where replay starts) completes the temp file; synced. */
  private async writeSnapshotTrailer(meta: SnapshotMeta, data: SnapshotDataWritten, p: Placement): Promise<void> {
    const handle = await this.fs.openAppend(this.tempName(meta));
    try {
      await handle.append(encodeSnapshotTrailer({ meta, walStartSeq: p.walStartSeq, commit: p.commit, dataBytes: data.bytes, dataCrc: data.crc }));
      await handle.datasync();
      this.counters.fsyncs++;
    } finally {
      await handle.close();
    }
  }

  private async writeSnapshot(snapshot: Snapshot, discardLog: boolean): Promise<void> {
    const { meta } = snapshot;
    if (meta.index <= this.snapIndex) return this.ignoreSnapshot(meta);
    const data = await this.writeSnapshotData(snapshot);
    const placement = this.place(meta, discardLog);
    await this.writeSnapshotTrailer(meta, data, placement);
    await this.commitSnapshot(meta, placement);
  }

  /** In the queue, for an own snapshot: placed against the log as it is now. */
  private async placeAndCommit(meta: SnapshotMeta, data: SnapshotDataWritten): Promise<void> {
    if (meta.index <= this.snapIndex) {
      // A newer snapshot from the leader was installed while this one was written.
      await this.fs.remove(this.tempName(meta));
      return this.ignoreSnapshot(meta);
    }
    const placement = this.place(meta, false);
    await this.writeSnapshotTrailer(meta, data, placement);
    await this.commitSnapshot(meta, placement);
  }

  /** Renames the synced temp file into place and makes it the base: the log before it goes. */
  private async commitSnapshot(meta: SnapshotMeta, placement: Placement): Promise<void> {
    const { keepLog, walStartSeq, commit } = placement;
    await this.fs.rename(this.tempName(meta), this.path(snapshotName(meta.index)));
    await this.fs.syncDir(this.dir);
    this.counters.fsyncs++;

    // Now durable: the snapshot is the new base.
    if (keepLog) {
      this.terms.splice(0, meta.index - this.snapIndex);
      this.entrySegs.splice(0, meta.index - this.snapIndex);
    } else {
      this.terms = [];
      this.entrySegs = [];
      if (this.active) {
        await this.active.handle.close();
        this.active = null;
      }
    }
    this.snapIndex = meta.index;
    this.snapTerm = meta.term;
    this.hard.commit = commit;
    this.recordedCommit = commit;
    this.snapshotFiles.push(meta.index);
    await this.compact(meta.index, walStartSeq);
  }

  /** Removes files the newest snapshot made obsolete. A crash midway is finished by load(). */
  private async compact(snapIndex: number, walStartSeq: number): Promise<void> {
    const oldSnapshots = this.snapshotFiles.filter((i) => i < snapIndex);
    const oldSegments = this.segments.filter((s) => s < walStartSeq);
    for (const i of oldSnapshots) await this.fs.remove(this.path(snapshotName(i)));
    for (const s of oldSegments) await this.fs.remove(this.path(segmentName(s)));
    this.snapshotFiles = this.snapshotFiles.filter((i) => i >= snapIndex);
    this.segments = this.segments.filter((s) => s >= walStartSeq);
    if (oldSnapshots.length + oldSegments.length > 0) {
      await this.fs.syncDir(this.dir);
      this.counters.fsyncs++;
    }
    this.logger.info({ snapIndex, walStartSeq, removedSegments: oldSegments.length, removedSnapshots: oldSnapshots.length }, 'log compacted');
  }

  async load(): Promise<LoadedState> {
    if (this.state !== 'new') throw new StorageUsageError('load() may be called once, before any write');
    const report: RecoveryReport = { segmentsRead: 0, recordsRead: 0, truncatedBytes: 0, notes: [] };
    const note = (obj: object, msg: string) => {
      report.notes.push(msg);
      this.logger.warn({ dir: this.dir, ...obj }, msg);
    };
    await this.fs.mkdirp(this.dir);
    const names = await this.fs.list(this.dir);
    let removed = 0;
    for (const name of names.filter((n) => n.endsWith(TMP_SUFFIX))) {
      // An interrupted atomic write: the renamed target (if any) is the truth.
      await this.fs.remove(this.path(name));
      removed++;
      report.notes.push(`removed leftover temp file ${name}`);
    }

    if (names.includes(TERM_FILE)) {
      Object.assign(this.hard, decodeTermFile(await this.fs.readFile(this.path(TERM_FILE))));
    }

    const snapshot = await this.loadNewestSnapshot(names, note);
    const startSeq = snapshot?.walStartSeq ?? 1;
    const allSegs = names.map(parseSegmentName).filter((s): s is number => s !== null).sort((a, b) => a - b);
    const staleSegs = allSegs.filter((s) => s < startSeq);
    const liveSegs = allSegs.filter((s) => s >= startSeq);
    liveSegs.forEach((seq, k) => {
      // Segments are numbered consecutively; a hole means a lost file, not a crash.
      if (seq !== startSeq + k) throw new WalCorruptionError(segmentName(startSeq + k), 0, 'segment missing');
    });

    // Replay: an entry at index i replaces every entry >= i, exactly as persist() did.
    const byIndex = new Map<number, { entry: Entry; seq: number }>();
    let maxIndex = 0;
    let maxCommit = 0;
    let lastSegSize = 0;
    let lastHandle: AppendHandle | null = null;
    for (const [k, seq] of liveSegs.entries()) {
      const name = segmentName(seq);
      const bytes = await this.fs.readFile(this.path(name));
      const isLast = k === liveSegs.length - 1;
      const read = readSegment(name, bytes, isLast);
      report.segmentsRead++;
      report.recordsRead += read.records.length;
      if (isLast) {
        lastHandle = await this.fs.openAppend(this.path(name));
        lastSegSize = read.validBytes;
      }
      if (read.tornReason !== null) {
        const cut = bytes.length - read.validBytes;
        await lastHandle!.truncate(read.validBytes);
        await lastHandle!.datasync();
        this.counters.fsyncs++;
        report.truncatedBytes += cut;
        note({ file: name, offset: read.validBytes, bytes: cut, reason: read.tornReason }, `torn tail of ${name}: cut ${cut} bytes at byte ${read.validBytes} (${read.tornReason})`);
      }
      for (const record of read.records) {
        if (record.t === 'c') {
          maxCommit = Math.max(maxCommit, record.c);
          continue;
        }
        for (let i = record.i; i <= maxIndex; i++) byIndex.delete(i);
        for (const entry of recordEntries(record)) byIndex.set(entry.index, { entry, seq });
        maxIndex = record.i + record.e.length - 1;
      }
    }

    const snapIndex = snapshot?.meta.index ?? 0;
    const atSnap = byIndex.get(snapIndex);
    if (snapshot && atSnap && atSnap.entry.term !== snapshot.meta.term) {
      note({ snapIndex }, `entry ${snapIndex} has term ${atSnap.entry.term}, snapshot has ${snapshot.meta.term}: dropped the log after the snapshot`);
      byIndex.clear();
    }
    const entries: Entry[] = [];
    for (let i = snapIndex + 1; byIndex.has(i); i++) {
      const { entry, seq } = byIndex.get(i)!;
      entries.push(entry);
      this.terms.push(entry.term);
      this.entrySegs.push(seq);
    }
    const lastIndex = snapIndex + entries.length;
    const beyond = [...byIndex.keys()].filter((i) => i > lastIndex).length;
    if (beyond > 0) note({ lastIndex, beyond }, `dropped ${beyond} entries not contiguous after index ${lastIndex}`);

    this.snapIndex = snapIndex;
    this.snapTerm = snapshot?.meta.term ?? 0;
    this.hard.commit = Math.min(Math.max(maxCommit, snapshot?.commit ?? 0, snapIndex), lastIndex);
    this.recordedCommit = this.hard.commit;
    this.segments = liveSegs;
    this.nextSeq = Math.max(startSeq, (liveSegs.at(-1) ?? 0) + 1);
    if (lastHandle) this.active = { seq: liveSegs.at(-1)!, handle: lastHandle, size: lastSegSize, unsynced: false };

    // Finish an interrupted compaction: these are obsolete by the snapshot's own record.
    const staleSnaps = this.snapshotFiles.filter((i) => i < snapIndex);
    for (const i of staleSnaps) await this.fs.remove(this.path(snapshotName(i)));
    for (const s of staleSegs) await this.fs.remove(this.path(segmentName(s)));
    this.snapshotFiles = this.snapshotFiles.filter((i) => i >= snapIndex);
    removed += staleSnaps.length + staleSegs.length;
    if (staleSnaps.length + staleSegs.length > 0) {
      report.notes.push(`removed ${staleSegs.length} obsolete segments and ${staleSnaps.length} old snapshots`);
    }
    if (removed > 0) {
      await this.fs.syncDir(this.dir);
      this.counters.fsyncs++;
    }

    this.state = 'loaded';
    this.logger.info({ dir: this.dir, ...report, snapIndex, lastIndex, commit: this.hard.commit, term: this.hard.term }, 'storage recovered');
    return {
      hardState: { ...this.hard },
      snapshot: snapshot ? { meta: snapshot.meta, data: snapshot.data } : null,
      entries,
      report,
    };
  }

  /** Newest snapshot file that checks out; older ones only if a newer one is damaged. */
  private async loadNewestSnapshot(names: string[], note: (obj: object, msg: string) => void): Promise<SnapshotFile | null> {
    this.snapshotFiles = names.map(parseSnapshotName).filter((i): i is number => i !== null).sort((a, b) => a - b);
    for (const index of [...this.snapshotFiles].reverse()) {
      const name = snapshotName(index);
      try {
        return decodeSnapshotFile(name, index, await this.fs.readFile(this.path(name)));
      } catch (err) {
        if (!(err instanceof WalCorruptionError)) throw err;
        // Falling back is safe only if the older snapshot's segments still exist, which the
        // consecutive-segment check in load() verifies.
        note({ file: name, reason: err.message }, `skipped damaged snapshot ${name}: ${err.reason}`);
      }
    }
    return null;
  }
}

/**
 * The pieces as writes of about SNAPSHOT_WRITE_BYTES: small pieces joined, a large one cut into
 * views (so neither a copy nor the CRC of one write is ever large).
 */
function* writeBatches(data: SnapshotData): Generator<Uint8Array> {
  let group: Uint8Array[] = [];
  let size = 0;
  for (const piece of data) {
    for (let at = 0; at < piece.length; ) {
      const part = piece.subarray(at, at + SNAPSHOT_WRITE_BYTES - size);
      at += part.length;
      group.push(part);
      size += part.length;
      if (size >= SNAPSHOT_WRITE_BYTES) {
        yield group.length === 1 ? group[0]! : concat(group);
        group = [];
        size = 0;
      }
    }
  }
  if (group.length) yield concat(group);
}
