/**
 * The dashboard against a real local cluster (3 NATS servers, 3 member processes in a temp dir):
 * REST API shapes, /metrics, SSE, logs, controls, and a browser test (playwright-core driving
 * the system's Chromium): the page shows three members and one leader; "kill leader" makes a new
 * leader appear and the chart highlights it. Screenshots: test-artifacts/dashboard.png, copied to
 * docs/dashboard.png for the README.
 */
import test from 'ava';
import { accessSync, constants as fsConstants, copyFileSync, mkdirSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { ClusterClient } from '../src/client.ts';
import { Dashboard, type DashboardSnapshot } from '../src/dashboard/server.ts';
import { startLocalCluster, type LocalCluster } from '../src/local-cluster.ts';
import { ClusterMeta } from '../src/meta.ts';
import { eventually, tempDir, waitForLeader } from './helpers/local-cluster.ts';

const ROOT = resolve(fileURLToPath(import.meta.url), '../..');

function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];
  for (const c of candidates) {
    if (!c) continue;
    try {
      accessSync(c, fsConstants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return null;
}
const chromiumPath = findChromium();
if (!chromiumPath) {
  console.warn('dashboard.test.ts: SKIPPING the browser test: no Chromium at $CHROMIUM_PATH, /usr/bin/chromium, /usr/bin/chromium-browser or /usr/bin/google-chrome. Run scripts/ensure-chromium.sh (installs Debian\'s chromium as root).');
}

let local: LocalCluster;
let client: ClusterClient;
let dashboard: Dashboard;
let base: string;

test.before(async () => {
  const dir = await tempDir('dashboard');
  local = await startLocalCluster({ dir, logLevel: 'info', memberArgs: ['--allow-fault-injection'] });
  client = await ClusterClient.connect({ ...local.clientOptions(), requestTimeoutMs: 1000, outboxDir: join(dir, 'outbox') });
  await waitForLeader(client, 3);
  dashboard = await Dashboard.start({
    client, local, cluster: local.cluster, natsUrls: local.nats.urls, logDir: join(dir, 'logs'), memberIds: local.members.map((m) => m.id), port: 0,
  });
  base = dashboard.url;
});

test.after.always(async () => {
  await dashboard?.stop();
  await client?.close();
  await local?.stop();
});

const getJson = async (path: string): Promise<{ status: number; body: any }> => {
  const res = await fetch(new URL(path, base));
  return { status: res.status, body: await res.json() };
};
const post = (path: string, headers: Record<string, string> = { 'X-Submarine-Dashboard': '1' }) =>
  fetch(new URL(path, base), { method: 'POST', headers }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
const snapshot = async () => (await getJson('/api/dashboard/state')).body as DashboardSnapshot;
/** The dashboard sees every member answering, and one leader agreed by all. */
const allUp = () => eventually('the dashboard to see three members and one leader', async () => {
  const s = await snapshot();
  const up = s.members.filter((m) => m.reachable);
  return up.length === 3 && s.leader && up.every((m) => m.status!.leader === s.leader) ? s : null;
});

async function writeMeta(): Promise<void> {
  const meta = new ClusterMeta(client);
  const now = Date.now();
  await meta.put('server', 'host-a:8080', {
    NODE_NAME: 'host-a:8080', SERVER_HOST: 'host-a', SERVER_PORT: 8080, SERVER_START_TIME: now - 60_000,
    CPU_USED: 50, CPU_CAPACITY: 400, MEMORY_USED: 2 * 1024 ** 3, MEMORY_CAPACITY: 8 * 1024 ** 3, LATEST_HEARTBEAT: now, STATUS: 'ONLINE',
  });
  await meta.put('intp', 'python-shared', {
    NODE_NAME: 'host-a:8080', INTP_PROCESS_NAME: 'python', INTP_TSERVER_HOST: 'host-a', INTP_TSERVER_PORT: 9001, INTP_START_TIME: now - 30_000, LATEST_HEARTBEAT: now, STATUS: 'ONLINE',
  });
  await meta.put('intp', 'spark-u1', { NODE_NAME: 'host-b:8080', INTP_PROCESS_NAME: 'spark', LATEST_HEARTBEAT: now, STATUS: 'ONLINE' });
}

test.serial('REST API: Submarine paths and shapes, Zeppelin aliases', async (t) => {
  await writeMeta();

  const addr = await getJson('/api/v1/cluster/address');
  t.is(addr.status, 200);
  t.like(addr.body, { status: 'OK', code: 200, success: true });
  t.deepEqual(addr.body.result, local.nats.urls);
  const zAddr = await getJson('/api/cluster/address');
  t.deepEqual(zAddr.body, { status: 'OK', message: 'Cluster Address', body: { clusterAddr: local.nats.urls.join(',') } });

  const nodes = await getJson('/api/v1/cluster/nodes');
  t.is(nodes.status, 200);
  t.true(nodes.body.success);
  const a = (nodes.body.result as any[]).find((n) => n.NODE_NAME === 'host-a:8080');
  t.truthy(a, JSON.stringify(nodes.body));
  t.is(a.properties['CPU_USED / CPU_CAPACITY'], '0.50 / 4.00 = 12.50%');
  t.is(a.properties['MEMORY_USED / MEMORY_CAPACITY'], '2.00GB / 8.00GB = 25.00%');
  t.is(a.properties.INTP_PROCESS_COUNT, 1);
  t.deepEqual(a.properties.INTP_PROCESS_LIST, ['python']);
  t.regex(a.properties.LATEST_HEARTBEAT, /^\d{4}-\d\d-\d\dT/);
  t.regex(a.properties.SERVER_START_TIME, /^\d{4}-\d\d-\d\dT/);
  t.is(typeof a.properties.STATUS, 'string');
  const zNodes = await getJson('/api/cluster/nodes');
  t.is(zNodes.body.status, 'OK');
  t.deepEqual(zNodes.body.body, nodes.body.result);

  const node = await getJson('/api/v1/cluster/node/host-a%3A8080/python');
  t.is(node.body.result.length, 1);
  t.like(node.body.result[0], { NODE_NAME: 'host-a:8080', properties: { INTP_PROCESS_NAME: 'python', INTP_TSERVER_PORT: 9001 } });
  t.regex(node.body.result[0].properties.INTP_START_TIME, /^\d{4}-\d\d-\d\dT/);
  const zNode = await getJson('/api/cluster/node/host-b%3A8080/anything');
  t.is(zNode.body.body.length, 1);
  t.is(zNode.body.body[0].properties.INTP_PROCESS_NAME, 'spark');
  t.is((await getJson('/api/v1/cluster/nope')).status, 404);

  // The page's own view of the metadata center, fed by the watch.
  const s = await eventually('the watch to deliver the metadata', async () => {
    const snap = await snapshot();
    return snap.meta.servers.some((r) => r.key === 'host-a:8080') && snap.meta.intps.length >= 2 ? snap : null;
  });
  const row = s.meta.servers.find((r) => r.key === 'host-a:8080')!;
  t.is(typeof row.heartbeatAgeMs, 'number');
  t.true(s.feed.some((f) => f.key === 'meta/intp/spark-u1' && f.type === 'put'));
});

test.serial('/metrics: a term line per member, one leader, counters with a member label', async (t) => {
  await allUp();
  const res = await fetch(new URL('/metrics', base));
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await res.text();
  for (const m of local.members) t.regex(text, new RegExp(`^submarine_raft_term\\{member="${m.id}"\\} [1-9]\\d*$`, 'm'), `term of ${m.id}`);
  const leaders = [...text.matchAll(/^submarine_raft_is_leader\{member="(n\d)"\} 1$/gm)];
  t.is(leaders.length, 1);
  t.regex(text, /^submarine_raft_apply_lag\{member="n1"\} \d+$/m);
  t.regex(text, /^submarine_raft_commit_index\{member="n2"\} \d+$/m);
  t.regex(text, /^submarine_api_requests_total\{member="n1",op="status"\} \d+$/m, 'counters keep their labels, with member first');
  t.regex(text, /^# TYPE submarine_api_requests_total counter$/m);
  t.regex(text, /^submarine_raft_follower_lag\{member="n\d",follower="n\d"\} \d+$/m);
  // Every sample line is `name{labels} number`.
  for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) t.regex(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\} -?\d+(\.\d+)?(e[+-]?\d+)?$/, line);
});

test.serial('SSE: /events streams snapshots of every member', async (t) => {
  const abort = new AbortController();
  t.teardown(() => abort.abort());
  const res = await fetch(new URL('/events', base), { signal: abort.signal });
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const snaps: DashboardSnapshot[] = [];
  const started = performance.now();
  while (snaps.length < 3) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event === 'snapshot' && data) snaps.push(JSON.parse(data) as DashboardSnapshot);
    }
  }
  t.is(snaps.length, 3);
  t.log(`3 snapshots in ${Math.round(performance.now() - started)} ms`);
  t.true(snaps[2]!.at > snaps[0]!.at, 'later snapshots are newer');
  const last = snaps[2]!;
  t.deepEqual(last.members.map((m) => m.id), ['n1', 'n2', 'n3']);
  for (const m of last.members) {
    t.true(m.reachable, `${m.id} reachable`);
    t.like(m.status, { id: m.id });
    t.is(typeof m.status!.commitIndex, 'number');
    t.true(m.process!.running);
  }
  t.truthy(last.leader);
  const leader = last.members.find((m) => m.id === last.leader)!;
  // The leader reports replication progress of each follower.
  t.deepEqual(Object.keys(leader.status!.progress ?? {}).sort(), ['n1', 'n2', 'n3'].filter((id) => id !== leader.id));
  t.like(last.machines.outbox, { value: 'idle' });
});

