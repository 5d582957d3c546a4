/**
 * In-memory FileSystem for the deterministic simulator. It models what a crash can lose:
 * - file bytes are durable only up to the last completed datasync;
 * - directory entries (create, rename, remove) are durable only after syncDir of that dir,
 *   modelled by a durable and a live name map per directory;
 * - on crash, an unsynced appended tail may survive in part (a torn write).
 * No timers, real IO, Date or Math.random: time comes from the injected `schedule` and
 * randomness from the rng passed to crash(), so a seed replays exactly.
 * Each node incarnation should use its own session(): the dead one's code may still run.
 */
import { posix } from 'node:path';
import type { AppendHandle, FileSystem } from './fs.ts';

export interface SimFileSystemOptions {
  /** Defers sync completions (slow disk). Without it every operation completes in microtasks. */
  schedule?: (delayMs: number, fn: () => void) => void;
  /** Delay of each datasync / syncDir / writeFile when `schedule` is given (default 0). */
  syncDelayMs?: () => number;
  /** Chance that crash() keeps a random prefix of a file's unsynced tail (default 0.5). */
  tornWriteProbability?: number;
}

/** Rejection of any operation issued before the last crash(): the old process is gone. */
export class SimCrashedError extends Error {
  override readonly name = 'SimCrashedError';
  constructor() {
    super('simulated file system crashed; operation from a previous epoch');
  }
}

/** Same shape as Node's errors, so callers can test `code === 'ENOENT'` on either FS. */
export class SimFsError extends Error {
  constructor(
    readonly code: 'ENOENT' | 'EEXIST' | 'EBADF' | 'ENOSPC' | 'EIO',
    path: string,
  ) {
    super(`${code}: ${path}`);
  }
}

interface Inode {
  bytes: Uint8Array; // capacity buffer; live content is bytes[0, length)
  length: number;
  /** Durable content is bytes[0, durableLength) unless a truncate cut below it... */
  durableLength: number;
  /** ...in which case the old durable bytes are kept here until the next datasync. */
  durableCopy: Uint8Array | null;
  /** Bumped by truncate, so an in-flight datasync knows its captured prefix was rewritten. */
  truncations: number;
}

function liveBytes(inode: Inode): Uint8Array {
  return inode.bytes.subarray(0, inode.length);
}

function durableBytes(inode: Inode): Uint8Array {
  return inode.durableCopy ?? inode.bytes.subarray(0, inode.durableLength);
}

function setLength(inode: Inode, length: number): void {
  if (length > inode.bytes.length) {
    const grown = new Uint8Array(Math.max(length, inode.bytes.length * 2, 64));
    grown.set(liveBytes(inode));
    inode.bytes = grown;
  }
  if (length > inode.length) inode.bytes.fill(0, inode.length, length);
  inode.length = length;
}

function newInode(content: Uint8Array = new Uint8Array(0)): Inode {
  const inode: Inode = { bytes: new Uint8Array(0), length: 0, durableLength: 0, durableCopy: null, truncations: 0 };
  setLength(inode, content.length);
  inode.bytes.set(content);
  inode.durableLength = content.length;
  return inode;
}

