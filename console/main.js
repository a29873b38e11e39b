// The supervisor console: preact + htm components, Chart.js charts, hash
// routing (#/cases?status=filed is a link a colleague can open). All data
// comes from the /v1 API with the session cookie; the server judges every
// change and its refusal is shown as it came.
import { h, render } from 'preact';
import { useState, useEffect, useRef } from 'preact/hooks';
import htm from 'htm';
import { Chart, BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip } from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, Legend, Tooltip);
const html = htm.bind(h);
const ROLE_RANK = { auxiliary: 0, officer: 1, legal_reviewer: 2, supervisor: 3, admin: 4 };

// ---- session and API ------------------------------------------------------

// tz: the server's time_zone setting (GET /console/api/session); every time
// shown and every date bound sent is in it. Offsets are fixed (no DST).
const S = { me: null, device: null, csrf: '', schema: null, people: {}, tz: { name: 'Asia/Shanghai', utc_offset: '+08:00', offset_minutes: 480 } };

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || '';
    this.field = e.field || '';
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = {};
  if (method !== 'GET') headers['X-CSRF-Token'] = S.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (r.status === 401 && path !== '/console/api/login') { S.me = null; rerender(); }
  if (!r.ok) throw new ApiError(r.status, json || { error: { message: text } });
  return json;
}

// The server's words, as it said them: code, field and message.
function refusal(e) {
  if (!(e instanceof ApiError)) return String(e);
  return `${e.status} ${e.code}${e.field ? ` (${e.field})` : ''}: ${e.message}`;
}

// One changeset from the console's own device: its next seq comes from /v1/me.
async function pushChanges(changes) {
  const me = await api('GET', '/v1/me');
  let seq = me.device.next_changeset_seq || 1;
  const body = () => ({ device_id: me.device.device_id, changeset_seq: seq, schema_version: S.schema.schema_version, changes });
  try {
    return await api('POST', '/v1/sync/push', body());
  } catch (e) {
    if (e.code === 'changeset_gap' && e.body && e.body.error && e.body.error.expected) {
      seq = e.body.error.expected;
      return await api('POST', '/v1/sync/push', body());
    }
    throw e;
  }
}

function randomHex(n) {
  const b = new Uint8Array(n);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function newId() {
  // 26 characters, time first, like the phones' ids.
  const t = Date.now().toString(36).toUpperCase().padStart(10, '0');
  return (t + randomHex(8).toUpperCase()).slice(0, 26);
}

// ---- labels ---------------------------------------------------------------

// "YYYY-MM-DD HH:MM" of an instant in the configured zone.
function zoned(d) { return new Date(d.getTime() + S.tz.offset_minutes * 60000).toISOString(); }
function time(s) {
  if (!s) return '';
  const d = new Date(s);
  return isNaN(d) ? String(s) : zoned(d).slice(0, 16).replace('T', ' ');
}
// The instant (RFC 3339) of midnight of a date YYYY-MM-DD in the zone, and
// of a wall-clock "YYYY-MM-DDTHH:MM" there.
function dayStart(d) { return `${d}T00:00:00${S.tz.utc_offset}`; }
function wallTime(v) { return new Date(`${v}:00${S.tz.utc_offset}`).toISOString(); }
function toWall(s) { return s ? zoned(new Date(s)).slice(0, 16) : ''; }
function person(id) {
  if (id === null || id === undefined || id === '') return '';
  const p = S.people[id];
  return p ? p.name || p.username : id;
}
function typeLabel(name) {
  const t = (S.schema.types || []).find((x) => x.name === name || x.code === name);
  return t ? t.label : name || '';
}
function statusLabel(st, procedure) {
  const procs = S.schema.procedures;
  if (procedure && procs[procedure] && procs[procedure].states[st]) return procs[procedure].states[st].label;
  for (const p of Object.values(procs)) if (p.states[st]) return p.states[st].label;
  return st || '';
}
function allStates() {
  const seen = new Map();
  for (const p of Object.values(S.schema.procedures)) for (const [k, v] of Object.entries(p.states)) if (!seen.has(k)) seen.set(k, v.label);
  return [...seen.entries()];
}
function enumLabel(field, v) {
  const f = S.schema.fields[field];
  return (f && f.value_labels && f.value_labels[v]) || v;
}
function roleLabel(r) {
  const x = (S.schema.roles || []).find((y) => y.name === r);
  return x ? x.label : r;
}
function fieldLabel(k) {
  const f = S.schema.fields[k];
  return (f && f.label) || { status: '状态', type: '案件类型', voided: '已撤销', version: '版本' }[k] || k;
}
function value(def, v, key) {
  if (v === null || v === undefined) return '';
  if (!def) return typeof v === 'object' ? JSON.stringify(v) : String(v);
  switch (def.type) {
    case 'enum': return (def.value_labels && def.value_labels[v]) || String(v);
    case 'bool': return v ? '是' : '否';
    case 'time': return time(v);
    case 'user': return person(v);
    case 'object':
      return Object.entries(v).map(([k, x]) => `${(def.members && def.members[k] && def.members[k].label) || k}: ${value(def.members && def.members[k], x, k)}`).join('；');
    case 'list':
      return v.map((x) => value(def.items, x)).join('、');
    default:
      if (def.type_code) return `${typeLabel(v)} (${v})`;
      if (key === 'fine_amount' || def.decimals) return Number(v).toFixed(2);
      return String(v);
  }
}

// ---- routing --------------------------------------------------------------

function route() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, qs] = raw.split('?');
  return { path, q: new URLSearchParams(qs || '') };
}
function go(path, q) {
  const s = q && [...q.entries()].filter(([, v]) => v !== '').length ? `?${new URLSearchParams([...q.entries()].filter(([, v]) => v !== ''))}` : '';
  location.hash = `#${path}${s}`;
}
let rerender = () => {};

// ---- shell ----------------------------------------------------------------

function Login({ onDone }) {
  const [err, setErr] = useState('');
  async function submit(ev) {
    ev.preventDefault();
    const f = ev.target;
    const username = f.username.value.trim();
    const key = `casesync.console.device.${username}`;
    let device = localStorage.getItem(key);
    if (!device) { device = `console-${randomHex(8)}`; localStorage.setItem(key, device); }
    try {
      const r = await fetch('/console/api/login', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json', 'X-Casesync-Console': '1' }, body: JSON.stringify({ username, password: f.password.value, device_id: device }) });
      const j = await r.json().catch(() => null);
      if (!r.ok) throw new ApiError(r.status, j);
      S.csrf = j.csrf;
      onDone();
    } catch (e) { setErr(refusal(e)); }
  }
  return html`<form class="login" onSubmit=${submit}>
    <h2>城管执法案件管理台</h2>
    <label>用户名<input name="username" autocomplete="username" required autofocus /></label>
    <label>密码<input name="password" type="password" autocomplete="current-password" required /></label>
    ${err && html`<div class="error" role="alert">${err}</div>`}
    <button type="submit">登录</button>
  </form>`;
}

const NAV = [
  ['/', '工作台'], ['/cases', '案件'], ['/supervision', '督办'], ['/conflicts', '冲突与隔离'], ['/devices', '设备'], ['/hotline', '热线导入', 'supervisor'],
  ['/repeat', '黑名单', 'supervisor'], ['/people', '人员', 'admin'], ['/report', '月报'],
];

function Shell({ r }) {
  async function logout() {
    try { await api('POST', '/console/api/logout'); } catch (_) { /* gone anyway */ }
    S.me = null; rerender();
  }
  const page = pageFor(r);
  return html`<div>
    <header class="top">
      <h1>城管执法案件管理台</h1>
      <nav aria-label="主菜单">${NAV.filter((n) => !n[2] || ROLE_RANK[S.me.role] >= ROLE_RANK[n[2]]).map(([p, l]) => html`<a href=${`#${p}`} class=${(r.path === p || (p !== '/' && r.path.startsWith(p)) || (p === '/cases' && r.path.startsWith('/case/'))) ? 'on' : ''}>${l}</a>`)}</nav>
      <span class="who">${S.me.name || S.me.username} · ${roleLabel(S.me.role)} · ${S.me.unit}<button type="button" onClick=${logout}>退出</button></span>
    </header>
    <main>${page}</main>
  </div>`;
}

function pageFor(r) {
  if (ROLE_RANK[S.me.role] < ROLE_RANK.legal_reviewer)
    return html`<div class="error" role="alert" id="no-access">管理台仅供中队长、法制审核员和管理员使用。您的账号（${roleLabel(S.me.role)}）请使用执法终端。</div>`;
  if (r.path === '/') return html`<${Dashboard} />`;
  if (r.path === '/cases') return html`<${Cases} q=${r.q} />`;
  if (r.path.startsWith('/case/')) return html`<${CaseDetail} id=${decodeURIComponent(r.path.slice(6))} key=${r.path} />`;
  if (r.path === '/new') return html`<${NewCase} />`;
  if (r.path === '/conflicts') return html`<${Conflicts} />`;
  if (r.path === '/devices') return html`<${Devices} />`;
  if (r.path === '/people') return html`<${People} />`;
  if (r.path === '/report') return html`<${Report} q=${r.q} />`;
  if (r.path === '/supervision') return html`<${Supervision} q=${r.q} />`;
  if (r.path === '/hotline') return html`<${HotlineImport} />`;
  if (r.path === '/repeat') return html`<${Repeat} q=${r.q} />`;
  return html`<p>没有这个页面。<a href="#/">回到工作台</a></p>`;
}

function useLoad(fn, deps) {
  const [st, set] = useState({ data: null, err: '' });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    fn().then((data) => live && set({ data, err: '' }), (e) => live && set({ data: null, err: refusal(e) }));
    return () => { live = false; };
  }, [...deps, tick]);
  return [st.data, st.err, () => setTick((t) => t + 1)];
}

// ---- dates ----------------------------------------------------------------

// YYYY-MM-DD of "now" in the configured zone, and month arithmetic on "YYYY-MM".
function todayCN() { return zoned(new Date()).slice(0, 10); }
function monthCN() { return todayCN().slice(0, 7); }
function addMonth(m, n) {
  let [y, mo] = m.split('-').map(Number);
  mo += n;
  while (mo > 12) { mo -= 12; y++; }
  while (mo < 1) { mo += 12; y--; }
  return `${y}-${String(mo).padStart(2, '0')}`;
}
function addDay(d, n) {
  const t = new Date(`${d}T00:00:00Z`);
  t.setUTCDate(t.getUTCDate() + n);
  return t.toISOString().slice(0, 10);
}
// from=&to= of two dates, as midnights in the configured zone.
function range(from, to) { return new URLSearchParams({ from: dayStart(from), to: dayStart(to) }).toString(); }
function pct(r) { return r === null || r === undefined ? '—' : `${(r * 100).toFixed(1)}%`; }

// ---- 工作台 ----------------------------------------------------------------

