/**
 * The CLI as a user runs it: a member started from a Submarine site XML, kv/status/members
 * commands with --json and exit codes, a member added with --join and `members add`.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemberProcess } from '../src/local-cluster.ts';
import { clusterWithLeader, eventually, tempDir } from './helpers/local-cluster.ts';

const ROOT = join(import.meta.dirname, '..');

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import=tsx', join(ROOT, 'src/cli.ts'), ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

test.serial('kv, status and members commands; a fourth member from a site XML joins with --join', async (t) => {
  const { c, client } = await clusterWithLeader(t, 'cli');
  const common = ['--nats', c.nats.urls.join(','), '--cluster', c.cluster, '--nats-credentials', c.credentialsFile];

  const put = await cli(['kv', 'put', 'greeting', 'hello', ...common, '--json']);
  t.is(put.code, 0, put.stderr);
  t.true(JSON.parse(put.stdout).revision > 0);
  const get = await cli(['kv', 'get', 'greeting', ...common]);
  t.is(get.code, 0, get.stderr);
  t.is(get.stdout.trim(), 'hello');
  const missing = await cli(['kv', 'get', 'nope', ...common]);
  t.is(missing.code, 1);
  const ls = await cli(['kv', 'ls', 'gre', ...common, '--json', '--stale']);
  t.deepEqual(JSON.parse(ls.stdout).kvs.map((kv: { key: string }) => kv.key), ['greeting']);
  await cli(['kv', 'put', 'greet2', 'hi', ...common]);
  const page = await cli(['kv', 'ls', 'gre', '--limit', '1', ...common]);
  t.is(page.code, 0, page.stderr);
  t.deepEqual(page.stdout.trim().split('\n'), ['greet2\thi', '# more keys: --after "greet2"']);
  const next = await cli(['kv', 'ls', 'gre', '--limit', '1', '--after', 'greet2', ...common]);
  t.is(next.stdout.trim(), 'greeting\thello');
  const badLimit = await cli(['kv', 'ls', 'gre', '--limit', 'ten', ...common]);
  t.is(badLimit.code, 2);
  t.regex(badLimit.stderr, /--limit must be a positive integer/);
  const status = await cli(['status', ...common, '--json']);
  const members = JSON.parse(status.stdout) as { id: string; role: string }[];
  t.deepEqual(members.map((m) => m.id).sort(), ['n1', 'n2', 'n3']);
  t.is(members.filter((m) => m.role === 'leader').length, 1);
  const usage = await cli(['kv', 'frobnicate', ...common]);
  t.is(usage.code, 2);
  t.regex(usage.stderr, /unknown subcommand/);
  const noAuth = await cli(['kv', 'get', 'greeting', '--nats', c.nats.urls[0]!, '--cluster', c.cluster]);
  t.not(noAuth.code, 0);
  t.regex(noAuth.stderr, /authorization/i);

  // A fourth server configured the Submarine way (member id host:port) joins the running cluster.
  const n4id = '127.0.0.1:9004';
  const dir = await tempDir('cli-n4');
  const siteXml = join(dir, 'submarine-site.xml');
  await writeFile(siteXml, `<?xml version="1.0"?>
<configuration>
  <property><name>submarine.server.addr</name><value>127.0.0.1:9004</value></property>
  <property><name>submarine.cluster.addr</name><value>127.0.0.1:9004</value></property>
  <property><name>submarine.cluster.name</name><value>${c.cluster}</value></property>
  <property><name>cluster.heartbeat.interval</name><value>1000</value></property>
  <property><name>cluster.heartbeat.timeout</name><value>3000</value></property>
</configuration>`);
  const n4 = new MemberProcess(n4id, ['--join', '--site-xml', siteXml, '--nats', c.nats.urls.join(','), '--nats-credentials', c.credentialsFile, '--data-dir', join(dir, 'data')], join(dir, 'n4.log'));
  n4.start();
  t.teardown(() => n4.stop());
  const add = await cli(['members', 'add', n4id, ...common, '--json']);
  t.is(add.code, 0, add.stderr + add.stdout);
  const after = await eventually('n4 is a voter with the data', async () => {
    const all = await client.status();
    const s4 = all.find((s) => s.id === n4id);
    const leader = all.find((s) => s.role === 'leader');
    return s4 && leader && s4.conf.voters.includes(n4id) && s4.revision >= 1 ? leader : null;
  });
  t.true(after.conf.voters.includes(n4id));
  t.is((await client.get('greeting', { consistency: 'stale' })).kv?.value, 'hello');
  const remove = await cli(['members', 'remove', n4id, ...common]);
  t.is(remove.code, 0, remove.stderr);
  await eventually('n4 removed', async () => (await client.status()).some((s) => s.role === 'leader' && !s.conf.voters.includes(n4id)));
});
