/**
 * The few file operations the WAL and snapshot code need. Small on purpose: the simulator
 * implements the same interface in memory (sim-fs.ts), so every method here is one whose
 * crash semantics it must model.
 */
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/** A file opened for appending. Bytes are durable only after datasync() resolves. */
export interface AppendHandle {
  append(bytes: Uint8Array): Promise<void>;
  datasync(): Promise<void>;
  /** Cut (or zero-extend) the file to `length` bytes; durable after datasync(). */
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

export interface FileSystem {
  /** Create a directory and its missing parents, durably. */
  mkdirp(dir: string): Promise<void>;
  /** Names (not paths) of the entries in a directory. */
  list(dir: string): Promise<string[]>;
  readFile(path: string): Promise<Uint8Array>;
  /** Open for appending, creating the file if missing. A new name is durable only after syncDir. */
  openAppend(path: string): Promise<AppendHandle>;
  /** Create or replace the file's content and datasync it. The name needs syncDir to be durable. */
  writeFile(path: string, bytes: Uint8Array): Promise<void>;
  /** Atomic replace of `to`; durable after syncDir of the directory. */
  rename(from: string, to: string): Promise<void>;
  remove(path: string): Promise<void>;
  /** fsync a directory so creates, renames and removes in it survive a crash. */
  syncDir(dir: string): Promise<void>;
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  // write() may write less than asked (rare on files, but allowed by POSIX).
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

class NodeAppendHandle implements AppendHandle {
  constructor(private readonly handle: FileHandle) {}
  append(bytes: Uint8Array): Promise<void> {
    return writeAll(this.handle, bytes);
  }
  datasync(): Promise<void> {
    return this.handle.datasync();
  }
  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }
  close(): Promise<void> {
    return this.handle.close();
  }
}

export class NodeFileSystem implements FileSystem {
  async mkdirp(dir: string): Promise<void> {
    const firstCreated = await mkdir(dir, { recursive: true });
    if (firstCreated === undefined) return;
    // A new directory's name lives in its parent: sync every parent from `dir` up to the
    // parent of the first directory created, or a crash can lose the whole tree.
    for (let d = dir; ; d = dirname(d)) {
      await this.syncDir(dirname(d));
      if (d === firstCreated || dirname(d) === d) break;
    }
  }

  list(dir: string): Promise<string[]> {
    return readdir(dir);
  }

  async readFile(path: string): Promise<Uint8Array> {
    const buf = await readFile(path);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  async openAppend(path: string): Promise<AppendHandle> {
    return new NodeAppendHandle(await open(path, 'a'));
  }

  async writeFile(path: string, bytes: Uint8Array): Promise<void> {
    const handle = await open(path, 'w');
    try {
      await writeAll(handle, bytes);
      await handle.datasync();
    } finally {
      await handle.close();
    }
  }

  rename(from: string, to: string): Promise<void> {
    return rename(from, to);
  }

  remove(path: string): Promise<void> {
    return unlink(path);
  }

  async syncDir(dir: string): Promise<void> {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}