test.serial('logs, chart export and guarded controls', async (t) => {
  const logs = await fetch(new URL('/api/member/n1/logs?lines=5', base));
  t.is(logs.status, 200);
  const lines = (await logs.text()).trimEnd().split('\n');
  t.true(lines.length >= 1 && lines.length <= 5, `${lines.length} lines`);
  t.true(lines.every((l) => l.includes('"member":"n1"')), lines.join('\n'));
  t.is((await fetch(new URL('/api/member/..%2F..%2Fcredentials/logs', base))).status, 404);

  const svg = await fetch(new URL('/api/chart/raft?format=svg&state=candidate', base));
  t.is(svg.headers.get('content-type'), 'image/svg+xml');
  t.true((await svg.text()).includes('st|raft.candidate'));
  const mermaid = await (await fetch(new URL('/api/chart/outbox?format=mermaid', base))).text();
  t.true(mermaid.includes('sending --> backoff'));
  t.is((await fetch(new URL('/api/chart/nope', base))).status, 404);

  // Controls need the custom header (no cross-site form posts) and a launcher.
  t.is((await post('/api/control/kill-leader', {})).status, 403);
  const readOnly = await Dashboard.start({ client, cluster: local.cluster, natsUrls: local.nats.urls, port: 0 });
  t.teardown(() => readOnly.stop());
  const r = await fetch(new URL('/api/control/kill-leader', readOnly.url), { method: 'POST', headers: { 'X-Submarine-Dashboard': '1' } });
  t.is(r.status, 403);
  t.regex(((await r.json()) as { error: string }).error, /read-only/);
  // A foreign Host name (DNS rebinding) is refused; fetch cannot set Host, node:http can.
  const status = await new Promise<number>((resolveStatus, reject) => {
    const req = request(new URL('/api/control/heal', base), { method: 'POST', headers: { 'X-Submarine-Dashboard': '1', host: 'evil.example' } }, (res) => {
      res.resume();
      resolveStatus(res.statusCode!);
    });
    req.on('error', reject);
    req.end();
  });
  t.is(status, 421);
  for (const m of local.members) t.true(m.running, `${m.id} still running`);
});

