/**
 * The dashboard page: one HTML document, CSS and JS inline, nothing loaded from elsewhere.
 * It fetches the charts once (SVG drawn by the server from the machine definitions), then
 * follows `/events` (SSE) and re-renders on every snapshot: member cards with the Raft role chart
 * highlighted, the other machines, the metadata center and the change feed.
 *
 * The client script avoids template literals so it can live inside this template literal.
 */

const CSS = `
:root { --bg:#f5f6f8; --card:#fff; --ink:#1a202c; --mute:#4a5568; --line:#e2e8f0; --leader:#ffd54f; --accent:#2b6cb0; --bad:#c53030; --ok:#2f855a; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; background:var(--bg); color:var(--ink); }
header.top { position:sticky; top:0; z-index:5; display:flex; flex-wrap:wrap; gap:12px; align-items:center; padding:10px 18px; background:#1a202c; color:#fff; }
header.top h1 { font-size:17px; margin:0 8px 0 0; font-weight:600; }
header.top .sum b { color:var(--leader); }
.pill { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; background:#e2e8f0; color:#1a202c; }
.pill.live { background:#c6f6d5; } .pill.dead { background:#fed7d7; }
.spacer { flex:1; }
button { font:inherit; font-size:12.5px; padding:4px 10px; border-radius:5px; border:1px solid #a0aec0; background:#fff; cursor:pointer; }
button:hover { background:#edf2f7; } button.danger { border-color:#e53e3e; color:var(--bad); } button.danger:hover { background:#fff5f5; }
header.top button { background:#2d3748; color:#fff; border-color:#718096; } header.top button.danger { background:#9b2c2c; border-color:#fc8181; color:#fff; }
main { padding:14px 18px 40px; max-width:1700px; margin:0 auto; }
h2 { font-size:15px; margin:20px 0 8px; color:var(--mute); text-transform:uppercase; letter-spacing:.05em; }
.member { display:grid; grid-template-columns:minmax(330px, 420px) 1fr; gap:14px; background:var(--card); border:1px solid var(--line); border-left:6px solid #a0aec0; border-radius:8px; padding:12px 14px; margin-bottom:12px; }
.member[data-role="leader"] { border-left-color:#d69e2e; }
.member[data-role="candidate"], .member[data-role="preCandidate"] { border-left-color:var(--accent); }
.member.down { opacity:.72; border-left-color:var(--bad); }
.member h3 { margin:0 0 6px; font-size:18px; display:flex; gap:8px; align-items:center; flex-wrap:wrap; }
.role { font-weight:600; }
.role.leader { background:var(--leader); } .role.follower { background:#e2e8f0; } .role.candidate, .role.preCandidate { background:#bee3f8; } .role.down { background:#fed7d7; color:var(--bad); }
dl.kv { display:grid; grid-template-columns:auto 1fr auto 1fr; gap:2px 10px; margin:6px 0; font-size:13px; }
dl.kv dt { color:var(--mute); } dl.kv dd { margin:0; font-variant-numeric:tabular-nums; font-weight:500; }
table { border-collapse:collapse; font-size:12.5px; width:100%; }
th, td { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); font-variant-numeric:tabular-nums; }
th { color:var(--mute); font-weight:500; }
.lagbar { display:inline-block; height:8px; background:#f6ad55; border-radius:2px; vertical-align:middle; margin-left:4px; }
.small { font-size:12px; color:var(--mute); }
.buttons { display:flex; flex-wrap:wrap; gap:5px; margin-top:8px; }
ol.transitions { margin:4px 0 0; padding-left:18px; font-size:12.5px; }
ol.transitions li:first-child { font-weight:600; }
.chart { min-width:0; }
.chart svg { width:100%; height:auto; max-height:460px; display:block; }
.chart g.state.active > path, .chart g.state.active > polygon { fill:var(--leader); stroke:#b7791f; stroke-width:2.5px; }
.chart g.state.stale > path, .chart g.state.stale > polygon { fill:#e2e8f0; stroke:#718096; stroke-dasharray:4 2; stroke-width:2px; }
.chart g.edge.last > path { stroke:#dd6b20; stroke-width:2.5px; }
.chart g.edge.last > polygon { fill:#dd6b20; stroke:#dd6b20; }
.chart g.edge.last > text { fill:#c05621; font-weight:bold; }
.machines { display:grid; grid-template-columns:repeat(auto-fit, minmax(520px, 1fr)); gap:12px; }
.machine[data-machine="raft"] { grid-column:1 / -1; }
.machine[data-machine="raft"] .chart svg { max-height:620px; }
.machine { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
.machine h3 { margin:0 0 4px; font-size:15px; }
.two { display:grid; grid-template-columns:3fr 2fr; gap:14px; }
.panel { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:10px 14px; overflow:auto; }
ol.feed { list-style:none; margin:0; padding:0; font:12px/1.5 ui-monospace, "DejaVu Sans Mono", monospace; max-height:420px; overflow:auto; }
ol.feed li { border-bottom:1px solid var(--line); padding:2px 0; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.t-put { color:var(--ok); } .t-delete { color:var(--bad); }
#toast { position:fixed; right:16px; bottom:16px; max-width:480px; padding:8px 12px; border-radius:6px; background:#2d3748; color:#fff; font-size:13px; opacity:0; transition:opacity .2s; z-index:10; }
#toast.show { opacity:.95; } #toast.err { background:var(--bad); }
dialog { width:min(1100px, 94vw); border:none; border-radius:8px; padding:0; }
dialog header { display:flex; gap:8px; align-items:center; padding:8px 12px; background:#edf2f7; }
dialog pre { margin:0; padding:10px 12px; max-height:70vh; overflow:auto; font:12px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; white-space:pre-wrap; }
.readonly .launcher-only { display:none !important; }
footer { margin-top:24px; font-size:12px; color:var(--mute); }
footer a { color:var(--accent); }
`;