function commonPrefix(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export class SimFileSystem implements FileSystem {
  private readonly live = new Map<string, Map<string, Inode>>();
  private readonly durable = new Map<string, Map<string, Inode>>();
  /** Per directory: generation of the newest syncDir applied, so a late one cannot roll back. */
  private readonly dirSyncApplied = new Map<string, number>();
  private dirSyncIssued = 0;
  private epoch = 0;
  private datasyncCount = 0;
  private dirSyncCount = 0;
  private readonly schedule: SimFileSystemOptions['schedule'];
  private readonly syncDelayMs: () => number;
  private readonly tornWriteProbability: number;

  constructor(options: SimFileSystemOptions = {}) {
    this.schedule = options.schedule;
    this.syncDelayMs = options.syncDelayMs ?? (() => 0);
    this.tornWriteProbability = options.tornWriteProbability ?? 0.5;
    this.live.set('/', new Map());
    this.durable.set('/', new Map());
  }

  /**
   * A full or failing disk: while set, every append, writeFile and datasync throws this error
   * (as Node's file system would: `code` ENOSPC or EIO) and changes nothing.
   */
  writeFault: 'ENOSPC' | 'EIO' | null = null;
  /** A disk whose writes land in the page cache but whose fsyncs fail with EIO (and sync nothing). */
  syncFault = false;

  private checkWriteFault(path: string): void {
    if (this.writeFault) throw new SimFsError(this.writeFault, path);
  }

  private checkSyncFault(path: string): void {
    this.checkWriteFault(path);
    if (this.syncFault) throw new SimFsError('EIO', path);
  }

  /** Sync calls so far: datasync() and writeFile() count as datasyncs. */
  stats(): { datasyncs: number; dirSyncs: number; crashes: number } {
    return { datasyncs: this.datasyncCount, dirSyncs: this.dirSyncCount, crashes: this.epoch };
  }

  /**
   * Power loss: everything not synced is lost, except that with tornWriteProbability a
   * random prefix of a file's unsynced bytes survives. Every handle, pending operation and
   * session() from before the crash rejects with SimCrashedError and never touches the new
   * state. (Calls made directly on this object always act in the current epoch.)
   */
  crash(rng: () => number): void {
    this.epoch++;
    const seen = new Set<Inode>();
    for (const [dir, entries] of this.durable) {
      this.live.set(dir, new Map(entries));
      for (const inode of entries.values()) {
        if (seen.has(inode)) continue;
        seen.add(inode);
        this.crashInode(inode, rng);
      }
    }
  }

  private crashInode(inode: Inode, rng: () => number): void {
    const durable = durableBytes(inode);
    const live = liveBytes(inode);
    let kept = durable;
    if (rng() < this.tornWriteProbability) {
      // Writes reach the disk in order: keep the shared prefix plus part of what followed.
      const shared = commonPrefix(durable, live);
      kept = live.subarray(0, shared + Math.floor(rng() * (live.length - shared + 1)));
    }
    const fresh = newInode(kept);
    Object.assign(inode, fresh);
  }

  /**
   * A FileSystem for one incarnation of a node: once crash() is called, every operation
   * through it rejects. Give each restarted node a fresh session, so continuations of the
   * dead incarnation (an await that resolved just before the crash) cannot touch the disk.
   */
  session(): FileSystem {
    const epoch = this.epoch;
    return {
      mkdirp: (dir) => this.run(epoch, () => this.doMkdirp(dir)),
      list: (dir) => this.run(epoch, () => [...this.dirEntries(dir).keys()]),
      readFile: (path) => this.run(epoch, () => liveBytes(this.lookup(path)).slice()),
      openAppend: (path) => this.run(epoch, () => this.handle(this.getOrCreate(path), epoch)),
      writeFile: (path, bytes) => this.run(epoch, () => this.doWriteFile(path, bytes, epoch)),
      rename: (from, to) => this.run(epoch, () => this.doRename(from, to)),
      remove: (path) => this.run(epoch, () => this.doRemove(path)),
      syncDir: (dir) => this.run(epoch, () => this.doSyncDir(dir, epoch)),
    };
  }

  // The FileSystem methods on the disk itself act in whatever epoch is current.
  mkdirp(dir: string): Promise<void> {
    return this.session().mkdirp(dir);
  }
  list(dir: string): Promise<string[]> {
    return this.session().list(dir);
  }
  readFile(path: string): Promise<Uint8Array> {
    return this.session().readFile(path);
  }
  openAppend(path: string): Promise<AppendHandle> {
    return this.session().openAppend(path);
  }
  writeFile(path: string, bytes: Uint8Array): Promise<void> {
    return this.session().writeFile(path, bytes);
  }
  rename(from: string, to: string): Promise<void> {
    return this.session().rename(from, to);
  }
  remove(path: string): Promise<void> {
    return this.session().remove(path);
  }
  syncDir(dir: string): Promise<void> {
    return this.session().syncDir(dir);
  }

  /** Runs a mutation only if `epoch` is still current; the result is delivered as a promise. */
  private async run<T>(epoch: number, op: () => T | Promise<T>): Promise<T> {
    this.checkEpoch(epoch);
    return op();
  }

  private doMkdirp(dir: string): void {
    // Simplification: directory creation is durable at once (NodeFileSystem fsyncs the parents).
    for (let d = posix.normalize(dir); ; d = posix.dirname(d)) {
      if (!this.live.has(d)) this.live.set(d, new Map());
      if (!this.durable.has(d)) this.durable.set(d, new Map());
      if (posix.dirname(d) === d) break;
    }
  }

  private getOrCreate(path: string): Inode {
    const { dir, name } = this.split(path);
    const entries = this.dirEntries(dir);
    let inode = entries.get(name);
    if (!inode) {
      inode = newInode();
      entries.set(name, inode);
    }
    return inode;
  }

  private doWriteFile(path: string, bytes: Uint8Array, epoch: number): Promise<void> {
    this.checkSyncFault(path);
    const inode = this.getOrCreate(path);
    this.truncateInode(inode, 0);
    setLength(inode, bytes.length);
    inode.bytes.set(bytes);
    return this.datasyncInode(inode, epoch);
  }

  private doRename(from: string, to: string): void {
    const src = this.split(from);
    const dst = this.split(to);
    const srcEntries = this.dirEntries(src.dir);
    const inode = srcEntries.get(src.name);
    if (!inode) throw new SimFsError('ENOENT', from);
    const dstEntries = this.dirEntries(dst.dir);
    srcEntries.delete(src.name);
    dstEntries.set(dst.name, inode);
  }

  private doRemove(path: string): void {
    const { dir, name } = this.split(path);
    if (!this.dirEntries(dir).delete(name)) throw new SimFsError('ENOENT', path);
  }

  private doSyncDir(dir: string, epoch: number): Promise<void> {
    const key = posix.normalize(dir);
    const snapshot = new Map(this.dirEntries(key));
    const generation = ++this.dirSyncIssued;
    this.dirSyncCount++;
    return this.afterSyncDelay(epoch, () => {
      if ((this.dirSyncApplied.get(key) ?? 0) > generation) return;
      this.dirSyncApplied.set(key, generation);
      this.durable.set(key, snapshot);
    });
  }

  private handle(inode: Inode, epoch: number): AppendHandle {
    let closed = false;
    const usable = () => {
      this.checkEpoch(epoch);
      if (closed) throw new SimFsError('EBADF', 'closed handle');
    };
    return {
      append: async (bytes) => {
        usable();
        this.checkWriteFault('append');
        const at = inode.length;
        setLength(inode, at + bytes.length);
        inode.bytes.set(bytes, at);
      },
      datasync: async () => {
        usable();
        this.checkSyncFault('datasync');
        await this.datasyncInode(inode, epoch);
      },
      truncate: async (length) => {
        usable();
        this.truncateInode(inode, length);
      },
      close: async () => {
        usable();
        closed = true;
      },
    };
  }

  private truncateInode(inode: Inode, length: number): void {
    // Later appends will overwrite bytes the disk still holds durably: keep a copy of them.
    if (length < inode.durableLength && inode.durableCopy === null) {
      inode.durableCopy = inode.bytes.slice(0, inode.durableLength);
    }
    setLength(inode, length);
    inode.truncations++;
  }

  /** Makes the bytes present at call time durable (fdatasync semantics), once the delay passes. */
  private datasyncInode(inode: Inode, epoch: number): Promise<void> {
    this.datasyncCount++;
    const capturedLength = inode.length;
    const capturedTruncations = inode.truncations;
    return this.afterSyncDelay(epoch, () => {
      if (inode.truncations !== capturedTruncations) {
        // The captured prefix was rewritten meanwhile; syncing the current state is still allowed.
        inode.durableCopy = null;
        inode.durableLength = inode.length;
      } else if (inode.durableCopy !== null) {
        inode.durableCopy = null;
        inode.durableLength = capturedLength;
      } else {
        inode.durableLength = Math.max(inode.durableLength, capturedLength);
      }
    });
  }

  private afterSyncDelay(epoch: number, apply: () => void): Promise<void> {
    const schedule = this.schedule;
    if (!schedule) {
      apply();
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      schedule(this.syncDelayMs(), () => {
        if (epoch !== this.epoch) return reject(new SimCrashedError());
        apply();
        resolve();
      });
    });
  }

  private checkEpoch(epoch: number): void {
    if (epoch !== this.epoch) throw new SimCrashedError();
  }

  private split(path: string): { dir: string; name: string } {
    const normal = posix.normalize(path);
    return { dir: posix.dirname(normal), name: posix.basename(normal) };
  }

  private dirEntries(dir: string): Map<string, Inode> {
    const entries = this.live.get(posix.normalize(dir));
    if (!entries) throw new SimFsError('ENOENT', dir);
    return entries;
  }

  private lookup(path: string): Inode {
    const { dir, name } = this.split(path);
    const inode = this.dirEntries(dir).get(name);
    if (!inode) throw new SimFsError('ENOENT', path);
    return inode;
  }
}
