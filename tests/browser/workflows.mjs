// The field workflows in the console (docs/protocol.md §9), each checked
// against the API: 督办 (the unit's orders with state and escalation, one
// issued from 案件详情, others in bulk from the overdue list in one push, the
// replies on the case), the hotline loop, enforcement with the late fee,
// 公示, the party's earlier cases flagging a first offence already used,
// 热线导入 of a CSV and a JSON file, the workflow figures in 月报 and
// 工作台, and the 黑名单 of repeat offenders.
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor, launch, newPage, signIn, shot, check, apiLogin, api, push, cleanup, BASE } from './lib.mjs';

const H = 3600e3, D = 24 * H;
const iso = (off) => new Date(Date.now() + off).toISOString();
const chinaWall = (off) => new Date(Date.now() + off + 8 * H).toISOString().slice(0, 16);
const pct = (r) => (r === null || r === undefined ? '—' : `${(r * 100).toFixed(1)}%`);
const applied = (res, what) => check(res.results.every((r) => r.status === 'applied' || r.status === 'merged'), `${what}: ${JSON.stringify(res.results)}`);
const tmp = mkdtempSync(join(tmpdir(), 'cs-wf-'));

const browser = await launch();
try {
  const adm = await apiLogin('admin', 'seed-admin');
  const sup = await apiLogin('sup1', 'sup1-check');
  const off1 = await apiLogin('off1', 'phone-off1');
  const users = (await api(adm, 'GET', '/v1/admin/users')).json.items;
  const uid = (n) => users.find((u) => u.username === n).id;
  const base = { source: 'patrol', description: '占道经营', occurred_at: iso(-60 * D), grid: '110101001001001', address: '人民路8号', unit: 'U1', location: { lon: 116.4, lat: 39.9, crs: 'wgs84' } };
  const party = { kind: 'person', name: '王五', id_no: '110101199001011234' };
  const decide = { party, illegal_item_code: 'C0501-003', assignee: uid('off1'), assist_officer: uid('off2'), decision_doc_no: 'JY-0077' };

  // A general case through to its decision, `shift` before now.
  const general = (id, fields, shift) => {
    let v = 1;
    const t = (o) => iso(-shift + o);
    const ch = [{ op: 'create', record_id: id, type: 'unlicensed_vending', at: t(-10 * D), fields: { ...base, procedure: 'general', ...decide, ...fields } }];
    const to = (st, o) => ch.push({ op: 'transition', record_id: id, base_version: v++, at: t(o), to: st });
    to('filed', -10 * D + H); to('investigating', -10 * D + 2 * H); to('concluded', -5 * D);
    ch.push({ op: 'update', record_id: id, base_version: v++, at: t(-4 * D), append: { documents: [{ id: `${id}-n`, doc_type: 'penalty_notice' }, { id: `${id}-w`, doc_type: 'rights_waiver' }] } });
    to('notified', -4 * D + 60e3); to('heard', -D); to('reviewed', -D + H); to('decided', -H);
    return { ch, v: () => v++, t };
  };
  // F0: an earlier case of the party, decided without a penalty as a first offence (an hour ago).
  const f0 = general('cs-first-1', { disposition: 'no_penalty', no_penalty_reason: 'first_offence' }, 0);
  applied(await push(adm, f0.ch), 'the first-offence case');
  // E1: the same party fined ¥1000, served 44 days ago, never paid: 催告, court, 责令改正, 公示.
  const e1 = general('cs-enf-1', { disposition: 'penalty', fine_amount: 1000 }, 40 * D);
  const ec = e1.ch;
  ec.push({ op: 'transition', record_id: 'cs-enf-1', base_version: e1.v(), at: e1.t(3 * H), to: 'served' });
  ec.push({ op: 'update', record_id: 'cs-enf-1', base_version: e1.v(), at: e1.t(4 * H), set: { publication: { where: '市城管局门户网站', at: e1.t(4 * H), url: 'https://cgj.example.gov.cn/gs/77' }, rectification: { doc_no: 'ZG-0077', due_at: e1.t(2 * D), reinspected_at: e1.t(3 * D), result: 'corrected' } } });
  ec.push({ op: 'transition', record_id: 'cs-enf-1', base_version: e1.v(), at: iso(-20 * D), to: 'executing' });
  ec.push({ op: 'update', record_id: 'cs-enf-1', base_version: e1.v(), at: iso(-19 * D), append: { documents: [{ id: 'cs-enf-1-cg', doc_type: 'payment_demand', doc_no: 'CG-0077', at: iso(-19 * D) }] } });
  ec.push({ op: 'update', record_id: 'cs-enf-1', base_version: e1.v(), at: iso(-3 * D), set: { court_application: { doc_no: 'QZ-0077', court: '东城区人民法院', filed_at: iso(-3 * D) } } });
  ec.push({ op: 'transition', record_id: 'cs-enf-1', base_version: e1.v(), at: iso(-3 * D + 60e3), to: 'court_applied' });
  applied(await push(adm, ec), 'the enforcement case');
  // H1: a 12345 ticket, replied on time and called back (satisfied).
  applied(await push(adm, [{ op: 'create', record_id: 'cs-hotline-1', type: 'unlicensed_vending', at: iso(-3 * D), fields: { ...base, occurred_at: iso(-3 * D), source: 'hotline', procedure: 'digital', ticket_no: '12345-2026-0042', complainant: { name: '李四', phone: '13812345678' }, reply_due: iso(-D) } }]), 'the hotline case');
  // The officer replies two days ago and calls back an hour ago (each time is its change's).
  applied(await push(off1, [{ op: 'update', record_id: 'cs-hotline-1', base_version: 1, at: iso(-2 * D), set: { reply: { text: '已现场处置，摊贩已劝离', at: iso(-2 * D) } } },
    { op: 'update', record_id: 'cs-hotline-1', base_version: 2, at: iso(-H), set: { callback: { satisfied: true, result: '市民表示满意', at: iso(-H) } } }]), 'the reply and callback');

  // 督办 by the supervisor: overdue on cs-dig-3, done on time on cs-dig-4, done late on cs-dig-5.
  const ver = async (id) => (await api(sup, 'GET', `/v1/cases/${id}`)).json.version;
  const order = async (id, oid, due) => applied(await push(sup, [{ op: 'update', record_id: id, base_version: await ver(id), at: iso(-2 * D), append: { supervision: [{ id: oid, ask: `督办 ${oid}`, due_at: due, order_no: `DB-${oid}` }] } }]), `order ${oid}`);
  await order('cs-dig-3', 'o-over', iso(-H));
  await order('cs-dig-4', 'o-done', iso(2 * D));
  await order('cs-dig-5', 'o-late', iso(-2 * H));
  const reply = async (id, rid, oid, text) => applied(await push(off1, [{ op: 'update', record_id: id, base_version: await ver(id), at: iso(-60e3), append: { supervision_replies: [{ id: rid, order_id: oid, text, done: true }] } }]), `reply ${rid}`);
  await reply('cs-dig-4', 'r-done', 'o-done', '已落实整改');
  await reply('cs-dig-5', 'r-late', 'o-late', '已整改（逾期）');

  const page = await newPage(browser);
  await signIn(page, 'sup1');

  // ---- 督办: every order of the unit with the API's state and escalation.
  const SV = { open: '办理中', overdue: '逾期', done: '已落实', done_late: '逾期落实' };
  const checkSvTable = async (state) => {
    const want = (await api(sup, 'GET', `/v1/supervision?state=${state}`)).json.items;
    await waitFor(page, (n) => document.querySelectorAll('#sv-table tbody tr').length === n, want.length, `${want.length} orders (${state})`);
    const rows = await page.$$eval('#sv-table tbody tr', (r) => r.map((x) => ({ order: x.dataset.order, state: x.querySelector('.sv-state').textContent, esc: x.querySelector('.sv-esc').textContent })));
    for (const w of want) {
      const r = rows.find((x) => x.order === w.order_id);
      check(r && r.state === SV[w.state], `order ${w.order_id}: ${r && r.state} vs API ${w.state}`);
      check(r.esc === (w.escalated_to === 'admin' ? '管理员' : w.escalated_to ? r.esc : ''), `escalation of ${w.order_id}: "${r.esc}" vs ${w.escalated_to}`);
    }
    return want;
  };
  await page.goto(`${BASE}/console/#/supervision`);
  await page.waitForSelector('#sv-table');
  const all = await checkSvTable('all');
  const states = Object.fromEntries(all.map((o) => [o.order_id, o.state]));
  check(states['o-over'] === 'overdue' && states['o-done'] === 'done' && states['o-late'] === 'done_late', `the API's states: ${JSON.stringify(states)}`);
  check(all.find((o) => o.order_id === 'o-over').escalated_to === 'admin', 'an overdue supervisor order escalates to admin');
  await page.click('.tabs a[data-state=overdue]');
  await waitFor(page, () => location.hash.includes('state=overdue'));
  await checkSvTable('overdue');
  await shot(page, '20-supervision');

  // ---- Issued from 案件详情, answered by the officer: the reply on the case.
  await page.goto(`${BASE}/console/#/case/cs-dig-1`);
  await page.waitForSelector('#sv-issue');
  await page.fill('#sv-issue input[name=ask]', '请两日内清理占道摊点并回复');
  await page.fill('#sv-issue input[name=due]', chinaWall(2 * D));
  await page.fill('#sv-issue input[name=order_no]', 'DB-2026-001');
  await page.click('#sv-issue button[type=submit]');
  await page.waitForSelector('#action-result.ok');
  const mine = (await api(sup, 'GET', '/v1/supervision?state=all')).json.items.find((o) => o.case_id === 'cs-dig-1');
  check(mine && mine.state === 'open' && mine.order_no === 'DB-2026-001' && mine.issued_by === uid('sup1') && mine.ask === '请两日内清理占道摊点并回复', `the order issued from the case: ${JSON.stringify(mine)}`);
  await reply('cs-dig-1', 'r-1', mine.order_id, '摊点已清理，已告知经营者');
  await page.reload();
  await page.waitForSelector(`#case-supervision .order[data-order="${mine.order_id}"] li[data-reply=r-1]`);
  const ord = await page.textContent(`#case-supervision .order[data-order="${mine.order_id}"]`);
  const nowState = (await api(sup, 'GET', '/v1/supervision?state=all')).json.items.find((o) => o.order_id === mine.order_id).state;
  check(nowState === 'done' && ord.includes('已落实') && ord.includes('摊点已清理，已告知经营者') && ord.includes('王强') && ord.includes('DB-2026-001'), `the case's 督办 panel: ${ord} (API ${nowState})`);
  await shot(page, '21-case-supervision');

  // ---- In bulk from the overdue list: one push, one append to each case.
  const overdue = (await api(sup, 'GET', '/v1/cases?overdue=true&limit=500')).json.items.filter((c) => !['closed'].includes(c.status) && !c.voided);
  check(overdue.length >= 2, `overdue cases: ${overdue.map((c) => c.id)}`);
  const picked = overdue.slice(0, 2).map((c) => c.id);
  await page.goto(`${BASE}/console/#/supervision`);
  await page.waitForSelector('#sv-overdue');
  const listed = await page.$$eval('#sv-overdue tbody tr', (r) => r.map((x) => x.dataset.id).sort());
  const wantListed = (await api(sup, 'GET', '/v1/cases?overdue=true&limit=500')).json.items.filter((c) => !c.voided && c.status !== 'closed').map((c) => c.id).sort();
  check(JSON.stringify(listed) === JSON.stringify(wantListed), `the overdue list ${listed} vs API ${wantListed}`);
  for (const id of picked) await page.check(`#sv-overdue tr[data-id="${id}"] input[name=pick]`);
  await page.fill('#sv-bulk input[name=ask]', '超期案件集中督办：三日内办结');
  await page.fill('#sv-bulk input[name=due]', chinaWall(3 * D));
  await page.click('#sv-bulk button[type=submit]');
  await page.waitForSelector('#sv-result.ok');
  const seqs = new Set();
  for (const id of picked) {
    const rec = (await api(sup, 'GET', `/v1/cases/${id}`)).json;
    const got = (rec.fields.supervision || []).filter((o) => o.ask === '超期案件集中督办：三日内办结');
    check(got.length === 1 && got[0].issued_by === uid('sup1'), `bulk order on ${id}: ${JSON.stringify(rec.fields.supervision)}`);
    const h = (await api(sup, 'GET', `/v1/cases/${id}/history`)).json;
    const e = (h.items || h.entries || h).find((x) => x.fields && x.fields.supervision && JSON.stringify(x.fields.supervision.new).includes('超期案件集中督办'));
    check(e, `no history entry for the bulk order on ${id}`);
    seqs.add(`${e.device_id}#${e.changeset_seq}`);
  }
  check(seqs.size === 1, `the bulk orders were not one push: ${[...seqs]}`);
  await checkSvTable('all');
  await shot(page, '22-supervision-bulk');

  // ---- 案件详情: hotline loop.
  const hl = (await api(sup, 'GET', '/v1/cases/cs-hotline-1')).json;
  await page.goto(`${BASE}/console/#/case/cs-hotline-1`);
  await page.waitForSelector('#case-hotline');
  const hot = await page.textContent('#case-hotline');
  check(hot.includes(hl.fields.ticket_no) && hot.includes(hl.fields.complainant.phone) && hl.fields.complainant.phone === '13812345678', `hotline panel: ${hot}`);
  check(hot.includes(hl.fields.reply.text) && (await page.textContent('#reply-verdict')) === '按时答复' && (await page.textContent('#callback-verdict')) === '满意' && hot.includes('市民表示满意'), `hotline loop: ${hot}`);

  // ---- Enforcement: the late fee as derived.late_fee, 催告, court, 责令改正, 公示.
  const en = (await api(sup, 'GET', '/v1/cases/cs-enf-1')).json;
  check(en.status === 'court_applied' && en.derived && en.derived.late_fee, `enforcement case: ${en.status} ${JSON.stringify(en.derived)}`);
  await page.goto(`${BASE}/console/#/case/cs-enf-1`);
  await page.waitForSelector('#case-enforcement');
  const fee = en.derived.late_fee;
  check((await page.textContent('#late-fee')) === `¥${Number(fee.amount).toFixed(2)}`, `late fee ${await page.textContent('#late-fee')} vs ${fee.amount}`);
  const enf = await page.textContent('#case-enforcement');
  check(enf.includes(`逾期 ${fee.days} 日`) && enf.includes('未缴款') && enf.includes('CG-0077') && enf.includes('QZ-0077') && enf.includes('东城区人民法院') && enf.includes('已改正') && enf.includes('ZG-0077') && (!fee.capped || enf.includes('上限')), `enforcement panel: ${enf}`);
  const pub = await page.textContent('#case-publication');
  check(pub.includes('市城管局门户网站'), `公示: ${pub}`);

  // ---- 历史案件: the party's cases (POST /v1/parties/cases), a first offence already used.
  const pc = (await api(sup, 'POST', '/v1/parties/cases', { id_no: party.id_no })).json;
  await page.waitForSelector('#party-history table');
  check(Number(await page.textContent('#party-count')) === pc.count && pc.count === 2 && pc.first_offence_used, `party count ${await page.textContent('#party-count')} vs ${JSON.stringify(pc)}`);
  const prow = await page.$$eval('#party-history tbody tr', (r) => r.map((x) => x.dataset.id).sort());
  check(JSON.stringify(prow) === JSON.stringify(pc.cases.map((c) => c.id).sort()), `party rows ${prow}`);
  check((await page.textContent('#first-offence-flag')).includes('已适用过首违不罚') && (await page.$('#party-history tr.first-offence[data-id=cs-first-1]')), 'the first offence is not flagged');
  await shot(page, '23-case-workflows');

  // ---- 热线导入: a CSV (one good ticket, one refused), then the same ticket as JSON (exists).
  const csvPath = join(tmp, 'tickets.csv');
  writeFileSync(csvPath, '\ufeffticket_no,type,description,occurred_at,grid,address,lon,lat,complainant_name,complainant_phone,reply_due\r\n'
    + `12345-2026-0900,unlicensed_vending,"路口流动摊贩, 堵塞通行",${iso(-H)},110101001001001,"人民路9号<img src=x onerror=alert(1)>",116.4,39.9,赵六,13900001111,${iso(2 * D)}\r\n`
    + `12345-2026-0901,no_such_type,不明问题,${iso(-H)},110101001001001,人民路10号,116.4,39.9,,,\r\n`);
  await page.goto(`${BASE}/console/#/hotline`);
  await page.setInputFiles('#hotline-import input[type=file]', csvPath);
  await page.click('#hotline-import button[type=submit]');
  await page.waitForSelector('#import-results');
  const sum = async (k) => Number(await page.textContent(`#import-summary [data-k=${k}]`));
  check((await sum('created')) === 1 && (await sum('rejected')) === 1 && (await sum('exists')) === 0, 'CSV import summary');
  const good = await page.$eval('#import-results tr[data-ticket="12345-2026-0900"]', (x) => ({ result: x.dataset.result, link: x.querySelector('a') && x.querySelector('a').textContent }));
  const bad = await page.textContent('#import-results tr[data-ticket="12345-2026-0901"]');
  check(good.result === 'created' && good.link && bad.includes('被拒绝'), `import rows: ${JSON.stringify(good)} / ${bad}`);
  const imported = (await api(sup, 'GET', `/v1/cases/${good.link}`)).json;
  check(imported.fields.ticket_no === '12345-2026-0900' && imported.fields.source === 'hotline' && imported.fields.complainant.phone === '13900001111', `the imported case: ${JSON.stringify(imported.fields)}`);
  // The platform's text is shown as text: markup in a ticket never becomes an element (nor runs).
  await page.click(`#import-results tr[data-ticket="12345-2026-0900"] a`);
  await page.waitForSelector('#fields');
  check((await page.textContent('#fields')).includes('人民路9号<img src=x onerror=alert(1)>') && !(await page.$('#fields img')), 'the ticket\'s markup was not shown as text');
  await page.goBack();
  await page.waitForSelector('#hotline-import');
  // The refusal is the server's: the same file through the API gives the same error.
  const again = (await api(sup, 'POST', '/v1/hotline/import', new TextEncoder().encode(`ticket_no,type,description,occurred_at,grid,address,lon,lat\r\n12345-2026-0901,no_such_type,不明问题,${iso(-H)},110101001001001,人民路10号,116.4,39.9\r\n`), { 'Content-Type': 'text/csv' })).json;
  const e901 = again.items[0].error;
  check(bad.includes(e901.code) && bad.includes(e901.message), `the refusal "${bad}" vs the API's ${JSON.stringify(e901)}`);
  await shot(page, '24-hotline-import');
  const jsonPath = join(tmp, 'tickets.json');
  writeFileSync(jsonPath, JSON.stringify({ tickets: [{ ticket_no: '12345-2026-0900', type: 'unlicensed_vending', description: '重复推送', occurred_at: iso(-H), grid: '110101001001001', address: '人民路9号', location: { lon: 116.4, lat: 39.9, crs: 'wgs84' } }] }));
  // A file the server cannot read (an unknown column): its refusal, verbatim, nothing imported.
  const badPath = join(tmp, 'broken.csv');
  writeFileSync(badPath, 'ticket_no,colour\r\n12345-2026-0999,red\r\n');
  await page.setInputFiles('#hotline-import input[type=file]', badPath);
  await page.click('#hotline-import button[type=submit]');
  await page.waitForSelector('#import-error');
  const refused = (await api(sup, 'POST', '/v1/hotline/import', new TextEncoder().encode('ticket_no,colour\r\n12345-2026-0999,red\r\n'), { 'Content-Type': 'text/csv' })).json.error;
  const shown = await page.textContent('#import-error');
  check(shown.includes(`422 ${refused.code} (${refused.field}): ${refused.message}`), `the broken CSV: "${shown}" vs ${JSON.stringify(refused)}`);
  await page.setInputFiles('#hotline-import input[type=file]', jsonPath);
  await page.click('#hotline-import button[type=submit]');
  await waitFor(page, () => { const x = document.querySelector('#import-results tr[data-ticket="12345-2026-0900"]'); return x && x.dataset.result === 'exists'; }, undefined, 'the JSON re-import as exists');
  check((await sum('exists')) === 1 && (await sum('created')) === 0, 'JSON re-import summary');
  check((await api(sup, 'GET', `/v1/cases/${good.link}`)).json.fields.description === '路口流动摊贩, 堵塞通行', 'the re-import changed the case');

  // ---- 月报 and 工作台: the workflow figures of /v1/stats. Everything above
  // happened in the last three days: this month or the one before, both checked.
  const cols = [['督办件', 'sv_issued'], ['按期落实', 'sv_done'], ['逾期落实', 'sv_done_late'], ['未落实', 'sv_open'], ['应答复工单', 'replies_due'], ['按时答复', 'replied_on_time'], ['按时答复率', 'reply_on_time_rate', pct],
    ['回访', 'callbacks'], ['满意', 'satisfied'], ['满意率', 'satisfaction_rate', pct], ['首违不罚', 'first_offence'], ['派遣', 'dispatched'], ['处置', 'disposed'], ['按时处置', 'disposed_on_time'], ['处置率', 'disposal_rate', pct], ['按时处置率', 'disposal_on_time_rate', pct]];
  const monthOf = (ms) => new Date(ms + 8 * H).toISOString().slice(0, 7);
  const nextMonth = (mo) => { const [y, m] = mo.split('-').map(Number); return m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`; };
  const thisMonth = monthOf(Date.now());
  const tot = {};
  let st = null;
  for (const month of [...new Set([monthOf(Date.now() - 3 * D), thisMonth])]) {
    const t = (await api(sup, 'GET', `/v1/stats?from=${month}-01&to=${nextMonth(month)}-01`)).json.total;
    if (month === thisMonth) st = t;
    for (const [, k] of cols) tot[k] = (tot[k] || 0) + (t[k] || 0);
    await page.goto(`${BASE}/console/#/report?month=${month}`);
    await page.waitForSelector('#report-workflow');
    await waitFor(page, (mo) => document.querySelector('#report h2').textContent.includes(mo.replace('-', '年')), month, `the report of ${month}`);
    for (const [c, k, f] of cols) {
      const got = await page.textContent(`#report-workflow td[data-col="${c}"]`);
      check(got === (f ? f(t[k]) : String(t[k])), `月报 ${month} ${c} ${got} vs ${k} ${t[k]}`);
    }
    check((await page.textContent('#sv-sentence')).includes(`派发督办件 ${t.sv_issued} 件，已按进度落实 ${t.sv_done} 件`), `the sentence: ${await page.textContent('#sv-sentence')}`);
  }
  check(tot.sv_issued === 6 && tot.sv_done === 2 && tot.sv_done_late === 1 && tot.first_offence === 1 && tot.callbacks === 1 && tot.satisfied === 1 && tot.replied_on_time === 1, `the workflow figures of the last months: ${JSON.stringify(tot)}`);
  await shot(page, '25-report-workflows');
  await page.goto(`${BASE}/console/#/`);
  await page.waitForSelector('#dash-sv');
  const svOver = (await api(sup, 'GET', '/v1/supervision?state=overdue')).json.items.length;
  check((await page.textContent('#dash-sv')) === `${st.sv_issued} / ${st.sv_done}` && Number(await page.textContent('#dash-sv-overdue')) === svOver, `工作台 督办 ${await page.textContent('#dash-sv')} / ${await page.textContent('#dash-sv-overdue')}`);
  for (const [id, k] of [['#dash-reply-rate', 'reply_on_time_rate'], ['#dash-satisfaction', 'satisfaction_rate'], ['#dash-disposal', 'disposal_rate'], ['#dash-disposal-on-time', 'disposal_on_time_rate']])
    check((await page.textContent(id)) === pct(st[k]), `工作台 ${id} ${await page.textContent(id)} vs ${pct(st[k])}`);
  check(Number(await page.textContent('#dash-first-offence')) === st.first_offence, '工作台 首违不罚');
  await shot(page, '26-dashboard-workflows');

  // ---- 黑名单: the API's repeat offenders, the first offence flagged.
  const rep = (await api(sup, 'GET', '/v1/parties/repeat')).json.items;
  await page.goto(`${BASE}/console/#/repeat`);
  await page.waitForSelector('#repeat-table');
  await waitFor(page, (n) => document.querySelectorAll('#repeat-table tbody tr').length === n, rep.length, `${rep.length} repeat offenders`);
  const rrow = await page.$$eval('#repeat-table tbody tr', (r) => r.map((x) => ({ party: x.dataset.party, cells: [...x.children].map((c) => c.textContent) })));
  for (const w of rep) {
    const r = rrow.find((x) => x.party === (w.party.id_no || w.party.uscc));
    check(r && Number(r.cells[3]) === w.count, `repeat ${JSON.stringify(w.party)}: ${JSON.stringify(r)}`);
  }
  const wang = rrow.find((x) => x.party === party.id_no);
  check(wang && wang.cells[0] === '王五' && wang.cells[4] === '已适用', `王五 in the 黑名单: ${JSON.stringify(wang)}`);
  await shot(page, '27-repeat-offenders');
  // ---- An admin names the unit: the same orders; the 黑名单 with the id masked; 工作台 loads.
  const apage = await newPage(browser);
  await signIn(apage, 'admin');
  await apage.waitForSelector('#dash-sv');
  check(!(await apage.$('main .error')) && (await apage.textContent('#dash-sv-overdue')) === '—', 'the admin\'s 工作台');
  await apage.goto(`${BASE}/console/#/supervision`);
  await apage.waitForSelector('#unit-pick');
  await apage.fill('#unit-pick input[name=unit]', 'U1');
  await apage.click('#unit-pick button[type=submit]');
  const admSv = (await api(adm, 'GET', '/v1/supervision?state=all&unit=U1')).json.items;
  await waitFor(apage, (n) => document.querySelectorAll('#sv-table tbody tr').length === n, admSv.length, `the admin's ${admSv.length} orders of U1`);
  await apage.click('.tabs a[data-state=overdue]');
  await waitFor(apage, () => location.hash.includes('state=overdue') && location.hash.includes('unit=U1'), undefined, 'the tab keeps the unit');
  await apage.goto(`${BASE}/console/#/repeat?unit=U1`);
  await apage.waitForSelector('#repeat-table tbody tr');
  const admRep = (await api(adm, 'GET', '/v1/parties/repeat?unit=U1')).json.items;
  const shownIds = await apage.$$eval('#repeat-table tbody tr', (r) => r.map((x) => x.dataset.party));
  check(admRep.length === shownIds.length && shownIds.includes('110***********1234') && !shownIds.includes(party.id_no), `the admin's 黑名单: ${shownIds}`);
  await apage.context().close();
  console.log('workflows: ok');
} finally {
  await browser.close();
  cleanup();
  rmSync(tmp, { recursive: true, force: true });
}