const SCRIPT = `
'use strict';
var charts = [];
var last = null;
var cards = {};
function $(sel, root) { return (root || document).querySelector(sel); }
function el(tag, attrs, text) {
  var e = document.createElement(tag);
  for (var k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function fmtMs(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return ms + ' ms';
  if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
  return Math.round(ms / 60000) + ' min';
}
function fmtBytes(b) {
  if (!b && b !== 0) return '—';
  if (b > 1 << 30) return (b / (1 << 30)).toFixed(2) + ' GiB';
  return (b / (1 << 20)).toFixed(1) + ' MiB';
}
function toast(text, isErr) {
  var t = $('#toast');
  t.textContent = text;
  t.className = 'show' + (isErr ? ' err' : '');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(function () { t.className = ''; }, 3500);
}
function control(path, what) {
  return fetch('/api/control/' + path, { method: 'POST', headers: { 'X-Submarine-Dashboard': '1' } })
    .then(function (r) { return r.json(); })
    .then(function (j) { if (j.ok) toast(what + ': done'); else toast(what + ': ' + j.error, true); return j; })
    .catch(function (e) { toast(what + ': ' + e.message, true); });
}
// Ids of the active state nodes for a state value, as drawn by src/chart.ts ('st|<root>.<path>').
function activeIds(root, value) {
  var out = [];
  (function walk(prefix, v) {
    if (typeof v === 'string') {
      var p = prefix;
      v.split('.').forEach(function (k) { p = p + '.' + k; out.push(p); });
    } else if (v && typeof v === 'object') {
      Object.keys(v).forEach(function (k) { out.push(prefix + '.' + k); walk(prefix + '.' + k, v[k]); });
    }
  })(root, value);
  return out;
}
function highlight(container, root, value, cls, lastMove) {
  container.querySelectorAll('g.active, g.stale, g.last').forEach(function (g) { g.classList.remove('active', 'stale', 'last'); });
  if (value !== null && value !== undefined) {
    activeIds(root, value).forEach(function (id) {
      var g = container.querySelector('g[id="st|' + id + '"]');
      if (g) g.classList.add(cls);
    });
  }
  if (lastMove) {
    container.querySelectorAll('g[id^="tr|' + root + '.' + lastMove.from + '|' + root + '.' + lastMove.to + '|"]').forEach(function (g) { g.classList.add('last'); });
  }
}
function putSvg(container, svg) {
  container.innerHTML = svg;
  var s = container.querySelector('svg');
  if (s) { s.removeAttribute('width'); s.removeAttribute('height'); }
}
function chart(name) { return charts.filter(function (c) { return c.name === name; })[0]; }

function memberCard(id) {
  var a = el('article', { class: 'member', 'data-member': id, 'data-role': 'unknown' });
  a.innerHTML =
    '<div class="stats">' +
      '<h3><span class="id"></span><span class="pill role"></span><span class="small proc"></span></h3>' +
      '<dl class="kv">' +
        '<dt>term</dt><dd data-f="term"></dd><dt>leader</dt><dd data-f="leader"></dd>' +
        '<dt>commit</dt><dd data-f="commit"></dd><dt>applied</dt><dd data-f="applied"></dd>' +
        '<dt>last index</dt><dd data-f="last"></dd><dt>log size</dt><dd data-f="logsize"></dd>' +
        '<dt>snapshot</dt><dd data-f="snapshot"></dd><dt>revision</dt><dd data-f="revision"></dd>' +
        '<dt>last contact</dt><dd data-f="contact"></dd><dt>memory</dt><dd data-f="rss"></dd>' +
        '<dt title="event-loop lag over the last minute; longest stall since start">loop lag</dt><dd data-f="lag"></dd>' +
      '</dl>' +
      '<div class="small faults"></div>' +
      '<table class="progress"><thead><tr><th>follower</th><th>match</th><th>next</th><th>state</th><th>lag</th></tr></thead><tbody></tbody></table>' +
      '<div class="small" style="margin-top:6px">last transitions (newest first)</div><ol class="transitions"></ol>' +
      '<div class="buttons">' +
        '<button class="danger launcher-only" data-act="kill">kill -9</button>' +
        '<button class="launcher-only" data-act="restart">restart</button>' +
        '<button class="launcher-only" data-act="pause">pause</button>' +
        '<button class="launcher-only" data-act="resume">resume</button>' +
        '<button class="launcher-only" data-act="partition">partition away</button>' +
        '<button class="launcher-only" data-act="transfer">make leader</button>' +
        '<button data-act="logs">logs</button>' +
      '</div>' +
    '</div><div class="chart"></div>';
  $('.id', a).textContent = id;
  a.querySelectorAll('button[data-act]').forEach(function (b) {
    b.addEventListener('click', function () {
      var act = b.getAttribute('data-act');
      if (act === 'logs') return showLogs(id);
      if (act === 'transfer') return control('transfer/' + encodeURIComponent(id), 'make ' + id + ' leader');
      control('member/' + encodeURIComponent(id) + '/' + act, act + ' ' + id);
    });
  });
  var raft = chart('raft');
  if (raft) putSvg($('.chart', a), raft.compactSvg);
  return a;
}

function renderMember(m) {
  var a = cards[m.id];
  if (!a) {
    a = cards[m.id] = memberCard(m.id);
    var list = $('#members');
    var after = Array.prototype.filter.call(list.children, function (c) { return c.getAttribute('data-member').localeCompare(m.id, 'en', { numeric: true }) > 0; })[0];
    list.insertBefore(a, after || null);
  }
  var s = m.status;
  var role = m.reachable && s ? s.role : 'down';
  a.setAttribute('data-role', role);
  a.classList.toggle('down', !m.reachable);
  var pill = $('.role', a);
  var why = !m.process ? 'unreachable' : !m.process.running ? 'stopped' : m.process.paused ? 'paused' : 'unreachable';
  pill.textContent = m.reachable && s ? s.role : why;
  pill.className = 'pill role ' + role;
  $('.proc', a).textContent = m.process ? ('pid ' + (m.process.pid || '—') + ' · ' + (m.process.running ? (m.process.paused ? 'paused' : 'running') : 'not running')) : (s ? 'pid ' + s.pid : '');
  function f(name, v) { $('[data-f="' + name + '"]', a).textContent = v; }
  f('term', s ? s.term : '—'); f('leader', s ? (s.leader || '—') : '—');
  f('commit', s ? s.commitIndex : '—'); f('applied', s ? s.appliedIndex : '—');
  f('last', s ? s.lastIndex : '—'); f('logsize', s ? (s.lastIndex - s.snapshotIndex) + ' entries' : '—');
  f('snapshot', s ? s.snapshotIndex : '—'); f('revision', s ? s.revision : '—');
  f('contact', m.lastContactMs === null ? 'never' : fmtMs(m.lastContactMs) + ' ago');
  f('rss', s ? fmtBytes(s.rssBytes) : '—');
  var lag = s && s.loopLagMs;
  f('lag', lag ? 'p99 ' + lag.window.p99 + ' · max ' + lag.window.max + ' ms · longest ' + fmtMs(Math.round(lag.longestStallMs)) : '—');
  var faults = s && (s.faults.dropTo.length || s.faults.dropFrom.length) ? 'faults: drop to [' + s.faults.dropTo.join(', ') + '] from [' + s.faults.dropFrom.join(', ') + ']' : '';
  if (m.partitioned) faults = 'partitioned away' + (faults ? ' · ' + faults : '');
  if (!m.reachable && m.error) faults = (faults ? faults + ' · ' : '') + m.error;
  $('.faults', a).textContent = faults;
  var tb = $('.progress tbody', a);
  tb.innerHTML = '';
  var prog = s && m.reachable && s.progress ? s.progress : null;
  $('.progress', a).style.display = prog ? '' : 'none';
  if (prog) {
    Object.keys(prog).sort().forEach(function (id) {
      var p = prog[id];
      var tr = el('tr');
      tr.appendChild(el('td', {}, id + (id === s.id ? ' (self)' : '')));
      tr.appendChild(el('td', {}, p.match));
      tr.appendChild(el('td', {}, p.next));
      tr.appendChild(el('td', {}, p.state));
      var lag = el('td', {}, String(p.lag));
      var bar = el('span', { class: 'lagbar' });
      bar.style.width = Math.min(120, p.lag) + 'px';
      if (p.lag > 0) lag.appendChild(bar);
      tr.appendChild(lag);
      tb.appendChild(tr);
    });
  }
  var ol = $('ol.transitions', a);
  ol.innerHTML = '';
  var ts = s ? s.transitions.slice(-6).reverse() : [];
  ts.forEach(function (t) { ol.appendChild(el('li', {}, 'term ' + t.term + ': ' + t.from + ' → ' + t.to)); });
  var raft = chart('raft');
  if (raft) highlight($('.chart', a), raft.machine, s ? s.role : null, m.reachable ? 'active' : 'stale', s && s.transitions.length ? s.transitions[s.transitions.length - 1] : null);
}

function renderMachines(snap) {
  charts.forEach(function (c) {
    var box = $('.machine[data-machine="' + c.name + '"]');
    if (!box) return;
    var live = snap.machines[c.name];
    var note = $('.live', box);
    if (live) {
      highlight($('.chart', box), c.machine, live.value, 'active', null);
      var ctx = live.context || {};
      note.textContent = 'live: ' + JSON.stringify(live.value) + Object.keys(ctx).map(function (k) { return ' · ' + k + ' ' + JSON.stringify(ctx[k]); }).join('');
    } else if (c.name === 'raft') {
      var leader = snap.members.filter(function (m) { return m.id === snap.leader; })[0];
      note.textContent = 'live states: one per member, above' + (leader ? ' (highlighted here: the leader, ' + leader.id + ')' : '');
      highlight($('.chart', box), c.machine, leader ? 'leader' : null, 'active', null);
    } else {
      note.textContent = 'no running instance in the dashboard: chart only';
    }
  });
}

function metaCell(tr, v) { tr.appendChild(el('td', {}, v === undefined || v === null ? '—' : String(v))); }
function pct(used, cap) { return typeof used === 'number' && typeof cap === 'number' && cap > 0 ? (100 * used / cap).toFixed(1) + '%' : '—'; }
function renderMeta(snap) {
  var sb = $('#servers tbody'); sb.innerHTML = '';
  snap.meta.servers.forEach(function (r) {
    var f = r.fields, tr = el('tr');
    var intps = snap.meta.intps.filter(function (i) { return i.fields.NODE_NAME === (f.NODE_NAME || r.key); }).length;
    metaCell(tr, r.key); metaCell(tr, f.STATUS); metaCell(tr, r.heartbeatAgeMs === null ? '—' : fmtMs(r.heartbeatAgeMs));
    metaCell(tr, pct(f.CPU_USED, f.CPU_CAPACITY)); metaCell(tr, typeof f.MEMORY_USED === 'number' ? fmtBytes(f.MEMORY_USED) + ' / ' + fmtBytes(f.MEMORY_CAPACITY) : '—');
    metaCell(tr, intps);
    sb.appendChild(tr);
  });
  if (!snap.meta.servers.length) { var tr = el('tr'); tr.appendChild(el('td', { colspan: '6', class: 'small' }, 'no entries under meta/server/ yet')); sb.appendChild(tr); }
  var ib = $('#intps tbody'); ib.innerHTML = '';
  snap.meta.intps.forEach(function (r) {
    var f = r.fields, tr = el('tr');
    metaCell(tr, r.key); metaCell(tr, f.NODE_NAME); metaCell(tr, f.INTP_PROCESS_NAME); metaCell(tr, f.STATUS);
    metaCell(tr, r.heartbeatAgeMs === null ? '—' : fmtMs(r.heartbeatAgeMs));
    metaCell(tr, f.INTP_TSERVER_HOST ? f.INTP_TSERVER_HOST + ':' + f.INTP_TSERVER_PORT : '—');
    var act = el('td', { class: 'launcher-only' });
    if (f.NODE_NAME) act.appendChild(el('button', { 'data-restart': r.key, title: 'ask its server ' + f.NODE_NAME + ' to restart it' }, 'restart'));
    tr.appendChild(act);
    ib.appendChild(tr);
  });
  if (!snap.meta.intps.length) { var tr2 = el('tr'); tr2.appendChild(el('td', { colspan: '7', class: 'small' }, 'no entries under meta/intp/ yet')); ib.appendChild(tr2); }
  var feed = $('#feed'); feed.innerHTML = '';
  snap.feed.forEach(function (c) {
    var li = el('li');
    li.appendChild(el('span', { class: 'small' }, '#' + c.revision + ' '));
    li.appendChild(el('span', { class: 't-' + c.type }, c.type + ' '));
    li.appendChild(el('b', {}, c.key));
    if (c.type === 'put') li.appendChild(document.createTextNode(' = ' + c.value));
    li.title = new Date(c.seenAt).toLocaleTimeString() + ' ' + c.key + ' ' + c.value;
    feed.appendChild(li);
  });
  if (!snap.feed.length) feed.appendChild(el('li', { class: 'small' }, snap.watch.connected ? 'watching every key; no change yet' : 'watch not connected' + (snap.watch.error ? ': ' + snap.watch.error : '')));
  $('#watch').textContent = snap.watch.connected ? 'watch on \\'\\' served by ' + (snap.watch.member || '?') + ', revision ' + snap.meta.revision : 'watch: ' + (snap.watch.error || 'connecting');
}

function render(snap) {
  last = snap;
  document.body.classList.toggle('readonly', snap.mode !== 'launcher');
  $('#mode').textContent = snap.mode === 'launcher' ? 'local cluster (controls on)' : 'read-only';
  $('#cluster').textContent = snap.cluster;
  $('#leader').textContent = snap.leader || 'none';
  $('#term').textContent = snap.term;
  $('#leader').setAttribute('data-leader', snap.leader || '');
  snap.members.forEach(renderMember);
  renderMachines(snap);
  renderMeta(snap);
}

function prettyLog(line) {
  try {
    var j = JSON.parse(line);
    var lv = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' }[j.level] || j.level;
    var rest = {};
    Object.keys(j).forEach(function (k) { if (['level', 'time', 'msg', 'pid', 'hostname', 'member'].indexOf(k) < 0) rest[k] = j[k]; });
    var extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
    return new Date(j.time).toLocaleTimeString() + ' ' + lv + ' ' + (j.msg || '') + extra;
  } catch (e) { return line; }
}
function showLogs(id) {
  var d = $('#logs');
  $('#logs-id').textContent = id;
  d.setAttribute('data-member', id);
  $('#logs pre').textContent = 'loading…';
  if (!d.open) d.showModal();
  fetch('/api/member/' + encodeURIComponent(id) + '/logs?lines=300').then(function (r) { return r.text(); }).then(function (t) {
    var pre = $('#logs pre');
    pre.textContent = t.split('\\n').map(prettyLog).join('\\n');
    pre.scrollTop = pre.scrollHeight;
  });
}

function connect() {
  var es = new EventSource('/events');
  es.addEventListener('open', function () { $('#conn').textContent = 'live'; $('#conn').className = 'pill live'; });
  es.addEventListener('error', function () { $('#conn').textContent = 'reconnecting…'; $('#conn').className = 'pill dead'; });
  es.addEventListener('snapshot', function (e) { render(JSON.parse(e.data)); });
}

document.addEventListener('DOMContentLoaded', function () {
  $('#kill-leader').addEventListener('click', function () { control('kill-leader', 'kill leader'); });
  $('#heal').addEventListener('click', function () { control('heal', 'heal'); });
  $('#write').addEventListener('click', function () { control('write', 'write via outbox'); });
  // Rows are redrawn on every snapshot: one listener on the table, not one per button.
  $('#intps').addEventListener('click', function (e) {
    var b = e.target.closest('button[data-restart]');
    if (!b) return;
    var g = b.getAttribute('data-restart');
    b.disabled = true;
    control('restart-intp/' + encodeURIComponent(g), 'restart interpreter ' + g);
  });
  $('#place-intp').addEventListener('click', function (e) {
    e.target.disabled = true;
    control('place-intp/python', 'start interpreter').then(function (j) {
      e.target.disabled = false;
      if (j && j.ok) toast('started interpreter ' + j.groupId + ' on ' + j.server);
    });
  });
  $('#logs-refresh').addEventListener('click', function () { showLogs($('#logs').getAttribute('data-member')); });
  $('#logs-close').addEventListener('click', function () { $('#logs').close(); });
  fetch('/api/dashboard/charts').then(function (r) { return r.json(); }).then(function (list) {
    charts = list;
    var box = $('#machines');
    list.forEach(function (c) {
      var m = el('div', { class: 'machine', 'data-machine': c.name });
      m.appendChild(el('h3', {}, c.name));
      m.appendChild(el('div', { class: 'small' }, c.description));
      m.appendChild(el('div', { class: 'small live' }, ''));
      var ch = el('div', { class: 'chart' });
      putSvg(ch, c.svg);
      m.appendChild(ch);
      var links = el('div', { class: 'small' });
      ['svg', 'mermaid', 'json', 'dot'].forEach(function (f) {
        var l = el('a', { href: '/api/chart/' + encodeURIComponent(c.name) + '?format=' + f, target: '_blank' }, f);
        links.appendChild(l); links.appendChild(document.createTextNode(' '));
      });
      m.appendChild(links);
      box.appendChild(m);
    });
    connect();
  });
});
`;

