/** Integration: watches (ordered, gap-free, surviving the death of their member) and leases. */
import test from 'ava';
import type { WatchEvent } from '../src/sm/metadata.ts';
import { clusterWithLeader, eventually } from './helpers/local-cluster.ts';

test.serial('a watch delivers every change in order and resumes on another member after kill -9; leases expire through the log', async (t) => {
  const { c, client } = await clusterWithLeader(t, 'watch');
  await client.put('other/x', 'not watched');

  const events: WatchEvent[] = [];
  const watcher = await client.watch('w/', { onEvent: (ev) => events.push(ev) });
  t.teardown(() => watcher.close());
  for (let i = 0; i < 20; i++) await client.put(`w/${i}`, i);
  await client.delete('w/3');
  await eventually('21 events', async () => events.length >= 21);
  t.deepEqual(events.slice(0, 20).map((e) => e.kv.key), Array.from({ length: 20 }, (_, i) => `w/${i}`));
  t.is(events[20]!.type, 'delete');
  t.true(events.every((e, i) => i === 0 || e.revision > events[i - 1]!.revision), 'revisions strictly increase');

  // Kill the member serving the watch (unless it is the only way to a majority: any one of three is fine).
  const serving = watcher.member!;
  await c.members.find((m) => m.id === serving)!.kill9();
  for (let i = 20; i < 40; i++) await client.put(`w/${i}`, i);
  await eventually('the watch resumed elsewhere with all events', async () => events.length >= 41, 30_000);
  t.not(watcher.member, serving);
  const keys = events.map((e) => `${e.type}:${e.kv.key}`);
  t.is(new Set(keys).size, keys.length, 'no duplicate deliveries');
  t.deepEqual(events.slice(21).map((e) => e.kv.key), Array.from({ length: 20 }, (_, i) => `w/${i + 20}`));

  // A leased key lives while kept alive and disappears (through the log) once the holder goes silent.
  const lease = await client.leaseGrant(1500);
  await client.put('w/ephemeral', 'here', { lease });
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 500)); // keep-alive cadence of a live holder, not a wait for a condition
    await client.leaseKeepAlive(lease);
  }
  t.is((await client.get('w/ephemeral')).kv?.value, 'here', 'kept alive past its TTL');
  const silentFrom = performance.now();
  await eventually('lease expiry removes the key', async () => (await client.get('w/ephemeral')).kv === null, 10_000);
  const gone = performance.now() - silentFrom;
  t.true(gone >= 1000, `expired too early (${gone} ms)`);
  await eventually('the watcher saw the delete', async () => events.some((e) => e.type === 'delete' && e.kv.key === 'w/ephemeral'));
  const lost = await t.throwsAsync(client.leaseKeepAlive(lease));
  t.regex(lost!.message, /lease/);

  // A backlog far over the broker's 1 MB message limit arrives whole, split into several pushes.
  const before = (await client.list('big/')).revision;
  for (let i = 0; i < 16; i++) await client.put(`big/${i}`, 'b'.repeat(100 * 1024));
  const big: WatchEvent[] = [];
  const late = await client.watch('big/', { fromRevision: before, onEvent: (ev) => big.push(ev) });
  t.teardown(() => late.close());
  await eventually('the 1.6 MB backlog', async () => big.length >= 16);
  t.deepEqual(big.map((e) => e.kv.key), Array.from({ length: 16 }, (_, i) => `big/${i}`));
});
