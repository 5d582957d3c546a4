import test from 'ava';
import type { ExecutionContext } from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, parseFlags, parseSiteXml, type LoadConfigOptions } from '../src/config.ts';

/** A submarine-site.xml as shipped, trimmed, with the cluster settings filled in. */
const SUBMARINE_SITE_XML = `<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="configuration.xsl"?>
<!--
   Licensed to the Apache Software Foundation (ASF) under one or more
   contributor license agreements.  See the NOTICE file distributed with
   this work for additional information regarding copyright ownership.
-->
<configuration>

  <property>
    <name>submarine.server.addr</name>
    <value>10.0.0.2:6000</value>
    <description>This server's cluster address</description>
  </property>

  <property>
    <name>submarine.server.port</name>
    <value>8080</value>
    <description>Server port</description>
  </property>

  <property>
    <name>jdbc.url</name>
    <value>jdbc:mysql://127.0.0.1:3306/submarine?useUnicode=true&amp;characterEncoding=UTF-8&amp;autoReconnect=true</value>
  </property>

  <property>
    <name>
      submarine.cluster.addr
    </name>
    <value>
      10.0.0.1:6000, 10.0.0.2:6000 ,10.0.0.3:6000,
    </value>
    <description><![CDATA[Raft members, <host>:<port>[,<host>:<port>...]; an empty value disables the cluster.]]></description>
  </property>

  <!--
  <property>
    <name>cluster.heartbeat.interval</name>
    <value>1</value>
  </property>
  -->

  <property>
    <name>cluster.heartbeat.interval</name>
    <value><![CDATA[2000]]></value>
  </property>

  <property>
    <name>cluster.heartbeat.timeout</name>
    <value> 8000 </value>
  </property>

  <property>
    <name>workbench.web.welcome</name>
    <value>Say &quot;hi&quot; &amp; &lt;welcome&gt; &apos;all&apos;</value>
  </property>

  <property>
    <name>submarine.server.rpc.enabled</name>
    <value>false</value>
    <final>true</final>
  </property>
</configuration>
`;

const ZEPPELIN_SITE_XML = `<?xml version="1.0"?>
<configuration>
<property><name>zeppelin.server.port</name><value>8080</value></property>
<property><name>zeppelin.cluster.addr</name><value>zep1:6000,zep2:6000,zep3:6000</value></property>
<property><name>zeppelin.cluster.heartbeat.interval</name><value>1000</value></property>
<property><name>zeppelin.cluster.heartbeat.timeout</name><value>3000</value></property>
<property><name>zeppelin.notebook.dir</name><value>notebook</value></property>
</configuration>`;

const xmlWith = (props: Record<string, string>): string =>
  `<configuration>\n${Object.entries(props)
    .map(([k, v]) => `  <property>\n    <name>${k}</name>\n    <value>${v}</value>\n  </property>`)
    .join('\n')}\n</configuration>\n`;

