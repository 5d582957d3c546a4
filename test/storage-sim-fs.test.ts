import test from 'ava';
import { SimCrashedError, SimFileSystem } from '../src/storage/sim-fs.ts';

const bytes = (...xs: number[]) => new Uint8Array(xs);
const never = () => 0.99; // rng value above any torn-write probability below 1
const DIR = '/d';

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

async function fresh(options = {}) {
  const fs = new SimFileSystem(options);
  await fs.mkdirp(DIR);
  return fs;
}

test('unsynced appends and unsynced new names are lost on crash', async (t) => {
  const fs = await fresh();
  const h = await fs.openAppend(`${DIR}/a`);
  await h.append(bytes(1, 2, 3));
  await h.datasync();
  // Data synced but the name never was: a crash loses the whole file.
  fs.crash(never);
  t.deepEqual(await fs.list(DIR), []);
});

test('synced data and synced names survive; the unsynced tail does not', async (t) => {
  const fs = await fresh();
  const h = await fs.openAppend(`${DIR}/a`);
  await fs.syncDir(DIR);
  await h.append(bytes(1, 2));
  await h.datasync();
  await h.append(bytes(3, 4));
  fs.crash(never);
  t.deepEqual(await fs.readFile(`${DIR}/a`), bytes(1, 2));
  t.is(fs.stats().datasyncs, 1);
});

test('torn write keeps a prefix of the unsynced tail', async (t) => {
  const fs = await fresh({ tornWriteProbability: 1 });
  const h = await fs.openAppend(`${DIR}/a`);
  await fs.syncDir(DIR);
  await h.append(bytes(1, 2));
  await h.datasync();
  await h.append(bytes(3, 4, 5, 6));
  fs.crash(() => 0.5); // keeps floor(0.5 * 5) = 2 of the 4 unsynced bytes
  t.deepEqual(await fs.readFile(`${DIR}/a`), bytes(1, 2, 3, 4));
});

test('rename and remove are durable only after syncDir', async (t) => {
  const fs = await fresh();
  await fs.writeFile(`${DIR}/x.tmp`, bytes(9));
  await fs.writeFile(`${DIR}/y`, bytes(7));
  await fs.syncDir(DIR);
  await fs.rename(`${DIR}/x.tmp`, `${DIR}/x`);
  await fs.remove(`${DIR}/y`);
  t.deepEqual((await fs.list(DIR)).sort(), ['x']);
  fs.crash(never);
  t.deepEqual((await fs.list(DIR)).sort(), ['x.tmp', 'y']);
  await fs.rename(`${DIR}/x.tmp`, `${DIR}/x`);
  await fs.syncDir(DIR);
  fs.crash(never);
  t.deepEqual((await fs.list(DIR)).sort(), ['x', 'y']);
  t.deepEqual(await fs.readFile(`${DIR}/x`), bytes(9));
});

test('truncate below the synced length is undone by a crash before datasync', async (t) => {
  const fs = await fresh();
  const h = await fs.openAppend(`${DIR}/a`);
  await fs.syncDir(DIR);
  await h.append(bytes(1, 2, 3, 4));
  await h.datasync();
  await h.truncate(1);
  await h.append(bytes(8, 8));
  t.deepEqual(await fs.readFile(`${DIR}/a`), bytes(1, 8, 8));
  fs.crash(never);
  t.deepEqual(await fs.readFile(`${DIR}/a`), bytes(1, 2, 3, 4));
});

test('handles and pending syncs from before a crash are inert', async (t) => {
  const pending: (() => void)[] = [];
  const fs = await fresh({ schedule: (_ms: number, fn: () => void) => pending.push(fn) });
  const h = await fs.openAppend(`${DIR}/a`);
  const dirSynced = fs.syncDir(DIR);
  pending.shift()!();
  await dirSynced;
  await h.append(bytes(1));
  const synced = h.datasync();
  fs.crash(never);
  pending.shift()!(); // the old sync completes after the crash: must not make anything durable
  await t.throwsAsync(synced, { instanceOf: SimCrashedError });
  await t.throwsAsync(h.append(bytes(2)), { instanceOf: SimCrashedError });
  t.deepEqual(await fs.readFile(`${DIR}/a`), bytes());
});

test('with a schedule, datasync completes only when the scheduler runs it', async (t) => {
  const pending: { ms: number; fn: () => void }[] = [];
  const fs = await fresh({ schedule: (ms: number, fn: () => void) => pending.push({ ms, fn }), syncDelayMs: () => 7 });
  const h = await fs.openAppend(`${DIR}/a`);
  await h.append(bytes(5));
  let done = false;
  const p = h.datasync().then(() => (done = true));
  for (let i = 0; i < 10; i++) await Promise.resolve();
  t.false(done);
  t.is(pending[0]!.ms, 7);
  pending[0]!.fn();
  await p;
  t.true(done);
});

test('crash is deterministic for a given rng', async (t) => {
  const run = async () => {
    const fs = await fresh({ tornWriteProbability: 0.5 });
    for (let f = 0; f < 5; f++) {
      const h = await fs.openAppend(`${DIR}/f${f}`);
      await h.append(new Uint8Array(50).fill(f));
      await h.datasync();
      await h.append(new Uint8Array(50).fill(f + 10));
    }
    await fs.syncDir(DIR);
    fs.crash(mulberry32(42));
    return Promise.all([0, 1, 2, 3, 4].map((f) => fs.readFile(`${DIR}/f${f}`).then((b) => b.length)));
  };
  const a = await run();
  t.deepEqual(a, await run());
  t.true(a.some((n) => n > 50), 'some torn tail survived');
  t.true(a.every((n) => n >= 50), 'synced data always survives');
});

test('a session from before a crash cannot touch the disk, even by path', async (t) => {
  const fs = await fresh();
  const old = fs.session();
  await old.writeFile(`${DIR}/keep`, bytes(1));
  await old.syncDir(DIR);
  fs.crash(never);
  // E.g. the dead node's compaction resuming after an await that resolved pre-crash.
  await t.throwsAsync(old.remove(`${DIR}/keep`), { instanceOf: SimCrashedError });
  await t.throwsAsync(old.writeFile(`${DIR}/other`, bytes(2)), { instanceOf: SimCrashedError });
  const now = fs.session();
  t.deepEqual(await now.list(DIR), ['keep']);
});
