/** The README's examples run against a real local cluster, so they stay true. */
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { connectClient, freshCluster, waitForLeader } from './helpers/local-cluster.ts';

const ROOT = join(import.meta.dirname, '..');

function run(file: string, dir: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import=tsx', join(ROOT, 'examples', file)], { cwd: ROOT, env: { ...process.env, SUBMARINE_LOCAL_DIR: dir } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

test.serial('examples/metadata.ts, services.ts and notes.ts run against a local cluster', async (t) => {
  const dir = join(await (await import('./helpers/local-cluster.ts')).tempDir('examples'), 'cluster');
  const c = await freshCluster('examples-unused', { dir });
  t.teardown(() => c.stop());
  const client = await connectClient(c);
  t.teardown(() => client.close());
  await waitForLeader(client, 3);
  const meta = await run('metadata.ts', dir);
  t.is(meta.code, 0, meta.out);
  t.regex(meta.out, /watch saw: \[.*put example\/watched.*delete example\/watched/s);
  const services = await run('services.ts', dir);
  t.is(services.code, 0, services.out);
  t.regex(services.out, /python-shared is ONLINE at 127\.0\.0\.1:45678/);
  t.regex(services.out, /durable from server-a/);
  t.regex(services.out, /unicast to a member that is not there/);
  const notes = await run('notes.ts', dir);
  t.is(notes.code, 0, notes.out);
  t.regex(notes.out, /has 1 paragraph/);
  t.log(meta.out + services.out + notes.out);
});
