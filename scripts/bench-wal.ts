/**
 * Group-commit benchmark on the real file system: bursts of N concurrent single-entry
 * persist() calls (256-byte entries). One JSON line per burst size.
 * Usage: npx tsx scripts/bench-wal.ts [dir]   (default: a temp dir under os.tmpdir(), removed after)
 * fdatasync is what is measured, so run it on the disk the cluster will use, not on tmpfs.
 */
import { mkdtemp, rm, statfs } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EntryType } from '../src/raft/types.ts';
import { NodeFileSystem } from '../src/storage/fs.ts';
import { DiskRaftStorage } from '../src/storage/raft-storage.ts';

const BURSTS = [1, 16, 64, 256, 1024];
const ENTRY_BYTES = 256;
const MIN_CALLS = 2048;
const MIN_MS = 1500;
const TMPFS_MAGIC = 0x01021994;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const root = process.argv[2] ?? (await mkdtemp(join(tmpdir(), 'bench-wal-')));
const { type } = await statfs(root);
if (type === TMPFS_MAGIC) console.error(`warning: ${root} is tmpfs, fdatasync costs nothing there`);

try {
  for (const inFlight of BURSTS) {
    const storage = new DiskRaftStorage({ fs: new NodeFileSystem(), dir: join(root, `burst-${inFlight}`) });
    await storage.load();
    await storage.persist({ hardState: { term: 1, vote: 'bench', commit: 0 } }); // term file out of the way
    const before = storage.stats();
    const data = new Uint8Array(ENTRY_BYTES).fill(7);
    const latenciesMs: number[] = [];
    let nextIndex = 1;
    const start = performance.now();
    while (latenciesMs.length < MIN_CALLS || performance.now() - start < MIN_MS) {
      const calls = Array.from({ length: inFlight }, () => {
        const entry = { index: nextIndex++, term: 1, type: EntryType.Command, data };
        const issued = performance.now();
        return storage.persist({ entries: [entry] }).then(() => latenciesMs.push(performance.now() - issued));
      });
      await Promise.all(calls);
    }
    const elapsedS = (performance.now() - start) / 1000;
    const after = storage.stats();
    await storage.close();
    latenciesMs.sort((a, b) => a - b);
    const datasyncs = after.fsyncs - before.fsyncs;
    const entries = after.entriesWritten - before.entriesWritten;
    console.log(
      JSON.stringify({
        inFlight,
        persistCalls: after.persistCalls - before.persistCalls,
        entries,
        datasyncs,
        entriesPerDatasync: +(entries / datasyncs).toFixed(1),
        opsPerSec: Math.round(entries / elapsedS),
        p50Ms: +percentile(latenciesMs, 50).toFixed(3),
        p99Ms: +percentile(latenciesMs, 99).toFixed(3),
      }),
    );
  }
} finally {
  if (process.argv[2] === undefined) await rm(root, { recursive: true, force: true });
}
