/**
 * Issue 19 (first step): a member whose disk fills up must not stay up as a zombie (halted Raft
 * node, process alive, still answering status as leader). It exits non-zero with the reason
 * (fail-stop); the other two keep serving; nothing acknowledged is lost.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalCluster } from '../src/local-cluster.ts';
import { connectClient, eventually, tempDir, waitForLeader } from './helpers/local-cluster.ts';

function canMountTmpfs(): string | null {
  if (process.getuid?.() !== 0) return 'not root: cannot mount a small tmpfs for a member data dir';
  return null;
}

test.serial('a member whose disk fills exits non-zero (fail-stop) while the others keep serving every acknowledged write', async (t) => {
  const why = canMountTmpfs();
  if (why) {
    t.log(`skipped: ${why}`);
    t.pass();
    return;
  }
  const dir = await tempDir('diskfull');
  const small = join(dir, 'data', 'n3');
  mkdirSync(small, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'sc-diskfull', small]);
  t.teardown(() => {
    try {
      execFileSync('umount', ['-l', small]);
    } catch {
      // already gone
    }
  });
  const c = await startLocalCluster({ dir, logLevel: 'warn' });
  t.teardown(() => c.stop());
  const client = await connectClient(c, { quorumWaitMs: 10_000 });
  t.teardown(() => client.close());
  await waitForLeader(client, 3);
  const n3 = c.members.find((m) => m.id === 'n3')!;
  const exited = n3.whenExited();
  const value = 'x'.repeat(64 * 1024);
  const acknowledged: string[] = [];
  // 64 KiB values until n3's 2 MB disk is long full (well past it: the other two have room).
  for (let i = 0; i < 80; i++) {
    await client.put(`fill/${i}`, value);
    acknowledged.push(`fill/${i}`);
  }
  const code = await eventually('n3 exited', async () => (n3.running ? null : { code: await exited }), 20_000);
  t.is(code.code, 1, 'a non-zero exit, for its supervisor');
  const log = readFileSync(join(dir, 'logs', 'n3.log'), 'utf8');
  t.regex(log, /ENOSPC/);
  t.regex(log, /fail-stop/);
  // The other two still serve reads and writes; every acknowledged key is there.
  await client.put('after', 'still writable');
  const listed = await client.list('fill/');
  t.deepEqual(listed.kvs.map((kv) => kv.key).sort(), [...acknowledged].sort());
  const st = await client.status();
  t.false(st.some((s) => s.id === 'n3'), 'n3 answers no status: it is gone, not a zombie');
});