function BarChart({ labels, sets, title }) {
  const ref = useRef(null);
  useEffect(() => {
    const c = new Chart(ref.current, {
      type: 'bar',
      data: { labels, datasets: sets.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: ['#0b5cad', '#4caf7a', '#f0a500'][i % 3] })) },
      options: { animation: false, maintainAspectRatio: false, responsive: true, plugins: { title: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
    });
    return () => c.destroy();
  }, [JSON.stringify([labels, sets])]);
  return html`<div class="chart"><canvas ref=${ref} role="img" aria-label=${title}></canvas></div>`;
}

function Dashboard() {
  const m = monthCN();
  const [tick, setTick] = useState(0);
  useEffect(() => { const t = setInterval(() => setTick((x) => x + 1), 30000); return () => clearInterval(t); }, []);
  const [d, err] = useLoad(async () => {
    const [today, cur, prev, grid, conflicts, rejections, svOverdue] = await Promise.all([
      api('GET', `/v1/stats?${range(todayCN(), addDay(todayCN(), 1))}`),
      api('GET', `/v1/stats?${range(`${m}-01`, `${addMonth(m, 1)}-01`)}&group_by=type`),
      api('GET', `/v1/stats?${range(`${addMonth(m, -1)}-01`, `${m}-01`)}`),
      api('GET', `/v1/stats?${range(`${m}-01`, `${addMonth(m, 1)}-01`)}&group_by=grid`),
      api('GET', '/v1/conflicts?state=open'),
      api('GET', '/v1/rejections'),
      // An admin's figures are the city's; 督办 lists are a unit's (the 督办 page names one).
      S.me.role === 'admin' ? null : api('GET', '/v1/supervision?state=overdue'),
    ]);
    return { today, cur, prev, grid, conflicts: (conflicts.items || conflicts).length, rejections: (rejections.items || rejections).length, svOverdue: svOverdue ? (svOverdue.items || []).length : '—' };
  }, [tick]);
  if (err) return html`<div class="error">${err}</div>`;
  if (!d) return html`<p>正在加载…</p>`;
  const card = (n, l, warn, href) => html`<a class=${`card${warn && n ? ' warn' : ''}`} href=${href || '#/'}><div class="n">${n}</div><div class="l">${l}</div></a>`;
  return html`<div id="dashboard">
    <h2>工作台 <span class="muted">${S.me.unit} · ${todayCN()} · 每30秒自动刷新</span></h2>
    <div class="cards">
      ${card(d.today.total.opened, '今日新增', false, `#/cases?opened_from=${todayCN()}&opened_to=${todayCN()}`)}
      ${card(d.cur.total.opened, '本月登记', false, `#/cases?opened_from=${m}-01&opened_to=${addDay(`${addMonth(m, 1)}-01`, -1)}`)}
      ${card(d.cur.total.overdue, '超期案件', true, '#/cases?overdue=true')}
      ${card(d.cur.evidence_missing, '证据未上传', true, '#/devices')}
      ${card(d.conflicts, '待处理冲突', true, '#/conflicts')}
      ${card(d.rejections, '隔离的变更', true, '#/conflicts')}
    </div>
    <div class="cards">
      <div class="card"><div class="n" id="rate-this">${pct(d.cur.total.closure_rate)}</div><div class="l">本月办结率</div></div>
      <div class="card"><div class="n" id="rate-last">${pct(d.prev.total.closure_rate)}</div><div class="l">上月办结率</div></div>
      <div class="card"><div class="n" id="dash-first-offence">${d.cur.total.first_offence ?? 0}</div><div class="l">本月首违不罚</div></div>
      <div class="card"><div class="n" id="dash-disposal">${pct(d.cur.total.disposal_rate)}</div><div class="l">本月处置率</div></div>
      <div class="card"><div class="n" id="dash-disposal-on-time">${pct(d.cur.total.disposal_on_time_rate)}</div><div class="l">本月按时处置率</div></div>
    </div>
    <div class="cards" id="dash-workflows">
      <a class="card" href="#/supervision"><div class="n" id="dash-sv">${d.cur.total.sv_issued ?? 0} / ${d.cur.total.sv_done ?? 0}</div><div class="l">本月督办件 / 按期落实</div></a>
      <a class=${`card${d.svOverdue > 0 ? ' warn' : ''}`} href="#/supervision?state=overdue"><div class="n" id="dash-sv-overdue">${d.svOverdue}</div><div class="l">督办逾期未落实</div></a>
      <div class="card"><div class="n" id="dash-reply-rate">${pct(d.cur.total.reply_on_time_rate)}</div><div class="l">本月热线按时答复率</div></div>
      <div class="card"><div class="n" id="dash-satisfaction">${pct(d.cur.total.satisfaction_rate)}</div><div class="l">本月回访满意率</div></div>
    </div>
    <div class="charts">
      <div><h3>本月按案件类型</h3><${BarChart} title="本月按案件类型" labels=${d.cur.groups.map((g) => typeLabel(g.key))} sets=${[{ label: '登记', data: d.cur.groups.map((g) => g.opened) }, { label: '办结', data: d.cur.groups.map((g) => g.closed) }]} /></div>
      <div><h3>本月按单元网格</h3><${BarChart} title="本月按单元网格" labels=${d.grid.groups.map((g) => g.key || '未定')} sets=${[{ label: '登记', data: d.grid.groups.map((g) => g.opened) }, { label: '超期', data: d.grid.groups.map((g) => g.overdue) }]} /></div>
    </div>
  </div>`;
}

// ---- 案件 ------------------------------------------------------------------

// Every filter is the server's (GET /v1/cases): a page holds `limit` matching
// cases and the CSV is exactly the filtered set. The page's date ranges are
// whole days in the configured zone, the last day included: "to" is sent as
// the midnight after it.
const CASE_FILTERS = ['status', 'type', 'grid', 'assignee', 'source', 'procedure', 'overdue', 'q'];
const DATE_FILTERS = ['opened_from', 'opened_to', 'updated_from', 'updated_to'];

function caseQuery(q, limit, cursor) {
  const p = new URLSearchParams();
  for (const k of CASE_FILTERS) if (q.get(k)) p.set(k, q.get(k));
  for (const k of DATE_FILTERS) if (q.get(k)) p.set(k, dayStart(k.endsWith('_to') ? addDay(q.get(k), 1) : q.get(k)));
  p.set('limit', String(limit));
  if (cursor) p.set('cursor', cursor);
  return p;
}
const CSV_COLS = [
  ['案件编号', (c) => c.fields.case_no || ''], ['案件类型', (c) => typeLabel(c.type)], ['办案程序', (c) => enumLabel('procedure', c.fields.procedure)],
  ['状态', (c) => statusLabel(c.status, c.fields.procedure) + (c.voided ? '（已撤销）' : '')], ['案件来源', (c) => enumLabel('source', c.fields.source)],
  ['中队', (c) => c.fields.unit || ''], ['单元网格', (c) => c.fields.grid || ''], ['主办队员', (c) => person(c.fields.assignee)],
  ['地址', (c) => c.fields.address || ''], ['问题描述', (c) => c.fields.description || ''], ['当事人', (c) => (c.fields.party && c.fields.party.name) || ''],
  ['罚款金额(元)', (c) => (c.fields.fine_amount === undefined || c.fields.fine_amount === null ? '' : Number(c.fields.fine_amount).toFixed(2))],
  ['发生时间', (c) => time(c.fields.occurred_at)], ['登记时间', (c) => time(c.created_at)], ['更新时间', (c) => time(c.updated_at)], ['案件ID', (c) => c.id],
];
function csvCell(v) {
  let s = String(v ?? '');
  if (/^'*[=+\-@\t\r]/.test(s)) s = `'${s}`; // a spreadsheet shows it as text, never runs it
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
function download(name, rows) {
  const text = `\ufeff${rows.map((r) => r.map(csvCell).join(',')).join('\r\n')}\r\n`;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

const PAGE_ROWS = [20, 50, 100];

function Cases({ q }) {
  const [cursors, setCursors] = useState(['']);
  const [sort, setSort] = useState({ k: '', dir: 1 });
  const [busy, setBusy] = useState('');
  const qs = q.toString();
  useEffect(() => setCursors(['']), [qs]);
  const cursor = cursors[cursors.length - 1];
  const rows = Math.min(500, Math.max(1, Number(q.get('limit')) || 50));
  const [page, err] = useLoad(() => api('GET', `/v1/cases?${caseQuery(q, rows, cursor)}`), [qs, cursor]);
  function apply(ev) {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const n = new URLSearchParams();
    for (const [k, v] of f.entries()) if (v) n.set(k, v);
    go('/cases', n);
  }
  async function exportCsv() {
    setBusy('正在导出…');
    try {
      const rows = [CSV_COLS.map((c) => c[0])];
      let next = '';
      for (let i = 0; i < 2000; i++) {
        const p = await api('GET', `/v1/cases?${caseQuery(q, 500, next)}`);
        for (const c of p.items) rows.push(CSV_COLS.map((col) => col[1](c)));
        if (!p.next) break;
        next = p.next;
      }
      download(`案件_${todayCN()}.csv`, rows);
      setBusy(`已导出 ${rows.length - 1} 件`);
    } catch (e) { setBusy(refusal(e)); }
  }
  let items = page ? page.items : [];
  if (sort.k) {
    const col = CSV_COLS.find((c) => c[0] === sort.k);
    items = [...items].sort((a, b) => String(col[1](a)).localeCompare(String(col[1](b)), 'zh-CN') * sort.dir);
  }
  const shown = ['案件编号', '案件类型', '状态', '案件来源', '单元网格', '主办队员', '地址', '更新时间'];
  const sel = (name, opts) => html`<select name=${name} value=${q.get(name) || ''}><option value="">全部</option>${opts.map(([v, l]) => html`<option value=${v} selected=${q.get(name) === v}>${l}</option>`)}</select>`;
  const officers = Object.values(S.people).filter((p) => ROLE_RANK[p.role] >= ROLE_RANK.officer);
  return html`<div id="cases">
    <h2>案件 <a class="no-print" href="#/new"><button type="button">立案登记</button></a></h2>
    <form class="filters" onSubmit=${apply} aria-label="筛选">
      <label>状态${sel('status', allStates())}</label>
      <label>案件类型${sel('type', S.schema.types.map((t) => [t.name, t.label]))}</label>
      <label>单元网格<input name="grid" value=${q.get('grid') || ''} size="16" /></label>
      <label>主办队员${sel('assignee', officers.map((p) => [p.id, p.name || p.username]))}</label>
      <label>案件来源${sel('source', Object.entries(S.schema.fields.source.value_labels))}</label>
      <label>办案程序${sel('procedure', Object.entries(S.schema.fields.procedure.value_labels))}</label>
      <label>超期${sel('overdue', [['true', '仅超期'], ['false', '未超期']])}</label>
      <label>登记日期 从<input type="date" name="opened_from" value=${q.get('opened_from') || ''} /></label>
      <label>至<input type="date" name="opened_to" value=${q.get('opened_to') || ''} /></label>
      <label>更新日期 从<input type="date" name="updated_from" value=${q.get('updated_from') || ''} /></label>
      <label>至<input type="date" name="updated_to" value=${q.get('updated_to') || ''} /></label>
      <label>关键词<input name="q" value=${q.get('q') || ''} size="12" /></label>
      <label>每页<select name="limit">${[...new Set([...PAGE_ROWS, rows])].sort((a, b) => a - b).map((n) => html`<option value=${n} selected=${n === rows}>${n}</option>`)}</select></label>
      <button type="submit">筛选</button>
      <button type="button" class="secondary" onClick=${() => go('/cases')}>清除</button>
      <button type="button" class="secondary" id="csv" onClick=${exportCsv}>导出 CSV</button>
      ${busy && html`<span id="csv-status">${busy}</span>`}
    </form>
    ${err && html`<div class="error">${err}</div>`}
    <table id="case-table">
      <thead><tr>${shown.map((k) => html`<th class="sort" tabindex="0" aria-sort=${sort.k === k ? (sort.dir > 0 ? 'ascending' : 'descending') : 'none'} onClick=${() => setSort({ k, dir: sort.k === k ? -sort.dir : 1 })}>${k}${sort.k === k ? (sort.dir > 0 ? ' ▲' : ' ▼') : ''}</th>`)}</tr></thead>
      <tbody>${items.map((c) => html`<tr data-id=${c.id}>${shown.map((k, i) => {
        const v = CSV_COLS.find((x) => x[0] === k)[1](c);
        return i === 0 ? html`<td><a href=${`#/case/${encodeURIComponent(c.id)}`}>${v || '（未编号）'}</a></td>` : html`<td>${v}</td>`;
      })}</tr>`)}</tbody>
    </table>
    ${page && !items.length && html`<p class="muted">没有符合条件的案件。</p>`}
    <div class="pager">
      <button type="button" class="secondary" disabled=${cursors.length < 2} onClick=${() => setCursors(cursors.slice(0, -1))}>上一页</button>
      <span>第 ${cursors.length} 页</span>
      <button type="button" class="secondary" id="next-page" disabled=${!page || !page.next} onClick=${() => setCursors([...cursors, page.next])}>下一页</button>
    </div>
  </div>`;
}

// ---- 案件详情 --------------------------------------------------------------

function mayTransition(t, rec) {
  const role = S.me.role === 'admin' ? 'supervisor' : S.me.role;
  const roles = t.roles || Object.keys(ROLE_RANK);
  if (t.exact) {
    if (!roles.includes(role)) return false;
    const w = t.role_when && t.role_when[role];
    if (w && w.not_equals !== undefined && rec.fields[w.field] === w.not_equals) return false;
    if (w && w.equals !== undefined && rec.fields[w.field] !== w.equals) return false;
    return true;
  }
  return ROLE_RANK[role] >= Math.min(...roles.map((x) => ROLE_RANK[x]));
}
function closedStatus(rec) {
  const p = S.schema.procedures[rec.fields.procedure];
  return rec.voided || (p && (p.closed || []).includes(rec.status));
}

// ---- editing and 更正 -----------------------------------------------------------
// What the page offers follows the schema's write rules (GET /v1/schema):
// write.update is the weakest role that may change a field after create;
// write.frozen_from the state from which only a correction (op correct, by
// corrections.role, with a reason) changes it. "From" is read on the
// procedure's main path. The server judges every change all the same.

const EDIT_POLICIES = new Set(['lww', 'manual', 'union']);
function roleAtLeast(need) { return !need || ROLE_RANK[S.me.role] >= ROLE_RANK[need]; }
function frozenNow(def, rec) {
  const st = def.write && def.write.frozen_from;
  const p = S.schema.procedures[rec.fields.procedure];
  if (!st || !p) return false;
  if (rec.status === st) return true;
  const a = p.main_path.indexOf(rec.status), b = p.main_path.indexOf(st);
  return a >= 0 && b >= 0 && a >= b;
}
function writable(def) {
  if (!def || !def.type || !EDIT_POLICIES.has(def.policy)) return false;
  if (def.type === 'list' && !(def.items && (def.items.type === 'enum' || def.items.type === 'string'))) return false;
  return roleAtLeast(def.write && def.write.update);
}
function mayCorrect() { return !!S.schema.corrections && roleAtLeast(S.schema.corrections.role); }

// One control for a value of a field definition; onChange gets the new value (null clears).
function ValueEditor({ def, value, onChange, name, rec }) {
  const label = def.label || name;
  switch (def.type) {
    case 'enum':
      return html`<select name=${name} aria-label=${label} onChange=${(e) => onChange(e.target.value === '' ? null : e.target.value)}>
        <option value="" selected=${value === undefined || value === null}>（空）</option>
        ${(def.values || []).map((v) => html`<option value=${v} selected=${v === value}>${(def.value_labels && def.value_labels[v]) || v}</option>`)}</select>`;
    case 'bool':
      return html`<select name=${name} aria-label=${label} onChange=${(e) => onChange(e.target.value === '' ? null : e.target.value === 'true')}>
        <option value="" selected=${value === undefined || value === null}>（空）</option>
        <option value="true" selected=${value === true}>是</option><option value="false" selected=${value === false}>否</option></select>`;
    case 'number': case 'integer':
      return html`<input name=${name} aria-label=${label} type="number" step="any" value=${value ?? ''} onInput=${(e) => onChange(e.target.value === '' ? null : Number(e.target.value))} />`;
    case 'time':
      return html`<input name=${name} aria-label=${label} type="datetime-local" value=${toWall(value)} onInput=${(e) => onChange(e.target.value ? wallTime(e.target.value) : null)} />`;
    case 'user': {
      const unit = rec && rec.fields.unit;
      const people = Object.values(S.people).filter((p) => ROLE_RANK[p.role] >= ROLE_RANK.officer && p.role !== 'admin' && !p.disabled && (!unit || p.unit === unit));
      return html`<select name=${name} aria-label=${label} onChange=${(e) => onChange(e.target.value || null)}>
        <option value="" selected=${!value}>（空）</option>${people.map((p) => html`<option value=${p.id} selected=${p.id === value}>${p.name || p.username}</option>`)}</select>`;
    }
    case 'text':
      return html`<textarea name=${name} aria-label=${label} rows="3" cols="40" value=${value ?? ''} onInput=${(e) => onChange(e.target.value === '' ? null : e.target.value)}></textarea>`;
    case 'object': {
      const v = value && typeof value === 'object' ? value : {};
      return html`<fieldset class="obj"><legend>${label}</legend>${Object.entries(def.members || {}).map(([k, m]) => html`<label>${m.label || k}
        <${ValueEditor} def=${m} name=${`${name}.${k}`} value=${v[k]} rec=${rec} onChange=${(x) => { const n = { ...v }; if (x === null) delete n[k]; else n[k] = x; onChange(Object.keys(n).length ? n : null); }} /></label>`)}</fieldset>`;
    }
    case 'list':
      if (def.items.type === 'enum') {
        const have = new Set(value || []);
        return html`<span class="checks" role="group" aria-label=${label}>${def.items.values.map((x) => html`<label><input type="checkbox" name=${name} value=${x} checked=${have.has(x)}
          onChange=${(e) => { const n = new Set(have); if (e.target.checked) n.add(x); else n.delete(x); onChange(def.items.values.filter((y) => n.has(y))); }} />${(def.items.value_labels && def.items.value_labels[x]) || x}</label>`)}</span>`;
      }
      return html`<input name=${name} aria-label=${label} value=${(value || []).join('，')} onInput=${(e) => onChange(e.target.value.split(/[,，]\s*/).map((x) => x.trim()).filter(Boolean))} />`;
    default:
      return html`<input name=${name} aria-label=${label} value=${value ?? ''} size="30" onInput=${(e) => onChange(e.target.value === '' ? null : e.target.value)} />`;
  }
}

// 修改 (op update) of a field this role may write and that is not frozen, or
// 更正 (op correct) of any field this role may write, with a reason.
function FieldChange({ rec, mode, act }) {
  const correcting = mode === 'correct';
  const names = Object.keys(S.schema.fields).filter((k) => writable(S.schema.fields[k]) && (correcting || !frozenNow(S.schema.fields[k], rec)));
  const [field, setField] = useState(names[0] || '');
  const [val, setVal] = useState(undefined);
  const [reason, setReason] = useState('');
  if (!names.length) return null;
  const def = S.schema.fields[field];
  const cur = val === undefined ? rec.fields[field] : val;
  function submit(ev) {
    ev.preventDefault();
    const v = cur === undefined ? null : cur;
    if (correcting) act({ op: 'correct', set: { [field]: v }, reason }, S.schema.corrections.label || '更正');
    else act({ op: 'update', set: { [field]: v } }, '修改');
  }
  return html`<form class="change" id=${correcting ? 'correct-field' : 'edit-field'} onSubmit=${submit} aria-label=${correcting ? '更正' : '修改字段'}>
    <strong>${correcting ? '更正' : '修改'}</strong>
    <select name="field" aria-label="字段" onChange=${(e) => { setField(e.target.value); setVal(undefined); }}>
      ${names.map((k) => html`<option value=${k} selected=${k === field}>${fieldLabel(k)}${frozenNow(S.schema.fields[k], rec) ? '（已冻结）' : ''}</option>`)}</select>
    <span class="muted">现值：${value(def, rec.fields[field], field) || '（空）'}</span>
    <${ValueEditor} key=${field} def=${def} name="value" value=${cur} rec=${rec} onChange=${setVal} />
    ${correcting && html`<input name="reason" required placeholder="更正理由（必填）" aria-label="更正理由" size="30" value=${reason} onInput=${(e) => setReason(e.target.value)} />`}
    <button type="submit" class=${correcting ? 'danger' : 'secondary'}>${correcting ? '提交更正' : '保存修改'}</button>
  </form>`;
}

function CaseDetail({ id }) {
  const [msg, setMsg] = useState(null);
  const [d, err, reload] = useLoad(async () => {
    const [rec, hist, missing] = await Promise.all([
      api('GET', `/v1/cases/${encodeURIComponent(id)}`),
      api('GET', `/v1/cases/${encodeURIComponent(id)}/history`),
      api('GET', '/v1/evidence/missing').catch(() => ({ items: [] })),
    ]);
    // Which bytes have arrived: HEAD of each blob (404: not uploaded yet).
    const have = {};
    await Promise.all((rec.fields.evidence || []).map(async (e) => {
      const r = await fetch(`/v1/blobs/${e.sha256}`, { method: 'HEAD', credentials: 'same-origin' });
      have[e.sha256] = r.ok;
    }));
    // The orders' states (open, 逾期, 已落实, 逾期落实) are the server's.
    const orders = (rec.fields.supervision || []).length
      ? (await api('GET', `/v1/supervision?state=all${unitParam(rec.fields.unit)}`).catch(() => ({ items: [] }))).items.filter((o) => o.case_id === rec.id) : [];
    return { rec, hist: hist.items || hist.entries || hist, missing: missing.items || missing, have, orders };
  }, [id]);
  if (err) return html`<div class="error" role="alert">${err}</div>`;
  if (!d) return html`<p>正在加载…</p>`;
  const { rec } = d;
  const proc = S.schema.procedures[rec.fields.procedure] || { states: {}, main_path: [], transitions: [] };
  async function act(change, what) {
    setMsg(null);
    try {
      const r = await pushChanges([{ record_id: rec.id, base_version: rec.version, at: new Date().toISOString(), ...change }]);
      const res = r.results[0];
      if (res.status === 'rejected') setMsg({ bad: `服务器拒绝了${what}：${res.error.code}${res.error.field ? ` (${res.error.field})` : ''}: ${res.error.message}` });
      else if (res.status === 'conflict') setMsg({ bad: `${what}与他人的修改冲突，已转入冲突与隔离（${(res.conflicts || []).map((c) => c.id || c).join(', ')}）` });
      else { setMsg({ ok: `${what}已完成（${res.status}，版本 ${res.version}）` }); reload(); }
    } catch (e) { setMsg({ bad: `服务器拒绝了${what}：${refusal(e)}` }); }
  }
  const transitions = (proc.transitions || []).filter((t) => !rec.voided && t.from.includes(rec.status) && mayTransition(t, rec));
  const supervisor = ROLE_RANK[S.me.role] >= ROLE_RANK.supervisor;
  const evidence = rec.fields.evidence || [];
  const missingSet = new Set((d.missing || []).map((m) => m.sha256));
  // Fields with a panel of their own (督办, 热线闭环, 执行, 公示) are shown there.
  const skip = new Set(['evidence', 'notes', 'documents', 'supervision', 'supervision_replies', 'ticket_no', 'complainant', 'reply_due', 'reply',
    'callback', 'payment', 'court_application', 'court_outcome', 'close_reason', 'rectification', 'publication']);
  const officers = Object.values(S.people).filter((p) => ROLE_RANK[p.role] >= ROLE_RANK.officer && p.role !== 'admin' && !p.disabled && p.unit === rec.fields.unit);
  const idx = proc.main_path.indexOf(rec.status);
  return html`<div id="case-detail">
    <h2>${typeLabel(rec.type)} · ${rec.fields.case_no || '（未编号）'} <span class="muted">${statusLabel(rec.status, rec.fields.procedure)}${rec.voided ? ' · 已撤销' : ''} · 版本 ${rec.version}</span></h2>
    <ol class="steps" aria-label="办案进度">${proc.main_path.map((s, i) => html`<li class=${s === rec.status ? 'now' : i < idx ? 'done' : ''}>${proc.states[s].label}</li>`)}
      ${idx < 0 && html`<li class="now">${statusLabel(rec.status, rec.fields.procedure)}</li>`}</ol>
    <div class="actions no-print" id="actions">
      <strong>可办理：</strong>
      ${transitions.map((t) => html`<button type="button" data-to=${t.to} onClick=${() => act({ op: 'transition', to: t.to }, t.label)}>${t.label}</button>`)}
      ${supervisor && !closedStatus(rec) && officers.length > 0 && html`<form onSubmit=${(ev) => { ev.preventDefault(); act({ op: 'update', set: { assignee: ev.target.assignee.value } }, '指派'); }}>
        <select name="assignee" aria-label="主办队员">${officers.map((p) => html`<option value=${p.id} selected=${p.id === rec.fields.assignee}>${p.name || p.username}</option>`)}</select>
        <button type="submit" class="secondary">指派</button></form>`}
      ${supervisor && !rec.voided && html`<form onSubmit=${(ev) => { ev.preventDefault(); act({ op: 'void', reason: ev.target.reason.value }, '撤销'); }}>
        <input name="reason" placeholder="撤销理由" required aria-label="撤销理由" /> <button type="submit" class="danger">撤销</button></form>`}
      ${!transitions.length && !supervisor && html`<span class="muted">当前状态下没有您可办理的操作。</span>`}
    </div>
    ${!closedStatus(rec) && html`<div class="actions no-print" id="changes">
      <${FieldChange} key=${`e${rec.version}`} rec=${rec} mode="edit" act=${act} />
      ${mayCorrect() && html`<${FieldChange} key=${`c${rec.version}`} rec=${rec} mode="correct" act=${act} />`}
    </div>`}
    ${msg && html`<div class=${msg.ok ? 'ok' : 'error'} role="alert" id="action-result">${msg.ok || msg.bad}</div>`}
    <div class="grid2">
      <div>
        <h3>案件信息</h3>
        <table id="fields"><tbody>
          <tr><th>案件类型</th><td>${typeLabel(rec.type)}</td></tr>
          <tr><th>状态</th><td>${statusLabel(rec.status, rec.fields.procedure)}</td></tr>
          ${Object.keys(S.schema.fields).filter((k) => !skip.has(k) && rec.fields[k] !== undefined).map((k) => html`<tr><th>${fieldLabel(k)}</th><td>${value(S.schema.fields[k], rec.fields[k], k)}</td></tr>`)}
          <tr><th>登记</th><td>${time(rec.created_at)} · ${person(rec.created_by)}</td></tr>
          <tr><th>更新</th><td>${time(rec.updated_at)}</td></tr>
        </tbody></table>
        <h3>备注</h3>
        ${(rec.fields.notes || []).map((n) => html`<p>${n.text} <span class="muted">— ${person(n.author)} ${time(n.at)}</span></p>`)}
        ${supervisor && html`<form class="no-print" onSubmit=${(ev) => { ev.preventDefault(); act({ op: 'update', append: { notes: [{ id: `n-${randomHex(6)}`, text: ev.target.note.value, at: new Date().toISOString() }] } }, '添加备注'); ev.target.reset(); }}>
          <input name="note" required aria-label="备注" size="40" /> <button type="submit" class="secondary">添加备注</button></form>`}
        <${CaseSupervision} rec=${rec} orders=${d.orders} act=${act} />
        <${CaseHotline} rec=${rec} />
        <${CaseEnforcement} rec=${rec} />
        <${CasePublication} rec=${rec} />
        <${PartyHistory} rec=${rec} />
        <h3>法律文书</h3>
        ${(rec.fields.documents || []).length ? html`<ul>${rec.fields.documents.map((x) => html`<li>${x.doc_type} ${x.doc_no || ''}${x.at ? ` ${time(x.at)}` : ''}</li>`)}</ul>` : html`<p class="muted">无</p>`}
      </div>
      <div>
        <h3>证据（${evidence.length}）</h3>
        <div class="evidence">${evidence.map((e) => {
          const src = `/v1/blobs/${e.sha256}`;
          const late = missingSet.has(e.sha256);
          const miss = late || !d.have[e.sha256];
          const kind = e.kind || (e.mime || '').split('/')[0];
          const media = miss ? html`<p class="missing">文件未上传${late ? '（已逾期）' : ''}</p>`
            : kind === 'photo' || (e.mime || '').startsWith('image/') ? html`<img src=${src} alt=${`证据 ${e.id}`} loading="lazy" />`
              : kind === 'video' || (e.mime || '').startsWith('video/') ? html`<video src=${src} controls preload="metadata" data-sha=${e.sha256}></video>`
                : kind === 'audio' || (e.mime || '').startsWith('audio/') ? html`<audio src=${src} controls preload="metadata"></audio>`
                  : html`<a href=${src}>下载</a>`;
          return html`<figure>${media}<figcaption>${enumLabel('evidence', kind)} · ${e.size ?? ''} 字节<br />SHA-256 ${e.sha256}</figcaption></figure>`;
        })}</div>
        <h3>办案过程</h3>
        <ol class="timeline" id="timeline">${(d.hist || []).map((x) => html`<li class=${x.op} data-op=${x.op}>
          <div class="meta">${time(x.at)} · ${person(x.user_id)} · 设备 ${x.device_id} · ${{ create: '登记', update: '修改', transition: '流转', void: '撤销', conflict: '冲突', resolve: '裁决', correct: '更正' }[x.op] || x.op}</div>
          ${Object.entries(x.fields || {}).filter(([k]) => k !== 'evidence').map(([k, v]) => html`<div>${fieldLabel(k)}：${k === 'status' ? statusLabel(v.old, rec.fields.procedure) : value(S.schema.fields[k], v.old, k)} → ${k === 'status' ? statusLabel(v.new, rec.fields.procedure) : value(S.schema.fields[k], v.new, k)}</div>`)}
          ${x.reason && html`<div class="reason">${x.op === 'correct' ? '更正理由' : '理由'}：${x.reason}</div>`}
        </li>`)}</ol>
      </div>
    </div>
  </div>`;
}

// ---- 立案登记 (a case filed from the desk: 热线, 信访, 移送) ---------------------

function NewCase() {
  const [msg, setMsg] = useState('');
  async function submit(ev) {
    ev.preventDefault();
    const f = ev.target;
    const id = newId();
    const fields = {
      procedure: f.procedure.value, source: f.source.value, description: f.description.value, address: f.address.value,
      grid: f.grid.value, unit: S.me.unit, occurred_at: f.occurred_at.value ? wallTime(f.occurred_at.value) : new Date().toISOString(),
      location: { lon: Number(f.lon.value), lat: Number(f.lat.value), crs: 'wgs84' },
    };
    try {
      const r = await pushChanges([{ op: 'create', record_id: id, type: f.type.value, at: new Date().toISOString(), fields }]);
      const res = r.results[0];
      if (res.status === 'rejected') setMsg(`服务器拒绝了登记：${res.error.code}${res.error.field ? ` (${res.error.field})` : ''}: ${res.error.message}`);
      else go(`/case/${id}`);
    } catch (e) { setMsg(`服务器拒绝了登记：${refusal(e)}`); }
  }
  const opts = (o) => o.map(([v, l]) => html`<option value=${v}>${l}</option>`);
  return html`<form id="new-case" class="filters" onSubmit=${submit}>
    <h2>立案登记</h2>
    <label>案件类型<select name="type">${opts(S.schema.types.map((t) => [t.name, t.label]))}</select></label>
    <label>办案程序<select name="procedure">${opts(Object.entries(S.schema.fields.procedure.value_labels))}</select></label>
    <label>案件来源<select name="source">${opts(Object.entries(S.schema.fields.source.value_labels))}</select></label>
    <label>单元网格<input name="grid" required pattern="[0-9]{14,15}" /></label>
    <label>地址<input name="address" required /></label>
    <label>发生时间<input name="occurred_at" type="datetime-local" /></label>
    <label>经度<input name="lon" type="number" step="any" value="116.4" required /></label>
    <label>纬度<input name="lat" type="number" step="any" value="39.9" required /></label>
    <label>问题描述<textarea name="description" required rows="2" cols="40"></textarea></label>
    <button type="submit">登记</button>
    ${msg && html`<div class="error" role="alert">${msg}</div>`}
  </form>`;
}

// ---- 冲突与隔离 -------------------------------------------------------------

function Conflicts() {
  const [msg, setMsg] = useState(null);
  const [d, err, reload] = useLoad(async () => {
    const [c, r] = await Promise.all([api('GET', '/v1/conflicts?state=open'), api('GET', '/v1/rejections')]);
    return { conflicts: c.items || c, rejections: r.items || r };
  }, []);
  if (err) return html`<div class="error">${err}</div>`;
  if (!d) return html`<p>正在加载…</p>`;
  async function resolve(c, v, which) {
    setMsg(null);
    try {
      await api('POST', `/v1/conflicts/${encodeURIComponent(c.id)}/resolve`, { value: v, note: `管理台裁决：采用${which}` });
      setMsg({ ok: `冲突 ${c.id} 已裁决：采用${which}` });
      reload();
    } catch (e) { setMsg({ bad: refusal(e) }); }
  }
  const show = (c, v) => (c.field === 'status' ? statusLabel(v) : value(S.schema.fields[c.field], v, c.field));
  return html`<div id="conflicts">
    <h2>冲突（${d.conflicts.length}）</h2>
    ${msg && html`<div class=${msg.ok ? 'ok' : 'error'} role="alert">${msg.ok || msg.bad}</div>`}
    ${d.conflicts.length === 0 && html`<p class="muted">没有待处理的冲突。</p>`}
    ${d.conflicts.map((c) => html`<section class="card conflict" data-id=${c.id}>
      <div><a href=${`#/case/${encodeURIComponent(c.record_id)}`}>案件 ${c.record_id}</a> · 字段 <strong>${fieldLabel(c.field)}</strong> · ${time(c.at || c.created_at)}</div>
      <div class="side">
        <div><div class="muted">服务器值${c.base_version !== undefined ? `（版本 ${c.base_version} 之后）` : ''}${c.server_user_id ? ` · ${person(c.server_user_id)}` : ''}</div><div class="v">${show(c, c.server_value)}</div>
          <button type="button" class="secondary" onClick=${() => resolve(c, c.server_value, '服务器值')}>采用服务器值</button></div>
        <div><div class="muted">手机提交的值 · ${person(c.user_id || c.client_user_id)} · 设备 ${c.device_id || ''}</div><div class="v">${show(c, c.client_value)}</div>
          <button type="button" class="secondary" onClick=${() => resolve(c, c.client_value, '手机值')}>采用手机值</button></div>
      </div>
    </section>`)}
    <h2>隔离的变更（${d.rejections.length}）</h2>
    <table id="rejections"><thead><tr><th>时间</th><th>人员</th><th>设备</th><th>案件</th><th>字段</th><th>原因</th></tr></thead>
      <tbody>${d.rejections.map((r) => html`<tr><td>${time(r.at)}</td><td>${person(r.user_id)}</td><td>${r.device_id}</td>
        <td><a href=${`#/case/${encodeURIComponent(r.record_id)}`}>${r.record_id}</a></td><td>${r.error && r.error.field}</td>
        <td>${r.error && `${r.error.code}: ${r.error.message}`}</td></tr>`)}</tbody></table>
  </div>`;
}

// ---- 设备 ------------------------------------------------------------------

function Devices() {
  const [ask, setAsk] = useState(null);
  const [msg, setMsg] = useState(null);
  const [list, err, reload] = useLoad(() => api('GET', '/v1/devices'), []);
  if (err) return html`<div class="error">${err}</div>`;
  if (!list) return html`<p>正在加载…</p>`;
  const items = list.items || list;
  async function doIt() {
    const a = ask;
    setAsk(null);
    try {
      if (a.what === 'release') await api('POST', `/v1/admin/devices/${encodeURIComponent(a.id)}/release`);
      else await api('POST', `/v1/devices/${encodeURIComponent(a.id)}/revoke`, { wipe: a.what === 'wipe' });
      setMsg({ ok: `设备 ${a.id} 已${{ revoke: '吊销', wipe: '吊销并要求擦除', release: '解除绑定' }[a.what]}` });
      reload();
    } catch (e) { setMsg({ bad: refusal(e) }); }
  }
  return html`<div id="devices">
    <h2>设备（${items.length}）</h2>
    ${msg && html`<div class=${msg.ok ? 'ok' : 'error'} role="alert">${msg.ok || msg.bad}</div>`}
    ${ask && html`<div class="confirm" role="alertdialog" aria-label="确认">
      确认${{ revoke: '吊销', wipe: '吊销并擦除', release: '解除绑定' }[ask.what]}设备 <strong>${ask.id}</strong>？${ask.what === 'wipe' ? '该设备下次联网时将清除本地案件数据。' : ''}${ask.what === 'revoke' ? '该设备将无法再登录。' : ''}
      <button type="button" class="danger" id="confirm-yes" onClick=${doIt}>确认</button> <button type="button" class="secondary" onClick=${() => setAsk(null)}>取消</button></div>`}
    <table id="device-table"><thead><tr><th>设备</th><th>使用人</th><th>最近联网</th><th>最近上传</th><th>最近同步</th><th>版本</th><th class="num">未上传证据</th><th>状态</th><th>操作</th></tr></thead>
      <tbody>${items.map((d) => html`<tr data-id=${d.device_id}>
        <td>${d.device_id}${d.device_id.startsWith('console-') ? html` <span class="muted">(管理台)</span>` : ''}${d.device_name ? html`<br /><span class="muted">${d.device_name}</span>` : ''}</td>
        <td>${d.user_id ? d.name || person(d.user_id) : html`<span class="muted">未绑定</span>`}</td><td>${time(d.last_seen)}</td><td>${time(d.last_push_at)}</td><td>${time(d.last_pull_at)}</td>
        <td>${d.app_version || ''}</td><td class="num">${d.evidence_missing || 0}</td>
        <td>${d.revoked ? (d.wipe ? '已吊销（擦除）' : '已吊销') : '正常'}</td>
        <td>${!d.revoked && html`<button type="button" class="secondary" data-act="revoke" onClick=${() => setAsk({ id: d.device_id, what: 'revoke' })}>吊销</button> <button type="button" class="danger" data-act="wipe" onClick=${() => setAsk({ id: d.device_id, what: 'wipe' })}>吊销并擦除</button>`}
          ${S.me.role === 'admin' && d.user_id && html` <button type="button" class="secondary" data-act="release" onClick=${() => setAsk({ id: d.device_id, what: 'release' })}>解除绑定</button>`}</td>
      </tr>`)}</tbody></table>
  </div>`;
}

// ---- 人员 (admin) -----------------------------------------------------------

function People() {
  const [msg, setMsg] = useState(null);
  const [list, err, reload] = useLoad(() => api('GET', '/v1/admin/users'), []);
  if (S.me.role !== 'admin') return html`<div class="error">人员管理仅限管理员。</div>`;
  if (err) return html`<div class="error">${err}</div>`;
  if (!list) return html`<p>正在加载…</p>`;
  async function call(fn, ok) {
    setMsg(null);
    try { await fn(); setMsg({ ok }); reload(); await loadPeople(); } catch (e) { setMsg({ bad: refusal(e) }); }
  }
  function create(ev) {
    ev.preventDefault();
    const f = ev.target;
    const body = { username: f.username.value, name: f.name.value, password: f.password.value, role: f.role.value, unit: f.unit.value, grids: f.grids.value.split(/[,，\s]+/).filter(Boolean) };
    call(() => api('POST', '/v1/admin/users', body), `已创建用户 ${body.username}`).then(() => f.reset());
  }
  return html`<div id="people">
    <h2>人员</h2>
    ${msg && html`<div class=${msg.ok ? 'ok' : 'error'} role="alert">${msg.ok || msg.bad}</div>`}
    <form class="filters" onSubmit=${create} aria-label="新建用户">
      <label>用户名<input name="username" required /></label><label>姓名<input name="name" required /></label>
      <label>初始密码<input name="password" type="password" required minlength="8" /></label>
      <label>角色<select name="role">${S.schema.roles.map((r) => html`<option value=${r.name}>${r.label}</option>`)}</select></label>
      <label>中队<input name="unit" required /></label><label>网格（逗号分隔）<input name="grids" /></label>
      <button type="submit">新建用户</button>
    </form>
    <table><thead><tr><th>姓名</th><th>用户名</th><th>角色</th><th>中队</th><th>网格</th><th>状态</th><th>操作</th></tr></thead>
      <tbody>${(list.items || []).map((u) => html`<tr>
        <td>${u.name}</td><td>${u.username}</td>
        <td><select aria-label="角色" onChange=${(ev) => call(() => api('PATCH', `/v1/admin/users/${u.id}`, { role: ev.target.value }), `${u.name} 的角色已改为 ${roleLabel(ev.target.value)}`)}>${S.schema.roles.map((r) => html`<option value=${r.name} selected=${r.name === u.role}>${r.label}</option>`)}</select></td>
        <td>${u.unit}</td><td>${(u.grids || []).join(', ')}</td><td>${u.disabled ? '已停用' : '正常'}</td>
        <td><button type="button" class="secondary" onClick=${() => call(() => api('PATCH', `/v1/admin/users/${u.id}`, { disabled: !u.disabled }), `${u.name} 已${u.disabled ? '启用' : '停用'}`)}>${u.disabled ? '启用' : '停用'}</button>
          <form onSubmit=${(ev) => { ev.preventDefault(); const p = ev.target.pw.value; call(() => api('PATCH', `/v1/admin/users/${u.id}`, { password: p }), `${u.name} 的密码已重置`); }}>
            <input name="pw" type="password" placeholder="新密码" required minlength="8" aria-label="新密码" size="10" /> <button type="submit" class="secondary">重置密码</button></form></td>
      </tr>`)}</tbody></table>
    <p class="muted">解除设备绑定在“设备”页。</p>
  </div>`;
}

// ---- 月报 ------------------------------------------------------------------

const REPORT_GROUPS = [['type', '按案件类型', typeLabel], ['grid', '按单元网格', (k) => k || '未定'], ['source', '按案件来源', (k) => enumLabel('source', k)], ['procedure', '按办案程序', (k) => enumLabel('procedure', k)]];
// The figures of GET /v1/stats as docs/protocol.md §6 defines them; money in
// yuan with two decimals (the server sums in fen).
function yuan(v) { return v === null || v === undefined ? '—' : Number(v).toFixed(2); }
const REPORT_COLS = [
  ['登记', (g) => g.opened], ['受理', (g) => g.accepted], ['办结', (g) => g.closed], ['其中本期受理已办结', (g) => g.closed_of_accepted],
  ['办结率', (g) => pct(g.closure_rate)], ['不予立案', (g) => g.not_filed], ['移送', (g) => g.transferred], ['超期', (g) => g.overdue],
  ['作出处罚决定', (g) => g.decided], ['罚款决定金额(元)', (g) => yuan(g.fines_imposed)], ['已缴款', (g) => g.paid], ['罚没款缴纳金额(元)', (g) => yuan(g.fines_paid)],
  ['办结用时中位数(小时)', (g) => g.median_hours_to_close ?? '—'], ['撤销', (g) => g.voided],
];

function Report({ q }) {
  const month = q.get('month') || monthCN();
  const [d, err] = useLoad(async () => {
    const rng = range(`${month}-01`, `${addMonth(month, 1)}-01`);
    const out = {};
    for (const [g] of REPORT_GROUPS) {
      try { out[g] = await api('GET', `/v1/stats?${rng}&group_by=${g}`); } catch (e) { if (e.status === 400) out[g] = null; else throw e; }
    }
    out.month = month;
    return out;
  }, [month]);
  if (err) return html`<div class="error">${err}</div>`;
  // Never last month's figures under this month's title while it loads.
  if (!d || d.month !== month) return html`<p>正在加载…</p>`;
  const total = d.type.total;
  function csv() {
    const rows = [['月份', '分组', '项目', ...REPORT_COLS.map((c) => c[0])]];
    rows.push([month, '合计', '全部', ...REPORT_COLS.map((c) => c[1](total))]);
    for (const [g, label, fmt] of REPORT_GROUPS) if (d[g]) for (const x of d[g].groups) rows.push([month, label, fmt(x.key), ...REPORT_COLS.map((c) => c[1](x))]);
    rows.push([]);
    rows.push(['月份', '业务工作指标', '项目', ...WORKFLOW_COLS.map((c) => c[0])]);
    rows.push([month, '合计', '全部', ...WORKFLOW_COLS.map((c) => c[1](total))]);
    download(`月报_${S.me.unit}_${month}.csv`, rows);
  }
  return html`<div id="report">
    <div class="filters no-print">
      <label>月份<input type="month" value=${month} onChange=${(ev) => go('/report', new URLSearchParams({ month: ev.target.value }))} /></label>
      <button type="button" onClick=${() => window.print()}>打印 / 存为 PDF</button>
      <button type="button" class="secondary" id="report-csv" onClick=${csv}>导出 CSV</button>
    </div>
    <h2>${S.me.unit} 城管执法案件月报 · ${month.replace('-', '年')}月</h2>
    <p class="muted">统计区间 ${month}-01 至 ${addMonth(month, 1)}-01（${S.tz.name === 'Asia/Shanghai' ? '北京时间' : S.tz.name} UTC${S.tz.utc_offset}，不含末日）；超期为生成时（${time(total.now || d.type.now)}）仍超期的案件；证据未上传 ${d.type.evidence_missing} 件。</p>
    <p id="sv-sentence">${svSentence(total)}</p>
    <table id="report-total"><thead><tr><th>合计</th>${REPORT_COLS.map((c) => html`<th class="num">${c[0]}</th>`)}</tr></thead>
      <tbody><tr><td>全部</td>${REPORT_COLS.map((c) => html`<td class="num" data-col=${c[0]}>${c[1](total)}</td>`)}</tr></tbody></table>
    <h3>业务工作指标</h3>
    <table id="report-workflow"><thead><tr><th>合计</th>${WORKFLOW_COLS.map((c) => html`<th class="num">${c[0]}</th>`)}</tr></thead>
      <tbody><tr><td>全部</td>${WORKFLOW_COLS.map((c) => html`<td class="num" data-col=${c[0]}>${c[1](total)}</td>`)}</tr></tbody></table>
    ${REPORT_GROUPS.map(([g, label, fmt]) => d[g] && html`<h3>${label}</h3>
      <table data-group=${g}><thead><tr><th>${label.slice(1)}</th>${REPORT_COLS.map((c) => html`<th class="num">${c[0]}</th>`)}</tr></thead>
      <tbody>${d[g].groups.map((x) => html`<tr data-key=${x.key ?? ''}><td>${fmt(x.key)}</td>${REPORT_COLS.map((c) => html`<td class="num" data-col=${c[0]}>${c[1](x)}</td>`)}</tr>`)}</tbody></table>`)}
    <p class="print-only muted">打印时间 ${time(new Date().toISOString())} · ${S.me.name || S.me.username}</p>
  </div>`;
}

// ---- field workflows: 督办, 热线, 执行, 首违不罚, 公示 (docs/protocol.md §9) -------

// The states of GET /v1/supervision (sync_sv_state).
const SV_STATE = { open: '办理中', overdue: '逾期', done: '已落实', done_late: '逾期落实' };
const SV_TABS = [['all', '全部'], ['open', '办理中'], ['overdue', '逾期'], ['done', '已落实（含逾期落实）']];
function isSupervisor() { return ROLE_RANK[S.me.role] >= ROLE_RANK.supervisor; }
// The workflow lists are a unit's: everyone reads their own, admins name one (unit=).
function unitParam(u) { return S.me.role === 'admin' ? `&unit=${encodeURIComponent(u || '')}` : ''; }
function UnitPicker({ path, q, unit }) {
  if (S.me.role !== 'admin') return null;
  return html`<form class="filters no-print" id="unit-pick" onSubmit=${(e) => { e.preventDefault(); const n = new URLSearchParams(q); n.set('unit', e.target.unit.value); go(path, n); }}>
    <label>中队<input name="unit" value=${unit} required size="10" /></label><button type="submit" class="secondary">查看</button></form>`;
}
// Labels of a member of an object field, from the schema.
function memberLabel(field, m) {
  const f = S.schema.fields[field];
  return (f && f.members && f.members[m] && f.members[m].label) || m;
}
function itemLabel(field, m) {
  const f = S.schema.fields[field];
  return (f && f.items && f.items.members && f.items.members[m] && f.items.members[m].label) || m;
}
function memberValue(field, m, v) {
  const f = S.schema.fields[field];
  return value(f && f.members && f.members[m], v, m);
}

// One order: {id, ask, due_at, order_no?, to?}; the server stamps issued_by and issued_at.
function svOrder(ask, due, orderNo, to) {
  const o = { id: `sv-${randomHex(8)}`, ask, due_at: wallTime(due) };
  if (orderNo) o.order_no = orderNo;
  if (to) o.to = to;
  return o;
}

// Every page of a case query (at most 20 pages of 500).
async function allCases(qs) {
  const out = [];
  let next = '';
  for (let i = 0; i < 20; i++) {
    const p = await api('GET', `/v1/cases?${qs}&limit=500${next ? `&cursor=${encodeURIComponent(next)}` : ''}`);
    out.push(...p.items);
    if (!p.next) break;
    next = p.next;
  }
  return out;
}

function pushSummary(r, what) {
  const res = r.results || [];
  const bad = res.filter((x) => x.status === 'rejected' || x.status === 'conflict');
  const ok = res.length - bad.length;
  if (!bad.length) return { ok: `${what}：${ok} 件已下达` };
  return { bad: `${what}：${ok} 件已下达，${bad.length} 件被拒绝：${bad.map((x) => `${x.record_id || ''} ${x.error ? `${x.error.code}${x.error.field ? ` (${x.error.field})` : ''}: ${x.error.message}` : x.status}`).join('；')}` };
}

// 督办: the unit's orders with their state and escalation; in bulk from the
// overdue list — one changeset, one append to each case's supervision.
function Supervision({ q }) {
  const state = q.get('state') || 'all';
  const unit = q.get('unit') || S.me.unit || '';
  const [msg, setMsg] = useState(null);
  const [picked, setPicked] = useState({});
  const [d, err, reload] = useLoad(async () => {
    const [sv, all, overdue] = await Promise.all([
      api('GET', `/v1/supervision?state=${encodeURIComponent(state)}${unitParam(unit)}`),
      state === 'all' ? null : api('GET', `/v1/supervision?state=all${unitParam(unit)}`),
      isSupervisor() ? allCases(`overdue=true${unitParam(unit)}`) : Promise.resolve([]),
    ]);
    return { sv, all: all || sv, overdue };
  }, [state, unit]);
  if (err) return html`<div><${UnitPicker} path="/supervision" q=${q} unit=${unit} /><div class="error">${err}</div></div>`;
  if (!d) return html`<p>正在加载…</p>`;
  const items = d.sv.items || [];
  const count = (st) => (d.all.items || []).filter((x) => x.state === st).length;
  const open = d.overdue.filter((c) => !closedStatus(c));
  const chosen = open.filter((c) => picked[c.id]);
  async function bulk(ev) {
    ev.preventDefault();
    const f = ev.target;
    if (!chosen.length) { setMsg({ bad: '请先勾选要督办的超期案件' }); return; }
    setMsg(null);
    const at = new Date().toISOString();
    const changes = chosen.map((c) => ({ op: 'update', record_id: c.id, base_version: c.version, at, append: { supervision: [svOrder(f.ask.value, f.due.value, f.order_no.value)] } }));
    try {
      setMsg(pushSummary(await pushChanges(changes), '批量督办'));
      setPicked({});
      f.reset();
      reload();
    } catch (e) { setMsg({ bad: `服务器拒绝了批量督办：${refusal(e)}` }); }
  }
  return html`<div id="supervision">
    <h2>督办 <span class="muted">${unit}</span></h2>
    <${UnitPicker} path="/supervision" q=${q} unit=${unit} />
    <div class="cards">
      <div class="card"><div class="n" id="sv-all">${(d.all.items || []).length}</div><div class="l">督办件</div></div>
      <div class="card"><div class="n">${count('open')}</div><div class="l">办理中</div></div>
      <a class=${`card${count('overdue') ? ' warn' : ''}`} href="#/supervision?state=overdue"><div class="n">${count('overdue')}</div><div class="l">逾期未落实</div></a>
      <div class="card"><div class="n">${count('done')}</div><div class="l">按期落实</div></div>
      <div class="card"><div class="n">${count('done_late')}</div><div class="l">逾期落实</div></div>
    </div>
    <nav class="tabs" aria-label="督办状态">${SV_TABS.map(([k, l]) => html`<a href=${`#/supervision?${new URLSearchParams([...(k === 'all' ? [] : [['state', k]]), ...(q.get('unit') ? [['unit', q.get('unit')]] : [])])}`} class=${k === state ? 'on' : ''} data-state=${k}>${l}</a>`)}</nav>
    ${d.sv.truncated && html`<p class="error">只显示前 ${items.length} 件。</p>`}
    <table id="sv-table"><thead><tr><th>案件</th><th>督办单号</th><th>督办事项</th><th>承办人</th><th>督办人</th><th>督办时间</th><th>办理期限</th><th>状态</th><th>落实时间</th><th class="num">回复</th><th>已升级至</th></tr></thead>
      <tbody>${items.map((o) => html`<tr data-order=${o.order_id} data-case=${o.case_id} data-state=${o.state} class=${o.state}>
        <td><a href=${`#/case/${encodeURIComponent(o.case_id)}`}>${o.case_no || o.case_id}</a><br /><span class="muted">${statusLabel(o.status)}</span></td>
        <td>${o.order_no || ''}</td><td>${o.ask}</td><td>${person(o.to)}</td><td>${person(o.issued_by)}</td><td>${time(o.issued_at)}</td><td>${time(o.due_at)}</td>
        <td class="sv-state">${SV_STATE[o.state] || o.state}</td><td>${time(o.done_at)}</td><td class="num">${o.replies}</td>
        <td class="sv-esc">${o.escalated_to ? roleLabel(o.escalated_to) : ''}</td></tr>`)}</tbody></table>
    ${!items.length && html`<p class="muted">没有督办件。</p>`}
    ${msg && html`<div class=${msg.ok ? 'ok' : 'error'} role="alert" id="sv-result">${msg.ok || msg.bad}</div>`}
    ${isSupervisor() && html`<h3>从超期案件批量督办（${open.length}）</h3>
      <form id="sv-bulk" class="filters" onSubmit=${bulk} aria-label="批量督办">
        <label>督办事项<input name="ask" required size="40" /></label>
        <label>办理期限<input name="due" type="datetime-local" required /></label>
        <label>督办单号<input name="order_no" size="14" /></label>
        <button type="submit">督办所选（${chosen.length}）</button>
      </form>
      <table id="sv-overdue"><thead><tr><th><input type="checkbox" aria-label="全选" checked=${open.length > 0 && chosen.length === open.length}
        onChange=${(e) => setPicked(e.target.checked ? Object.fromEntries(open.map((c) => [c.id, true])) : {})} /></th><th>案件编号</th><th>案件类型</th><th>状态</th><th>主办队员</th><th>地址</th><th>已有督办</th></tr></thead>
        <tbody>${open.map((c) => html`<tr data-id=${c.id}><td><input type="checkbox" name="pick" value=${c.id} aria-label=${`选择 ${c.fields.case_no || c.id}`} checked=${!!picked[c.id]}
          onChange=${(e) => setPicked({ ...picked, [c.id]: e.target.checked })} /></td>
          <td><a href=${`#/case/${encodeURIComponent(c.id)}`}>${c.fields.case_no || c.id}</a></td><td>${typeLabel(c.type)}</td><td>${statusLabel(c.status, c.fields.procedure)}</td>
          <td>${person(c.fields.assignee)}</td><td>${c.fields.address || ''}</td><td>${(c.fields.supervision || []).length}</td></tr>`)}</tbody></table>`}
  </div>`;
}

// 案件详情's 督办 panel: the case's orders (state from GET /v1/supervision),
// each with its replies; a supervisor issues one more.
function CaseSupervision({ rec, orders, act }) {
  const list = rec.fields.supervision || [];
  const replies = rec.fields.supervision_replies || [];
  const byId = Object.fromEntries((orders || []).map((o) => [o.order_id, o]));
  const officers = Object.values(S.people).filter((p) => ROLE_RANK[p.role] >= ROLE_RANK.officer && p.role !== 'admin' && !p.disabled && p.unit === rec.fields.unit);
  function issue(ev) {
    ev.preventDefault();
    const f = ev.target;
    act({ op: 'update', append: { supervision: [svOrder(f.ask.value, f.due.value, f.order_no.value, f.to.value)] } }, '督办');
  }
  return html`<section id="case-supervision" class="panel">
    <h3>督办（${list.length}）</h3>
    ${!list.length && html`<p class="muted">本案没有督办件。</p>`}
    ${list.map((o) => {
      const s = byId[o.id];
      return html`<div class="order" data-order=${o.id} data-state=${s ? s.state : ''}>
        <div><strong>${o.order_no ? `${o.order_no} · ` : ''}${o.ask}</strong> <span class=${`badge ${s ? s.state : ''}`}>${s ? SV_STATE[s.state] : ''}</span>${s && s.escalated_to ? html` <span class="badge overdue">已升级至${roleLabel(s.escalated_to)}</span>` : ''}</div>
        <div class="muted">${person(o.issued_by)} 于 ${time(o.issued_at)} 督办 · 承办 ${person(o.to || rec.fields.assignee) || '（主办队员）'} · 期限 ${time(o.due_at)}${s && s.done_at ? ` · 落实 ${time(s.done_at)}` : ''}</div>
        <ul class="replies">${replies.filter((r) => r.order_id === o.id).map((r) => html`<li data-reply=${r.id}>${r.text}${r.done ? html` <strong>（${itemLabel('supervision_replies', 'done')}）</strong>` : ''}
          <span class="muted"> — ${person(r.author)} ${itemLabel('supervision_replies', 'answered_at')} ${time(r.answered_at)}${r.received_at ? ` · ${itemLabel('supervision_replies', 'received_at')} ${time(r.received_at)}` : ''}</span></li>`)}</ul>
      </div>`;
    })}
    ${isSupervisor() && !closedStatus(rec) && html`<form id="sv-issue" class="change no-print" onSubmit=${issue} aria-label="督办">
      <input name="ask" required placeholder=${itemLabel('supervision', 'ask')} aria-label=${itemLabel('supervision', 'ask')} size="28" />
      <label>${itemLabel('supervision', 'due_at')} <input name="due" type="datetime-local" required /></label>
      <input name="order_no" placeholder=${itemLabel('supervision', 'order_no')} aria-label=${itemLabel('supervision', 'order_no')} size="12" />
      <select name="to" aria-label=${itemLabel('supervision', 'to')}><option value="">${itemLabel('supervision', 'to')}：主办队员</option>${officers.map((p) => html`<option value=${p.id}>${p.name || p.username}</option>`)}</select>
      <button type="submit">下达督办</button></form>`}
  </section>`;
}

function row(label, v, id) { return html`<tr data-row=${id || label}><th>${label}</th><td>${v === '' || v === null || v === undefined ? html`<span class="muted">—</span>` : v}</td></tr>`; }
function obj(field, v, members) {
  if (!v) return '';
  return (members || Object.keys(v)).filter((m) => v[m] !== undefined && v[m] !== null && v[m] !== '').map((m) => `${memberLabel(field, m)}：${memberValue(field, m, v[m])}`).join('；');
}

// The hotline loop: ticket, complainant (masked unless supervisor), reply due, reply, 回访.
function CaseHotline({ rec }) {
  const f = rec.fields;
  if (f.source !== 'hotline' && !f.ticket_no && !f.reply_due && !f.reply && !f.callback) return null;
  const due = f.reply_due ? new Date(f.reply_due) : null;
  const replied = f.reply && f.reply.at ? new Date(f.reply.at) : null;
  let verdict = '';
  if (due && replied) verdict = replied <= due ? '按时答复' : '逾期答复';
  else if (due && !replied && due < new Date()) verdict = '逾期未答复';
  else if (due) verdict = '待答复';
  return html`<section id="case-hotline" class="panel"><h3>热线闭环</h3><table><tbody>
    ${row(fieldLabel('ticket_no'), f.ticket_no, 'ticket_no')}
    ${row(fieldLabel('complainant'), obj('complainant', f.complainant, ['name', 'phone']), 'complainant')}
    ${row(fieldLabel('reply_due'), due ? html`${time(f.reply_due)} <span class=${`badge ${/逾期/.test(verdict) ? 'overdue' : 'done'}`} id="reply-verdict">${verdict}</span>` : '', 'reply_due')}
    ${row(fieldLabel('reply'), f.reply ? `${f.reply.text}（${time(f.reply.at)}）` : '', 'reply')}
    ${row(fieldLabel('callback'), f.callback ? html`<strong id="callback-verdict">${f.callback.satisfied ? '满意' : '不满意'}</strong>${f.callback.result ? `，${f.callback.result}` : ''}${f.callback.at ? `（${time(f.callback.at)}）` : ''}` : '', 'callback')}
  </tbody></table></section>`;
}

// Enforcement after the decision: payment, 加处罚款 (derived.late_fee), 催告, court, 责令改正.
function CaseEnforcement({ rec }) {
  const f = rec.fields;
  const fee = rec.derived && rec.derived.late_fee;
  const demands = (f.documents || []).filter((x) => x.doc_type === 'payment_demand');
  if (f.fine_amount === undefined && !f.payment && !fee && !f.court_application && !f.court_outcome && !f.rectification && !f.close_reason && !demands.length) return null;
  return html`<section id="case-enforcement" class="panel"><h3>执行</h3><table><tbody>
    ${row(fieldLabel('fine_amount'), f.fine_amount === undefined ? '' : `¥${yuan(f.fine_amount)}`, 'fine_amount')}
    ${row(fieldLabel('payment'), obj('payment', f.payment, ['method', 'receipt_no', 'paid_at', 'on_spot_reason']) || (f.fine_amount ? '未缴款' : ''), 'payment')}
    ${row('加处罚款', fee ? html`<strong id="late-fee">¥${yuan(fee.amount)}</strong>（逾期 ${fee.days} 日，每日 3%，自 ${time(fee.from)} 起${fee.until ? `至 ${time(fee.until)} 缴款` : '，仍未缴款'}${fee.capped ? '，已达罚款数额上限' : ''}）` : '', 'late_fee')}
    ${row('催告书', demands.map((x) => `${x.doc_no || ''} ${time(x.at)}`.trim()).join('；'), 'payment_demand')}
    ${row(fieldLabel('court_application'), obj('court_application', f.court_application, ['doc_no', 'court', 'filed_at']), 'court_application')}
    ${row(fieldLabel('court_outcome'), obj('court_outcome', f.court_outcome, ['result', 'doc_no', 'at']), 'court_outcome')}
    ${row(fieldLabel('close_reason'), f.close_reason, 'close_reason')}
    ${row(fieldLabel('rectification'), obj('rectification', f.rectification, ['doc_no', 'due_at', 'reinspected_at', 'result']), 'rectification')}
  </tbody></table></section>`;
}

function CasePublication({ rec }) {
  const f = rec.fields;
  if (!f.publication && f.disposition !== 'penalty') return null;
  return html`<section id="case-publication" class="panel"><h3>${fieldLabel('publication')}</h3>
    ${f.publication ? html`<p>${obj('publication', f.publication, ['where', 'at', 'url'])}</p>` : html`<p class="missing">尚未公示（处罚决定应于作出之日起 20 个工作日内公示）</p>`}</section>`;
}

// 历史案件: the party's cases in the unit (POST /v1/parties/cases, the id in
// the body), flagging a first offence already used (首违不罚 is for a first one).
function PartyHistory({ rec }) {
  const p = rec.fields.party || {};
  const id = p.id_no ? { id_no: p.id_no } : p.uscc ? { uscc: p.uscc } : null;
  const masked = id && /\*/.test(id.id_no || id.uscc);
  const [d, err] = useLoad(async () => (id && !masked ? api('POST', '/v1/parties/cases', { ...id, ...(S.me.role === 'admin' ? { unit: rec.fields.unit } : {}) }) : null), [rec.id, JSON.stringify(id)]);
  if (!id) return null;
  if (masked) return html`<section id="party-history" class="panel"><h3>历史案件</h3><p class="muted">当事人证件号码对您已脱敏，无法查询。</p></section>`;
  if (err) return html`<section id="party-history" class="panel"><h3>历史案件</h3><div class="error">${err}</div></section>`;
  if (!d) return html`<section id="party-history" class="panel"><h3>历史案件</h3><p>正在查询…</p></section>`;
  const others = d.cases.filter((c) => c.id !== rec.id);
  return html`<section id="party-history" class="panel"><h3>历史案件 <span class="muted">${p.name || ''} · 本中队共 <span id="party-count">${d.count}</span> 件，已作出决定 ${d.decided} 件</span></h3>
    ${d.first_offence_used ? html`<p class="error" id="first-offence-flag">该当事人已适用过首违不罚，不宜再次适用。</p>` : html`<p class="ok" id="first-offence-flag">该当事人未适用过首违不罚${others.length ? '' : '，本案为首次'}。</p>`}
    <table><thead><tr><th>案件编号</th><th>案件类型</th><th>状态</th><th>处理结果</th><th>不予处罚理由</th><th class="num">罚款(元)</th><th>登记</th><th>决定</th></tr></thead>
      <tbody>${d.cases.map((c) => html`<tr data-id=${c.id} class=${c.no_penalty_reason === 'first_offence' ? 'first-offence' : ''}>
        <td>${c.id === rec.id ? html`${c.case_no || c.id} <strong>（本案）</strong>` : html`<a href=${`#/case/${encodeURIComponent(c.id)}`}>${c.case_no || c.id}</a>`}</td>
        <td>${typeLabel(c.type)}</td><td>${statusLabel(c.status, c.procedure)}${c.voided ? '（已撤销）' : ''}</td><td>${enumLabel('disposition', c.disposition) || ''}</td>
        <td>${c.no_penalty_reason ? enumLabel('no_penalty_reason', c.no_penalty_reason) : ''}</td><td class="num">${c.fine_amount === null ? '' : yuan(c.fine_amount)}</td>
        <td>${time(c.opened_at)}</td><td>${time(c.decided_at)}</td></tr>`)}</tbody></table></section>`;
}

// 热线导入: the platform's export (CSV or JSON) to POST /v1/hotline/import, per-ticket results.
function HotlineImport() {
  const [res, setRes] = useState(null);
  const [msg, setMsg] = useState('');
  if (!isSupervisor()) return html`<div class="error">热线导入仅限中队长和管理员。</div>`;
  async function submit(ev) {
    ev.preventDefault();
    const f = ev.target;
    const file = f.file.files[0];
    setRes(null); setMsg('');
    if (!file) { setMsg('请选择文件'); return; }
    const text = await file.text();
    const csv = /\.csv$/i.test(file.name) || /csv/.test(file.type);
    let body = text;
    if (!csv) {
      let j;
      try { j = JSON.parse(text); } catch (e) { setMsg(`文件不是 JSON：${e.message}`); return; }
      body = JSON.stringify(Array.isArray(j) ? { tickets: j } : j);
    }
    const unit = S.me.role === 'admin' && f.unit.value ? `?unit=${encodeURIComponent(f.unit.value)}` : '';
    try {
      const r = await fetch(`/v1/hotline/import${unit}`, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': S.csrf, 'Content-Type': csv ? 'text/csv; charset=utf-8' : 'application/json' }, body });
      const j = await r.json().catch(() => null);
      if (!r.ok) throw new ApiError(r.status, j);
      setRes(j);
    } catch (e) { setMsg(`服务器拒绝了导入：${refusal(e)}`); }
  }
  const RESULT = { created: '已新建', exists: '已存在（未改动）', rejected: '被拒绝' };
  return html`<div id="hotline-import">
    <h2>热线导入 <span class="muted">12345 / 12319 工单</span></h2>
    <form class="filters" onSubmit=${submit} aria-label="热线导入">
      <label>工单文件（CSV 或 JSON）<input type="file" name="file" accept=".csv,.json,text/csv,application/json" required /></label>
      ${S.me.role === 'admin' && html`<label>中队<input name="unit" required /></label>`}
      <button type="submit">导入</button>
    </form>
    <p class="muted">CSV 首行为列名：ticket_no, type, procedure, description, occurred_at, grid, address, lon, lat, crs, complainant_name, complainant_phone, reply_due；JSON 为 {"tickets":[…]}。按工单号去重，重复导入不改动已有案件；每次最多 1000 件。</p>
    ${msg && html`<div class="error" role="alert" id="import-error">${msg}</div>`}
    ${res && html`<div class="cards" id="import-summary">
      <div class="card"><div class="n" data-k="created">${res.created}</div><div class="l">新建</div></div>
      <div class="card"><div class="n" data-k="exists">${res.exists}</div><div class="l">已存在</div></div>
      <div class="card"><div class="n" data-k="rejected">${res.rejected}</div><div class="l">被拒绝</div></div></div>
      <table id="import-results"><thead><tr><th>${fieldLabel('ticket_no')}</th><th>结果</th><th>案件</th><th>原因</th></tr></thead>
        <tbody>${(res.items || []).map((x) => html`<tr data-ticket=${x.ticket_no} data-result=${x.result}><td>${x.ticket_no}</td><td>${RESULT[x.result] || x.result}</td>
          <td>${x.record_id && x.result !== 'rejected' ? html`<a href=${`#/case/${encodeURIComponent(x.record_id)}`}>${x.record_id}</a>` : ''}</td>
          <td>${x.error ? `${x.error.code}${x.error.field ? ` (${x.error.field})` : ''}: ${x.error.message}` : ''}</td></tr>`)}</tbody></table>`}
  </div>`;
}

// 黑名单: parties with at least `min` cases in the unit (GET /v1/parties/repeat).
function Repeat({ q }) {
  const min = Math.max(2, Number(q.get('min')) || 2);
  const unit = q.get('unit') || S.me.unit || '';
  const [d, err] = useLoad(() => api('GET', `/v1/parties/repeat?min=${min}${unitParam(unit)}`), [min, unit]);
  if (err) return html`<div><${UnitPicker} path="/repeat" q=${q} unit=${unit} /><div class="error">${err}</div></div>`;
  if (!d) return html`<p>正在加载…</p>`;
  return html`<div id="repeat">
    <h2>黑名单 <span class="muted">${d.unit} · 本中队有 ${min} 件及以上案件的当事人（已撤销的不计）</span></h2>
    <${UnitPicker} path="/repeat" q=${q} unit=${unit} />
    <div class="filters no-print"><label>案件数不少于<select onChange=${(e) => { const n = new URLSearchParams(q); n.set('min', e.target.value); go('/repeat', n); }}>${[2, 3, 5, 10].map((n) => html`<option value=${n} selected=${n === min}>${n}</option>`)}</select></label></div>
    <table id="repeat-table"><thead><tr><th>当事人</th><th>${memberLabel('party', 'kind')}</th><th>${memberLabel('party', 'id_no')} / ${memberLabel('party', 'uscc')}</th><th class="num">案件数</th><th>首违不罚</th><th>案件</th></tr></thead>
      <tbody>${(d.items || []).map((x) => {
        const p = x.party || {};
        const fo = x.cases.some((c) => c.no_penalty_reason === 'first_offence');
        return html`<tr data-party=${p.id_no || p.uscc || ''}><td>${p.name || ''}</td><td>${memberValue('party', 'kind', p.kind)}</td><td>${p.id_no || p.uscc || ''}</td>
          <td class="num">${x.count}</td><td class="fo">${fo ? '已适用' : ''}</td>
          <td>${x.cases.map((c) => html`<a href=${`#/case/${encodeURIComponent(c.id)}`} data-id=${c.id}>${c.case_no || c.id}</a>（${statusLabel(c.status, c.procedure)}${c.no_penalty_reason === 'first_offence' ? '·首违不罚' : ''}） `)}</td></tr>`;
      })}</tbody></table>
    ${!(d.items || []).length && html`<p class="muted">没有符合条件的当事人。</p>`}
    <p class="muted">名单仅供本中队使用，不报送信用平台；证件号码为个人信息，请勿外传。</p>
  </div>`;
}

// The workflow figures of /v1/stats (docs/protocol.md §6).
const WORKFLOW_COLS = [
  ['督办件', (g) => g.sv_issued], ['按期落实', (g) => g.sv_done], ['逾期落实', (g) => g.sv_done_late], ['未落实', (g) => g.sv_open],
  ['应答复工单', (g) => g.replies_due], ['按时答复', (g) => g.replied_on_time], ['按时答复率', (g) => pct(g.reply_on_time_rate)],
  ['回访', (g) => g.callbacks], ['满意', (g) => g.satisfied], ['满意率', (g) => pct(g.satisfaction_rate)],
  ['首违不罚', (g) => g.first_offence],
  ['派遣', (g) => g.dispatched], ['处置', (g) => g.disposed], ['按时处置', (g) => g.disposed_on_time], ['处置率', (g) => pct(g.disposal_rate)], ['按时处置率', (g) => pct(g.disposal_on_time_rate)],
];
function svSentence(t) {
  return `派发督办件 ${t.sv_issued ?? 0} 件，已按进度落实 ${t.sv_done ?? 0} 件，逾期落实 ${t.sv_done_late ?? 0} 件，未落实 ${t.sv_open ?? 0} 件。`;
}

// ---- boot -----------------------------------------------------------------

async function loadPeople() {
  try {
    const p = await api('GET', '/console/api/people');
    S.people = {};
    for (const u of p.items) S.people[u.id] = u;
  } catch (_) { S.people = {}; }
}

async function boot() {
  try {
    const s = await api('GET', '/console/api/session');
    S.me = s.user; S.device = s.device; S.csrf = s.csrf;
    if (s.time_zone) S.tz = s.time_zone;
    if (!S.schema) S.schema = await api('GET', '/v1/schema');
    await loadPeople();
  } catch (_) { S.me = null; }
  rerender();
}

function App() {
  const [, setN] = useState(0);
  const [r, setR] = useState(route());
  rerender = () => setN((n) => n + 1);
  useEffect(() => {
    const f = () => setR(route());
    window.addEventListener('hashchange', f);
    return () => window.removeEventListener('hashchange', f);
  }, []);
  if (!S.me) return html`<${Login} onDone=${boot} />`;
  return html`<${Shell} r=${r} />`;
}

document.addEventListener('DOMContentLoaded', () => {
  const root = document.getElementById('app');
  root.textContent = '';
  render(html`<${App} />`, root);
  boot();
});