/** A fresh directory per test; files given relative to it. */
function sandbox(t: ExecutionContext, files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'submarine-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

/** loadConfig isolated from the test process: no real argv, env or cwd leak in. */
const load = (o: LoadConfigOptions) => loadConfig({ argv: [], env: {}, cwd: '/nonexistent-submarine-config-dir', ...o });

function configError(t: ExecutionContext, fn: () => unknown): ConfigError {
  const err = t.throws(fn, { instanceOf: ConfigError });
  if (!err) throw new Error('expected a ConfigError');
  // Every error says which setting and where it came from, in the message as well as in fields.
  t.true(err.message.includes(err.source), `message '${err.message}' names source '${err.source}'`);
  if (err.source !== 'default') t.true(err.message.includes(err.key), `message '${err.message}' names key '${err.key}'`);
  return err;
}

// ---------------------------------------------------------------------------------------------
// Site XML reader

test('parseSiteXml: realistic site file with comments, CDATA, entities and whitespace', (t) => {
  const props = parseSiteXml(SUBMARINE_SITE_XML, 'submarine-site.xml');
  t.is(props.get('submarine.cluster.addr'), '10.0.0.1:6000, 10.0.0.2:6000 ,10.0.0.3:6000,'); // name and value trimmed
  t.is(props.get('cluster.heartbeat.interval'), '2000'); // from CDATA; the commented-out property is not read
  t.is(props.get('cluster.heartbeat.timeout'), '8000');
  t.is(props.get('jdbc.url'), 'jdbc:mysql://127.0.0.1:3306/submarine?useUnicode=true&characterEncoding=UTF-8&autoReconnect=true');
  t.is(props.get('workbench.web.welcome'), `Say "hi" & <welcome> 'all'`);
  t.is(props.get('submarine.server.rpc.enabled'), 'false');
  t.is(props.size, 8);
});

test('parseSiteXml: character references, CDATA mixed with text, DOCTYPE, BOM, attributes, empty and missing values', (t) => {
  const xml =
    '\ufeff<?xml version="1.0"?>\n<!DOCTYPE configuration [ <!ELEMENT configuration ANY> ]>\n' +
    '<configuration xmlns:xi="http://www.w3.org/2001/XInclude" note="a > b">\n' +
    '  <property><name>a</name><value>&#65;&#x42;<![CDATA[&amp; stays]]>-<!-- gone -->z</value></property>\n' +
    '  <property><name>empty</name><value/></property>\n' +
    '  <property><name>novalue</name><description>no value: sets nothing</description></property>\n' +
    '  <property><name>dup</name><value>first</value></property>\n' +
    '  <property><name>dup</name><value>second</value></property>\n' +
    '  <xi:include href="other.xml"/>\n' +
    '</configuration>\n<!-- trailing comment -->\n';
  const props = parseSiteXml(xml);
  t.deepEqual([...props], [['a', 'AB&amp; stays-z'], ['empty', ''], ['dup', 'second']]);
});

test('parseSiteXml: malformed XML is a ConfigError with the line number', (t) => {
  const cases: [xml: string, line: number, says: RegExp][] = [
    ['<configuration>\n<property>\n  <name>a</name>\n  <value>1</valu>\n</property>\n</configuration>', 4, /<\/valu> does not match <value>/],
    ['<configuration>\n<property>\n<name>a</name>\n<value>Tom & Jerry</value>\n</property>\n</configuration>', 4, /bare '&'/],
    ['<configuration>\n\n<property><name>a</name><value>&nbsp;</value></property>\n</configuration>', 3, /unknown entity &nbsp;/],
    ['<configuration>\n<!-- never closed\n<property/>\n</configuration>', 2, /unterminated comment/],
    ['<configuration>\n<property>\n<name>a</name>\n', 2, /<property> opened on line 2 is never closed/],
    ['<configuration/>\n<configuration/>', 2, /second top-level element/],
    ['<configuration>\n</configuration>\ntrailing text', 3, /text outside the root element/],
    ['<configuration>\n<property><name>a</name><value><![CDATA[x</value></property></configuration>', 2, /unterminated CDATA/],
    ['<?xml version="1.0"?>\n<properties>\n</properties>', 2, /root element must be <configuration>/],
    ['<configuration>\n<property>\n<value>1</value>\n</property>\n</configuration>', 2, /needs exactly one non-empty <name>/],
    ['   \n  ', 2, /no root element/],
  ];
  for (const [xml, line, says] of cases) {
    const err = configError(t, () => parseSiteXml(xml, '/etc/submarine/submarine-site.xml'));
    t.is(err.line, line, xml);
    t.is(err.source, '/etc/submarine/submarine-site.xml');
    t.regex(err.message, says);
    t.regex(err.message, new RegExp(`line ${line}\\b`));
  }
});

// ---------------------------------------------------------------------------------------------
// Flags

test('parseFlags: --key value, --key=value, bare --flag, repeats, -- and stray arguments', (t) => {
  t.deepEqual(parseFlags(['--id', 'n1', '--peers=n1,n2', '--verbose', '--delta', '-5', '--empty=', '--id', 'n2', '--', 'ignored', '--x']), {
    id: 'n2',
    peers: 'n1,n2',
    verbose: true,
    delta: '-5',
    empty: '',
  });
  t.deepEqual(parseFlags(['--a=b=c', '--last']), { a: 'b=c', last: true });
  // `--peers a, b` split by the shell: the stray 'b' must not vanish silently.
  const err = configError(t, () => parseFlags(['--peers', 'a,', 'b']));
  t.is(err.key, 'b');
  configError(t, () => parseFlags(['-h']));
  configError(t, () => parseFlags(['--=x']));
});

// ---------------------------------------------------------------------------------------------
// Loading from the site file

test('loadConfig: conf/submarine-site.xml under cwd gives peers, server addresses, heartbeats and the member id', (t) => {
  const cwd = sandbox(t, { 'conf/submarine-site.xml': SUBMARINE_SITE_XML });
  const c = load({ cwd });
  t.deepEqual(c, {
    id: '10.0.0.2:6000', // the one peer listed as this server's address
    peers: ['10.0.0.1:6000', '10.0.0.2:6000', '10.0.0.3:6000'],
    cluster: 'submarine',
    nats: ['nats://127.0.0.1:4222'],
    dataDir: './data/10.0.0.2_6000',
    serverAddrs: ['10.0.0.2:6000'],
    heartbeatIntervalMs: 2000,
    heartbeatTimeoutMs: 8000,
    electionTimeoutMs: { min: 400, max: 800 },
    heartbeatTickMs: 50,
    snapshotEveryEntries: 10_000,
    commitFlushDelayMs: 2,
    logLevel: 'info',
    warnings: [],
  });
  t.is(load({ cwd, argv: ['--id', '10.0.0.3:6000'] }).id, '10.0.0.3:6000');
  const tuned = load({ cwd, argv: ['--snapshot-every', '50', '--metrics-port', '9100'] });
  t.is(tuned.snapshotEveryEntries, 50);
  t.is(tuned.metricsPort, 9100);
  t.throws(() => load({ cwd, argv: ['--metrics-port', '70000'] }), { message: /metrics-port/ });
  // The commit flush delay may be 0 (commit-only appends at once), unlike the timers.
  t.is(load({ cwd, argv: ['--commit-flush-delay', '0'] }).commitFlushDelayMs, 0);
  t.is(load({ cwd, argv: [], env: { SUBMARINE_COMMIT_FLUSH_DELAY_MS: '5' } }).commitFlushDelayMs, 5);
  t.throws(() => load({ cwd, argv: ['--commit-flush-delay', '-1'] }), { message: /commit-flush-delay.*non-negative integer/ });
  t.throws(() => load({ cwd, argv: ['--commit-flush-delay', '5000'] }), { message: /at most 1000/ });
  // No site file at all is fine, as long as peers come from somewhere.
  t.deepEqual(load({ cwd: sandbox(t), argv: ['--peers', 'solo'] }).peers, ['solo']);
});

test('loadConfig: Zeppelin key names in conf/zeppelin-site.xml; submarine-site.xml is preferred when both exist', (t) => {
  const cwd = sandbox(t, { 'conf/zeppelin-site.xml': ZEPPELIN_SITE_XML });
  const c = load({ cwd, argv: ['--id', 'zep2:6000'] });
  t.deepEqual(c.peers, ['zep1:6000', 'zep2:6000', 'zep3:6000']);
  t.is(c.heartbeatIntervalMs, 1000);
  t.is(c.heartbeatTimeoutMs, 3000);

  const both = sandbox(t, { 'conf/zeppelin-site.xml': ZEPPELIN_SITE_XML, 'conf/submarine-site.xml': SUBMARINE_SITE_XML });
  t.is(load({ cwd: both }).peers[0], '10.0.0.1:6000');
});

test('loadConfig: submarine.cluster.addr and zeppelin.cluster.addr must agree when both are set', (t) => {
  const same = sandbox(t, {
    'site.xml': xmlWith({ 'submarine.cluster.addr': 'a:1,b:2', 'zeppelin.cluster.addr': ' b:2 , a:1 ' }),
  });
  t.deepEqual(load({ siteXmlPath: join(same, 'site.xml'), argv: ['--id', 'a:1'] }).peers, ['a:1', 'b:2']);

  const dir = sandbox(t, { 'site.xml': xmlWith({ 'submarine.cluster.addr': 'a:1,b:2', 'zeppelin.cluster.addr': 'a:1,c:3' }) });
  const path = join(dir, 'site.xml');
  const err = configError(t, () => load({ siteXmlPath: path, argv: ['--id', 'a:1'] }));
  t.is(err.key, 'zeppelin.cluster.addr');
  t.is(err.source, path);
  t.is(err.line, 6);
  t.regex(err.message, /differs from submarine\.cluster\.addr/);

  // Same rule for the heartbeat aliases.
  const hb = sandbox(t, { 'site.xml': xmlWith({ 'cluster.heartbeat.interval': '1000', 'zeppelin.cluster.heartbeat.interval': '2000' }) });
  t.is(configError(t, () => load({ siteXmlPath: join(hb, 'site.xml'), argv: ['--peers', 'a'] })).key, 'zeppelin.cluster.heartbeat.interval');
});

test('loadConfig: precedence is defaults < site XML < JSON < env < flags, per setting', (t) => {
  const dir = sandbox(t, {
    'conf/submarine-site.xml': xmlWith({ 'cluster.heartbeat.interval': '1000', 'cluster.heartbeat.timeout': '30000', 'submarine.cluster.addr': 'x:1,y:2', 'submarine.cluster.name': 'from-xml' }),
    'c.json': JSON.stringify({ heartbeatIntervalMs: 2000, peers: ['j1', 'j2'], id: 'j1', cluster: 'from-json' }),
  });
  const json = join(dir, 'c.json');
  const env = { SUBMARINE_HEARTBEAT_INTERVAL_MS: '3000', SUBMARINE_CLUSTER_NAME: 'from-env' };
  const argv = ['--heartbeat-interval', '4000'];

  t.is(load({ cwd: dir, jsonPath: json, env, argv }).heartbeatIntervalMs, 4000);
  t.is(load({ cwd: dir, jsonPath: json, env }).heartbeatIntervalMs, 3000);
  t.is(load({ cwd: dir, jsonPath: json }).heartbeatIntervalMs, 2000);
  t.is(load({ cwd: dir, argv: ['--id', 'x:1'] }).heartbeatIntervalMs, 1000);
  t.is(load({ argv: ['--peers', 'a'] }).heartbeatIntervalMs, 3000); // default

  // Layers override setting by setting, not wholesale: unset values fall through to lower layers.
  const c = load({ cwd: dir, jsonPath: json, env, argv });
  t.is(c.cluster, 'from-env');
  t.deepEqual(c.peers, ['j1', 'j2']);
  t.is(c.id, 'j1');
  t.is(c.heartbeatTimeoutMs, 30000);
  t.is(load({ cwd: dir, jsonPath: json, env, argv: ['--cluster', 'from-flag'] }).cluster, 'from-flag');
  // Env and JSON file paths: --config beats SUBMARINE_CONFIG beats the jsonPath option.
  const other = join(sandbox(t, { 'o.json': JSON.stringify({ peers: ['o'], cluster: 'other' }) }), 'o.json');
  t.is(load({ jsonPath: json, env: { SUBMARINE_CONFIG: other } }).cluster, 'other');
  t.is(load({ jsonPath: other, env: { SUBMARINE_CONFIG: other }, argv: ['--config', json] }).cluster, 'from-json');
});

test('loadConfig: site XML location: --site-xml > SUBMARINE_SITE_XML > ZEPPELIN_SITE_XML > option > conf/', (t) => {
  const dir = sandbox(t, {
    'flag.xml': xmlWith({ 'submarine.cluster.addr': 'flag:1' }),
    'sub.xml': xmlWith({ 'submarine.cluster.addr': 'sub:1' }),
    'zep.xml': xmlWith({ 'zeppelin.cluster.addr': 'zep:1' }),
    'opt.xml': xmlWith({ 'submarine.cluster.addr': 'opt:1' }),
    'conf/submarine-site.xml': xmlWith({ 'submarine.cluster.addr': 'conf:1' }),
  });
  const env = { SUBMARINE_SITE_XML: 'sub.xml', ZEPPELIN_SITE_XML: 'zep.xml' }; // relative to cwd
  t.is(load({ cwd: dir, env, siteXmlPath: 'opt.xml', argv: ['--site-xml', 'flag.xml'] }).id, 'flag:1');
  t.is(load({ cwd: dir, env, siteXmlPath: 'opt.xml' }).id, 'sub:1');
  t.is(load({ cwd: dir, env: { ZEPPELIN_SITE_XML: 'zep.xml' }, siteXmlPath: 'opt.xml' }).id, 'zep:1');
  t.is(load({ cwd: dir, siteXmlPath: 'opt.xml' }).id, 'opt:1');
  t.is(load({ cwd: dir }).id, 'conf:1');
});

test('loadConfig: a named file that does not exist is an error naming it and who named it', (t) => {
  const cwd = sandbox(t);
  const cases: [LoadConfigOptions, key: string, source: string][] = [
    [{ siteXmlPath: 'missing-site.xml' }, 'siteXmlPath', 'option siteXmlPath'],
    [{ argv: ['--site-xml', 'missing-site.xml'] }, '--site-xml', 'flag --site-xml'],
    [{ env: { SUBMARINE_SITE_XML: 'missing-site.xml' } }, 'SUBMARINE_SITE_XML', 'env SUBMARINE_SITE_XML'],
    [{ env: { ZEPPELIN_SITE_XML: 'missing-site.xml' } }, 'ZEPPELIN_SITE_XML', 'env ZEPPELIN_SITE_XML'],
    [{ jsonPath: 'missing.json' }, 'jsonPath', 'option jsonPath'],
    [{ argv: ['--config', 'missing.json'] }, '--config', 'flag --config'],
    [{ env: { SUBMARINE_CONFIG: 'missing.json' } }, 'SUBMARINE_CONFIG', 'env SUBMARINE_CONFIG'],
  ];
  for (const [o, key, source] of cases) {
    const err = configError(t, () => load({ cwd, ...o, argv: [...(o.argv ?? []), '--peers', 'a'] }));
    t.is(err.key, key);
    t.is(err.source, source);
    t.true(err.message.includes(join(cwd, key.includes('json') || key.includes('config') || key.includes('CONFIG') ? 'missing.json' : 'missing-site.xml')), err.message);
    t.regex(err.message, /does not exist/);
  }
});

// ---------------------------------------------------------------------------------------------
// Validation

test('heartbeat: timeout below the interval is an error; below 3x the interval only a warning', (t) => {
  t.deepEqual(load({ argv: ['--peers', 'a', '--heartbeat-interval', '1000', '--heartbeat-timeout', '3000'] }).warnings, []);

  const warned = load({ argv: ['--peers', 'a', '--heartbeat-interval', '1000', '--heartbeat-timeout', '2999'] });
  t.is(warned.heartbeatTimeoutMs, 2999);
  t.is(warned.warnings.length, 1);
  t.regex(warned.warnings[0]!, /timeout 2999 ms .* interval 1000 ms/);

  const err = configError(t, () => load({ argv: ['--peers', 'a', '--heartbeat-timeout', '999'], env: { SUBMARINE_HEARTBEAT_INTERVAL_MS: '1000' } }));
  t.is(err.key, '--heartbeat-timeout');
  t.is(err.source, 'flag --heartbeat-timeout');
  t.regex(err.message, /env SUBMARINE_HEARTBEAT_INTERVAL_MS/);
  // With the timeout left at its default, the interval someone set is the one to blame.
  const dir = sandbox(t, { 's.xml': xmlWith({ 'submarine.cluster.addr': 'a:1', 'cluster.heartbeat.interval': '10000' }) });
  const err2 = configError(t, () => load({ siteXmlPath: join(dir, 's.xml') }));
  t.is(err2.key, 'cluster.heartbeat.interval');
  t.is(err2.source, join(dir, 's.xml'));
  t.is(err2.line, 6);
});

test('cluster addresses: IPv6 in brackets accepted, bare IPv6 rejected', (t) => {
  const dir = sandbox(t, { 's.xml': xmlWith({ 'submarine.cluster.addr': '[::1]:6000,[fe80::1%eth0]:6001, [2001:db8::7]:6002', 'submarine.server.addr': '[::1]:6000' }) });
  const c = load({ siteXmlPath: join(dir, 's.xml') });
  t.deepEqual(c.peers, ['[::1]:6000', '[fe80::1%eth0]:6001', '[2001:db8::7]:6002']);
  t.is(c.id, '[::1]:6000');
  t.is(c.dataDir, './data/___1__6000');

  const bare = sandbox(t, { 's.xml': xmlWith({ 'submarine.cluster.addr': '::1:6000' }) });
  const err = configError(t, () => load({ siteXmlPath: join(bare, 's.xml') }));
  t.regex(err.message, /'::1:6000'.*brackets/);
});

test('cluster addresses: empty entries are skipped, duplicates are errors', (t) => {
  const ok = sandbox(t, { 's.xml': xmlWith({ 'submarine.cluster.addr': ',a:1,, b:02 ,', 'submarine.server.addr': 'b:2' }) });
  const c = load({ siteXmlPath: join(ok, 's.xml') });
  t.deepEqual(c.peers, ['a:1', 'b:2']); // port read as a number, like Integer.valueOf in the original
  t.is(c.id, 'b:2');

  for (const [value, dup] of [['a:1,b:2,a:1', 'a:1'], ['a:1,A:1', 'A:1'], ['a:1,a:01', 'a:1']]) {
    const dir = sandbox(t, { 's.xml': xmlWith({ 'submarine.cluster.addr': value! }) });
    const err = configError(t, () => load({ siteXmlPath: join(dir, 's.xml'), argv: ['--id', 'a:1'] }));
    t.is(err.key, 'submarine.cluster.addr');
    t.true(err.message.includes(`'${dup}' more than once`), err.message);
  }
  const err = configError(t, () => load({ argv: ['--peers', 'n1,n2,n1'] }));
  t.is(err.key, '--peers');
});

test('cluster addresses: a bad entry names the key and the entry', (t) => {
  const bad: [value: string, entry: string, why: RegExp][] = [
    ['a:1,b:0', 'b:0', /outside 1\.\.65535/],
    ['a:1,b:65536', 'b:65536', /outside 1\.\.65535/],
    ['a:1,b', 'b', /missing :port/],
    ['a:1,:6000', ':6000', /empty host/],
    ['a:1,b:x', 'b:x', /bad port/],
    ['a:1,b c:1', 'b c:1', /bad host/],
    ['a:1,[::1]6000', '[::1]6000', /missing :port/],
  ];
  for (const [value, entry, why] of bad) {
    for (const key of ['submarine.cluster.addr', 'zeppelin.cluster.addr', 'submarine.server.addr', 'workbench.server.addr']) {
      const dir = sandbox(t, { 's.xml': xmlWith({ [key]: value }) });
      const err = configError(t, () => load({ siteXmlPath: join(dir, 's.xml'), argv: ['--peers', 'p'] }));
      t.is(err.key, key);
      t.true(err.message.includes(`'${entry}'`), err.message);
      t.regex(err.message, why);
    }
  }
});

test('unknown flags are errors with a suggestion, unless allowUnknownFlags', (t) => {
  const err = configError(t, () => load({ argv: ['--peers', 'a', '--heartbeat-intervall', '100'] }));
  t.is(err.key, '--heartbeat-intervall');
  t.is(err.source, 'flag --heartbeat-intervall');
  t.regex(err.message, /did you mean --heartbeat-interval\?/);

  const c = load({ argv: ['serve', '--port', '8080', '--peers', 'a', '--verbose'], allowUnknownFlags: true });
  t.deepEqual(c.peers, ['a']);
  // A known flag without its value is still an error.
  t.is(configError(t, () => load({ argv: ['--peers', 'a', '--id'] })).key, '--id');
});

test('JSON file: unknown fields, wrong types and bad JSON are errors naming the field and file', (t) => {
  const dir = sandbox(t);
  const json = (name: string, body: string): string => {
    writeFileSync(join(dir, name), body);
    return join(dir, name);
  };
  const good = json('good.json', JSON.stringify({
    id: 'n2', peers: ['n1', 'n2', 'n3'], cluster: 'prod', nats: ['nats://a:4222', 'b:4223'], natsCredentialsFile: '/etc/nats/n.creds',
    dataDir: '/var/lib/sub', serverAddrs: ['h:8080'], heartbeatIntervalMs: 500, heartbeatTimeoutMs: 1500,
    electionTimeoutMs: { min: 300, max: 600 }, heartbeatTickMs: 100, dashboardPort: 9090, logLevel: 'debug',
  }));
  const c = load({ jsonPath: good });
  t.like(c, { id: 'n2', cluster: 'prod', nats: ['nats://a:4222', 'nats://b:4223'], dataDir: '/var/lib/sub', electionTimeoutMs: { min: 300, max: 600 }, heartbeatTickMs: 100, dashboardPort: 9090, logLevel: 'debug', natsCredentialsFile: '/etc/nats/n.creds' });

  const cases: [body: unknown, key: string, says: RegExp][] = [
    [{ peers: ['a'], heartbeatIntervalMS: 100 }, 'heartbeatIntervalMS', /unknown field/],
    [{ peers: ['a'], warnings: [] }, 'warnings', /unknown field/],
    [{ peers: 'a,b' }, 'peers', /array of strings/],
    [{ peers: ['a', 7] }, 'peers', /array of strings/],
    [{ peers: ['a'], heartbeatIntervalMs: '3000' }, 'heartbeatIntervalMs', /integer/],
    [{ peers: ['a'], heartbeatIntervalMs: 1.5 }, 'heartbeatIntervalMs', /positive integer/],
    [{ peers: ['a'], dashboardPort: 70000 }, 'dashboardPort', /at most 65535/],
    [{ peers: ['a'], electionTimeoutMs: '150-300' }, 'electionTimeoutMs', /object \{min, max\}/],
    [{ peers: ['a'], electionTimeoutMs: { min: 150, max: 300, jitter: 1 } }, 'electionTimeoutMs.jitter', /unknown field/],
    [{ peers: ['a'], electionTimeoutMs: { min: 150 } }, 'electionTimeoutMs.max', /integer/],
    [{ peers: ['a'], logLevel: 'verbose' }, 'logLevel', /not one of/],
    [{ peers: ['a'], cluster: 'has.dots' }, 'cluster', /cluster name/],
    [['a'], 'json', /JSON object/],
  ];
  for (const [body, key, says] of cases) {
    const path = json('bad.json', JSON.stringify(body));
    const err = configError(t, () => load({ jsonPath: path }));
    t.is(err.key, key, JSON.stringify(body));
    t.is(err.source, path);
    t.regex(err.message, says);
  }
  const broken = json('broken.json', '{\n  "peers": ["a"],\n}\n');
  const err = configError(t, () => load({ jsonPath: broken }));
  t.is(err.line, 3);
  t.regex(err.message, /not valid JSON/);
});

test('member id: must be a peer; derived from the server address or a single peer; otherwise ask for --id', (t) => {
  const err = configError(t, () => load({ argv: ['--peers', 'n1,n2', '--id', 'n3'] }));
  t.is(err.key, '--id');
  t.regex(err.message, /'n3' is not one of the peers: n1, n2/);
  t.is(configError(t, () => load({ argv: ['--peers', 'n1,n2'], env: { SUBMARINE_CLUSTER_ID: 'n9' } })).source, 'env SUBMARINE_CLUSTER_ID');

  t.is(load({ argv: ['--peers', 'only'] }).id, 'only');
  const dir = sandbox(t, {
    'none.xml': xmlWith({ 'submarine.cluster.addr': 'a:1,b:2', 'submarine.server.addr': 'c:3' }),
    'two.xml': xmlWith({ 'submarine.cluster.addr': 'a:1,b:2', 'submarine.server.addr': 'a:1', 'workbench.server.addr': 'b:2' }),
    'wb.xml': xmlWith({ 'submarine.cluster.addr': 'a:1,b:2', 'submarine.server.addr': 'c:3', 'workbench.server.addr': 'B:2' }),
  });
  for (const file of ['none.xml', 'two.xml']) {
    const e = configError(t, () => load({ siteXmlPath: join(dir, file) }));
    t.is(e.key, 'id');
    t.regex(e.message, /cannot tell which member this is: pass --id/);
  }
  const wb = load({ siteXmlPath: join(dir, 'wb.xml') });
  t.deepEqual(wb.serverAddrs, ['c:3', 'B:2']);
  t.is(wb.id, 'b:2'); // host names compare case-insensitively; the peer's spelling is kept

  const none = configError(t, () => load({}));
  t.is(none.key, 'peers');
  t.regex(none.message, /no cluster members configured/);
  t.is(configError(t, () => load({ argv: ['--peers', ' , '] })).key, '--peers');
});

test('NATS servers: nats:// and tls:// URLs kept, host:port normalized, others rejected; user and password go together', (t) => {
  const c = load({ argv: ['--peers', 'a', '--nats', ' nats://n1:4222 , tls://user:pw@n2:4443,n3:4222,[::1]:4222 '] });
  t.deepEqual(c.nats, ['nats://n1:4222', 'tls://user:pw@n2:4443', 'nats://n3:4222', 'nats://[::1]:4222']);
  t.deepEqual(load({ argv: ['--peers', 'a'], env: { SUBMARINE_NATS: 'x:1' } }).nats, ['nats://x:1']);

  for (const bad of ['http://n1:4222', 'n1', 'nats://n1:99999', 'nats://n1:4222/path', 'nats://', 'nats://n1:0']) {
    const err = configError(t, () => load({ argv: ['--peers', 'a'], env: { SUBMARINE_NATS: bad } }));
    t.is(err.key, 'SUBMARINE_NATS', bad);
    t.true(err.message.includes(bad), err.message);
  }
  const auth = load({ argv: ['--peers', 'a'], env: { SUBMARINE_NATS_USER: 'u', SUBMARINE_NATS_PASS: 'p' } });
  t.like(auth, { natsUser: 'u', natsPass: 'p', warnings: [] });
  t.is(configError(t, () => load({ argv: ['--peers', 'a'], env: { SUBMARINE_NATS_PASS: 'p' } })).key, 'SUBMARINE_NATS_PASS');
  // A password on the command line works but is visible in `ps`.
  t.regex(load({ argv: ['--peers', 'a', '--nats-user', 'u', '--nats-pass', 'p'] }).warnings.join(), /visible/);
});

test('election timeout: min-max, min below max, min at least twice the heartbeat tick', (t) => {
  t.deepEqual(load({ argv: ['--peers', 'a', '--election-timeout', '200-400'] }).electionTimeoutMs, { min: 200, max: 400 });
  for (const [value, says] of [['300-300', /below max/], ['400-200', /below max/], ['99-300', /2x the heartbeat tick 50/], ['150', /min-max/], ['a-b', /min-max/], ['0-10', /positive/]] as const) {
    const err = configError(t, () => load({ argv: ['--peers', 'a', '--election-timeout', value] }));
    t.is(err.key, '--election-timeout', value);
    t.regex(err.message, says);
  }
  const dir = sandbox(t, { 'c.json': JSON.stringify({ peers: ['a'], heartbeatTickMs: 250 }) });
  // The default election timeout (400) is too short for a 250 ms tick: blame the tick that was set.
  const err = configError(t, () => load({ jsonPath: join(dir, 'c.json') }));
  t.is(err.key, 'heartbeatTickMs');
});

test('every value error names its key and its source', (t) => {
  const dir = sandbox(t);
  const xml = join(dir, 's.xml');
  const cases: [LoadConfigOptions, key: string, source: string][] = [
    [{ env: { SUBMARINE_HEARTBEAT_INTERVAL_MS: '3s' } }, 'SUBMARINE_HEARTBEAT_INTERVAL_MS', 'env SUBMARINE_HEARTBEAT_INTERVAL_MS'],
    [{ env: { SUBMARINE_HEARTBEAT_TIMEOUT_MS: '0' } }, 'SUBMARINE_HEARTBEAT_TIMEOUT_MS', 'env SUBMARINE_HEARTBEAT_TIMEOUT_MS'],
    [{ env: { SUBMARINE_DASHBOARD_PORT: '65536' } }, 'SUBMARINE_DASHBOARD_PORT', 'env SUBMARINE_DASHBOARD_PORT'],
    [{ env: { SUBMARINE_LOG_LEVEL: 'loud' } }, 'SUBMARINE_LOG_LEVEL', 'env SUBMARINE_LOG_LEVEL'],
    [{ env: { SUBMARINE_CLUSTER_NAME: 'a.b' } }, 'SUBMARINE_CLUSTER_NAME', 'env SUBMARINE_CLUSTER_NAME'],
    [{ env: { SUBMARINE_CLUSTER_PEERS: 'a b' } }, 'SUBMARINE_CLUSTER_PEERS', 'env SUBMARINE_CLUSTER_PEERS'],
    [{ argv: ['--heartbeat-interval', '-1'] }, '--heartbeat-interval', 'flag --heartbeat-interval'],
    [{ argv: ['--heartbeat-timeout', '99999999999'] }, '--heartbeat-timeout', 'flag --heartbeat-timeout'],
    [{ argv: ['--dashboard-port', '0'] }, '--dashboard-port', 'flag --dashboard-port'],
    [{ argv: ['--log-level', 'chatty'] }, '--log-level', 'flag --log-level'],
    [{ argv: ['--cluster', 'x'.repeat(65)] }, '--cluster', 'flag --cluster'],
    [{ argv: ['--data-dir='] }, '--data-dir', 'flag --data-dir'],
    [{ argv: ['--nats', 'ws://x:1'] }, '--nats', 'flag --nats'],
    [{ siteXmlPath: xml, xml: { 'cluster.heartbeat.interval': '3 seconds' } } as LoadConfigOptions, 'cluster.heartbeat.interval', xml],
    [{ siteXmlPath: xml, xml: { 'cluster.heartbeat.timeout': '-5' } } as LoadConfigOptions, 'cluster.heartbeat.timeout', xml],
    [{ siteXmlPath: xml, xml: { 'submarine.cluster.name': 'no spaces' } } as LoadConfigOptions, 'submarine.cluster.name', xml],
    [{ siteXmlPath: xml, xml: { 'submarine.cluster.nats': 'nats://ok:1,bad' } } as LoadConfigOptions, 'submarine.cluster.nats', xml],
  ];
  for (const [o, key, source] of cases) {
    const { xml: props, ...opts } = o as LoadConfigOptions & { xml?: Record<string, string> };
    if (props) writeFileSync(xml, xmlWith(props));
    const err = configError(t, () => load({ ...opts, argv: ['--peers', 'p', ...(opts.argv ?? [])] }));
    t.is(err.key, key);
    t.is(err.source, source);
  }
});

test('defaults, empty environment variables, data dir and site-file values that are left empty', (t) => {
  const c = load({
    argv: ['--peers', 'node/1,node-2', '--id', 'node/1'],
    env: { SUBMARINE_LOG_LEVEL: '', SUBMARINE_NATS: '   ', SUBMARINE_DATA_DIR: '' }, // empty counts as unset
  });
  t.is(c.logLevel, 'info');
  t.deepEqual(c.nats, ['nats://127.0.0.1:4222']);
  t.is(c.dataDir, './data/node_1');
  t.is(c.cluster, 'submarine');
  t.false('dashboardPort' in c);
  t.false('natsUser' in c);
  t.is(load({ argv: ['--peers', '..'] }).dataDir, './data/__'); // never a path outside ./data
  t.is(load({ argv: ['--peers', 'a', '--log-level', 'WARN', '--data-dir', '/srv/raft'] }).logLevel, 'warn');

  // An empty submarine.cluster.addr means "no cluster" in the original; other sources may still supply peers.
  const dir = sandbox(t, { 's.xml': xmlWith({ 'submarine.cluster.addr': '', 'submarine.cluster.data.dir': '/data/x' }) });
  const x = load({ siteXmlPath: join(dir, 's.xml'), env: { SUBMARINE_CLUSTER_PEERS: 'e1' } });
  t.deepEqual(x.peers, ['e1']);
  t.is(x.dataDir, '/data/x');
});
