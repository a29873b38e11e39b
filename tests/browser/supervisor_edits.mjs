// A supervisor filters on the server (source, procedure, opened dates: a page
// holds exactly `limit` matching cases, the CSV is the filtered set), edits a
// field the schema lets the role write, and corrects a frozen fine: first
// over the Art. 51 cap (refused, the server's words shown), then within it
// (applied, shown in the history as a correction with its reason).
import { readFileSync } from 'node:fs';
import { waitFor, launch, newPage, signIn, shot, check, apiLogin, api, push, cleanup, BASE } from './lib.mjs';

const rowIds = (page) => page.$$eval('#case-table tbody tr', (r) => r.map((x) => x.dataset.id));
const chinaDay = (ms) => new Date(ms + 8 * 3600e3).toISOString().slice(0, 10);

const browser = await launch();
try {
  const off1 = await apiLogin('off1', 'phone-off1');
  const sup = await apiLogin('sup1', 'sup1-check');
  const now = new Date().toISOString();
  const mk = (id, source, procedure) => ({
    op: 'create', record_id: id, type: 'unlicensed_vending', at: now,
    fields: { procedure, source, description: `热线反映 ${id}`, occurred_at: now, grid: '110101001001001', address: '人民路1号', unit: 'U1', location: { lon: 116.4, lat: 39.9, crs: 'wgs84' } },
  });
  const made = await push(off1, [mk('cs-hot-1', 'hotline', 'digital'), mk('cs-hot-2', 'hotline', 'general'), mk('cs-hot-3', 'hotline', 'digital')]);
  check(made.results.every((r) => r.status === 'applied'), `hotline cases: ${JSON.stringify(made.results)}`);

  const page = await newPage(browser);
  await signIn(page, 'sup1');

  // source=hotline, 2 a page: page one holds exactly 2 (the API's first page), page two the third.
  await page.goto(`${BASE}/console/#/cases?source=hotline&limit=2`);
  await waitFor(page, () => document.querySelectorAll('#case-table tbody tr').length > 0, undefined, 'the first page');
  const api1 = (await api(sup, 'GET', '/v1/cases?source=hotline&limit=2')).json;
  let got = await rowIds(page);
  check(got.length === 2 && JSON.stringify(got) === JSON.stringify(api1.items.map((c) => c.id)), `page 1: ${got} vs API ${api1.items.map((c) => c.id)}`);
  await shot(page, '14-cases-by-source');
  await page.click('#next-page');
  await waitFor(page, (first) => { const r = [...document.querySelectorAll('#case-table tbody tr')].map((x) => x.dataset.id); return r.length && !r.includes(first); }, got[0], 'page 2');
  const page2 = await rowIds(page);
  const all = (await api(sup, 'GET', '/v1/cases?source=hotline')).json.items.map((c) => c.id).sort();
  check(JSON.stringify([...got, ...page2].sort()) === JSON.stringify(all) && all.length === 3, `both pages ${[...got, ...page2]} != ${all}`);

  // The CSV is exactly the filtered set (every page).
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
  const lines = readFileSync(await dl.path(), 'utf8').slice(1).trim().split('\r\n');
  check(lines.length - 1 === 3 && lines.slice(1).every((l) => l.includes('热线') || l.includes('12345')), `CSV of source=hotline: ${lines.join(' | ')}`);

  // The form: procedure and opened dates (today, China time) go to the server.
  await page.goto(`${BASE}/console/#/cases`);
  await page.waitForSelector('#case-table tbody tr');
  await page.selectOption('#cases select[name=procedure]', 'digital');
  const today = chinaDay(Date.now());
  await page.fill('#cases input[name=opened_from]', today);
  await page.fill('#cases input[name=opened_to]', today);
  await page.click('#cases form button[type=submit]');
  await waitFor(page, () => location.hash.includes('opened_from=') && location.hash.includes('procedure=digital'));
  const tomorrow = chinaDay(Date.now() + 86400e3);
  const want = (await api(sup, 'GET', `/v1/cases?procedure=digital&opened_from=${today}&opened_to=${tomorrow}`)).json.items.map((c) => c.id).sort();
  check(JSON.stringify(want) === JSON.stringify(['cs-hot-1', 'cs-hot-3']), `the API's digital cases opened today: ${want}`);
  await waitFor(page, (w) => [...document.querySelectorAll('#case-table tbody tr')].map((x) => x.dataset.id).sort().join() === w, want.join(), 'the opened-today list');

  // 修改: a non-frozen field this role may write (the address of a dispatched case).
  await page.goto(`${BASE}/console/#/case/cs-dig-2`);
  await page.waitForSelector('#edit-field select[name=field]');
  await page.selectOption('#edit-field select[name=field]', 'address');
  await page.fill('#edit-field input[name=value]', '新华路99号');
  await page.click('#edit-field button[type=submit]');
  await page.waitForSelector('#action-result.ok');
  check((await api(sup, 'GET', '/v1/cases/cs-dig-2')).json.fields.address === '新华路99号', 'the address was not changed');

  // A decided simple case: the fine is frozen, so 修改 does not offer it and 更正 does.
  await page.goto(`${BASE}/console/#/case/cs-simple-late`);
  await page.waitForSelector('#correct-field select[name=field]');
  const editable = await page.$$eval('#edit-field select[name=field] option', (o) => o.map((x) => x.value)).catch(() => []);
  check(!editable.includes('fine_amount') && !editable.includes('party'), `修改 offers frozen fields: ${editable}`);
  const correctable = await page.$$eval('#correct-field select[name=field] option', (o) => o.map((x) => [x.value, x.textContent]));
  check(correctable.some(([v, t]) => v === 'fine_amount' && t.includes('已冻结')), `更正 does not offer the fine: ${JSON.stringify(correctable)}`);

  // Over the cap of Art. 51 (¥200 for a person): the server refuses; its words, verbatim.
  await page.selectOption('#correct-field select[name=field]', 'fine_amount');
  await page.fill('#correct-field input[name=value]', '500');
  await page.fill('#correct-field input[name=reason]', '按决定书更正罚款金额');
  await page.click('#correct-field button[type=submit]');
  await page.waitForSelector('#action-result.error');
  const said = await page.textContent('#action-result');
  const rejs = (await api(sup, 'GET', '/v1/rejections')).json;
  const rej = (rejs.items || rejs).filter((x) => x.record_id === 'cs-simple-late').pop();
  check(rej && said.includes(rej.error.code) && said.includes(rej.error.message) && said.includes(rej.error.field), `refusal not verbatim: "${said}" vs ${JSON.stringify(rej && rej.error)}`);
  check((await api(sup, 'GET', '/v1/cases/cs-simple-late')).json.fields.fine_amount === 200, 'the fine changed although refused');
  await shot(page, '15-correction-refused');

  // Within the cap: applied, and the history shows a correction with its reason.
  await page.selectOption('#correct-field select[name=field]', 'fine_amount');
  await page.fill('#correct-field input[name=value]', '150');
  await page.fill('#correct-field input[name=reason]', '罚款金额录入错误，依决定书更正为150元');
  await page.click('#correct-field button[type=submit]');
  await page.waitForSelector('#action-result.ok');
  const after = (await api(sup, 'GET', '/v1/cases/cs-simple-late')).json;
  check(after.fields.fine_amount === 150, `after the correction the fine is ${after.fields.fine_amount}`);
  const hist = (await api(sup, 'GET', '/v1/cases/cs-simple-late/history')).json;
  const entry = (hist.items || hist.entries || hist).find((x) => x.op === 'correct');
  check(entry && entry.reason === '罚款金额录入错误，依决定书更正为150元', `the audit has no correction: ${JSON.stringify(hist).slice(0, 400)}`);
  await page.waitForSelector('#timeline li.correct');
  const li = await page.textContent('#timeline li.correct');
  check(li.includes('更正') && li.includes('罚款金额') && li.includes('200.00') && li.includes('150.00') && li.includes('罚款金额录入错误'), `history entry: ${li}`);
  await shot(page, '16-case-corrected');
  console.log('supervisor_edits: ok');
} finally {
  await browser.close();
  cleanup();
}