test.serial('partition a member away and heal', async (t) => {
  const s = await allUp();
  const victim = s.members.find((m) => m.id !== s.leader)!.id;
  const others = local.members.map((m) => m.id).filter((id) => id !== victim);
  const res = await post(`/api/control/member/${victim}/partition`);
  t.is(res.status, 200);
  t.deepEqual(res.body.partitioned, [victim]);
  await eventually('faults on both sides of the cut', async () => {
    const snap = await snapshot();
    const f = (id: string) => snap.members.find((m) => m.id === id)!.status?.faults;
    return f(victim)?.dropTo.sort().join() === others.join() && f(victim)?.dropFrom.sort().join() === others.join()
      && others.every((o) => f(o)?.dropTo.join() === victim && f(o)?.dropFrom.join() === victim);
  }, 10_000);
  t.true((await snapshot()).members.find((m) => m.id === victim)!.partitioned);
  t.is((await post('/api/control/heal')).status, 200);
  await eventually('no faults anywhere', async () => {
    const snap = await snapshot();
    return snap.members.every((m) => m.reachable && m.status!.faults.dropTo.length === 0 && m.status!.faults.dropFrom.length === 0);
  }, 10_000);
  t.pass();
});

(chromiumPath ? test.serial : test.serial.skip)('browser: three members, one leader; "kill leader" elects a new one and the chart follows', async (t) => {
  await allUp();
  const browser = await chromium.launch({ executablePath: chromiumPath!, headless: true });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(base);

  await page.waitForFunction(() => document.querySelectorAll('.member').length === 3
    && document.querySelectorAll('.member[data-role="leader"]').length === 1, undefined, { timeout: 15_000 });
  t.is(await page.locator('.member').count(), 3);
  const oldLeader = (await page.locator('.member[data-role="leader"]').getAttribute('data-member'))!;
  t.is(await page.locator('#leader').textContent(), oldLeader);
  // The leader's own chart highlights its leader state, and only that.
  const oldCard = page.locator(`.member[data-member="${oldLeader}"]`);
  t.is(await oldCard.locator('g.state.active').count(), 1);
  t.is(await oldCard.locator('g.state.active').getAttribute('id'), 'st|raft.leader');
  for (const id of ['n1', 'n2', 'n3'].filter((x) => x !== oldLeader)) {
    t.is(await page.locator(`.member[data-member="${id}"] g.state.active`).getAttribute('id'), 'st|raft.follower');
  }
  // Every machine of the registry is drawn.
  t.true(await page.locator('.machine[data-machine="raft"] svg').count() === 1);
  t.true(await page.locator('.machine[data-machine="outbox"] svg').count() === 1);

  // A write through the dashboard's outbox shows up in the change feed.
  await page.click('#write');
  await page.waitForFunction(() => [...document.querySelectorAll('#feed li')].some((li) => li.textContent!.includes('demo/clicks')), undefined, { timeout: 10_000 });

  const killedAt = performance.now();
  await page.click('#kill-leader');
  await page.waitForFunction((old) => {
    const leaders = [...document.querySelectorAll('.member[data-role="leader"]')];
    if (leaders.length !== 1 || leaders[0]!.getAttribute('data-member') === old) return false;
    return leaders[0]!.querySelector('g.state.active')?.getAttribute('id') === 'st|raft.leader';
  }, oldLeader, { timeout: 8_000 });
  const newLeader = (await page.locator('.member[data-role="leader"]').getAttribute('data-member'))!;
  t.log(`leader ${oldLeader} killed; ${newLeader} leads ${Math.round(performance.now() - killedAt)} ms later (as seen by the page)`);
  t.not(newLeader, oldLeader);
  t.true(await page.locator(`.member[data-member="${oldLeader}"]`).evaluate((e) => e.classList.contains('down')));
  t.is(await page.locator(`.member[data-member="${oldLeader}"] .role`).textContent(), 'stopped');
  t.false(local.members.find((m) => m.id === oldLeader)!.running);
  // The last role change (candidate -> leader) is drawn in orange on the new leader's chart.
  t.true(await page.locator(`.member[data-member="${newLeader}"] g.edge.last`).count() >= 1);
  await page.waitForFunction((id) => document.querySelector('#leader')!.textContent === id, newLeader, { timeout: 5_000 });

  await page.locator('#toast').evaluate((e) => e.classList.remove('show')); // the "done" toast would cover the picture
  mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
  const shot = join(ROOT, 'test-artifacts', 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  t.true(statSync(shot).size > 10_000);
  copyFileSync(shot, join(ROOT, 'docs', 'dashboard.png'));
  t.deepEqual(errors, [], 'no script errors on the page');
});