export function dashboardPage(o: { cluster: string }): string {
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>submarine-cluster · ${esc(o.cluster)}</title>
<style>${CSS}</style>
</head>
<body>
<header class="top">
  <h1>submarine-cluster <span id="cluster">${esc(o.cluster)}</span></h1>
  <span id="mode" class="pill">…</span>
  <span class="sum">leader <b id="leader" data-leader="">…</b> · term <b id="term">…</b></span>
  <span id="conn" class="pill">connecting…</span>
  <span class="spacer"></span>
  <button id="kill-leader" class="danger launcher-only" title="kill -9 the current leader">kill leader</button>
  <button id="heal" class="launcher-only" title="remove every injected partition">heal partitions</button>
  <button id="write" class="launcher-only" title="increment demo/clicks through the dashboard's durable outbox">write via outbox</button>
</header>
<main>
  <h2>Members</h2>
  <div id="members"></div>
  <h2>State charts</h2>
  <p class="small">Drawn by Graphviz from the XState machine definitions in <code>machines/</code> (every machine of <code>machines/index.ts</code>); the live state is highlighted, the last role change in orange.</p>
  <div id="machines" class="machines"></div>
  <h2>Metadata center</h2>
  <div class="two">
    <div class="panel">
      <h3 style="margin:0 0 6px;font-size:14px">Servers <span class="small">meta/server/</span></h3>
      <table id="servers"><thead><tr><th>node</th><th>status</th><th>heartbeat age</th><th>CPU</th><th>memory</th><th>interpreters</th></tr></thead><tbody></tbody></table>
      <h3 style="margin:14px 0 6px;font-size:14px">Interpreter processes <span class="small">meta/intp/</span>
        <button id="place-intp" class="launcher-only" title="placement: ask the ONLINE server with the most free memory to start a new python interpreter">start interpreter on idlest server</button></h3>
      <table id="intps"><thead><tr><th>id</th><th>server</th><th>name</th><th>status</th><th>heartbeat age</th><th>address</th><th class="launcher-only"></th></tr></thead><tbody></tbody></table>
    </div>
    <div class="panel">
      <h3 style="margin:0 0 6px;font-size:14px">Recent changes <span class="small" id="watch"></span></h3>
      <ol id="feed" class="feed"></ol>
    </div>
  </div>
  <footer>
    <a href="/metrics">/metrics</a> · <a href="/api/v1/cluster/nodes">/api/v1/cluster/nodes</a> · <a href="/api/v1/cluster/address">/api/v1/cluster/address</a> · <a href="/api/dashboard/state">/api/dashboard/state</a>
  </footer>
</main>
<dialog id="logs">
  <header><span>log of <b id="logs-id"></b></span><span class="spacer"></span><button id="logs-refresh">refresh</button><button id="logs-close">close</button></header>
  <pre></pre>
</dialog>
<div id="toast"></div>
<script>${SCRIPT}</script>
</body>
</html>`;
}
