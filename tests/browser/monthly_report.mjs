// 月报: the figures on the print layout against /v1/stats, the CSV (BOM,
// Chinese headers), an A4 PDF printed by chromium; 人员 for the admin.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor, launch, newPage, signIn, shot, check, apiLogin, api, cleanup, BASE, SHOTS } from './lib.mjs';

const browser = await launch();
try {
  const sup = await apiLogin('sup1', 'sup1-check');
  // The month in which the seed's seven digital cases were opened (3 days ago, China time).
  const month = new Date(Date.now() - 3 * 86400e3 + 8 * 3600e3).toISOString().slice(0, 7);
  const [y, m] = month.split('-').map(Number);
  const next = m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`;
  const stats = (await api(sup, 'GET', `/v1/stats?from=${month}-01&to=${next}-01&group_by=type`)).json;
  const byGrid = (await api(sup, 'GET', `/v1/stats?from=${month}-01&to=${next}-01&group_by=grid`)).json;
  check(stats && stats.total, 'stats');

  const page = await newPage(browser);
  await signIn(page, 'sup1');
  await page.goto(`${BASE}/console/#/report?month=${month}`);
  await page.waitForSelector('#report-total td[data-col=登记]');
  const cell = (c) => page.textContent(`#report-total td[data-col="${c}"]`);
  check(Number(await cell('登记')) === stats.total.opened, `登记 ${await cell('登记')} != ${stats.total.opened}`);
  check(Number(await cell('受理')) === stats.total.accepted, `受理 ${await cell('受理')} != ${stats.total.accepted}`);
  check(Number(await cell('办结')) === stats.total.closed, `办结 ${await cell('办结')} != ${stats.total.closed}`);
  check(Number(await cell('超期')) === stats.total.overdue, `超期 ${await cell('超期')} != ${stats.total.overdue}`);
  check(Number(await cell('撤销')) === stats.total.voided, `撤销 ${await cell('撤销')} != ${stats.total.voided}`);
  const rate = stats.total.closure_rate === null ? '—' : `${(stats.total.closure_rate * 100).toFixed(1)}%`;
  check((await cell('办结率')) === rate, `办结率 ${await cell('办结率')} != ${rate}`);
  check(stats.total.opened >= 7 && stats.total.overdue >= 1, `the seed shows in the stats: ${JSON.stringify(stats.total)}`);
  const yuan = (v) => Number(v).toFixed(2);
  for (const [col, key, fmt] of [['作出处罚决定', 'decided', String], ['罚款决定金额(元)', 'fines_imposed', yuan], ['已缴款', 'paid', String], ['罚没款缴纳金额(元)', 'fines_paid', yuan]])
    check((await cell(col)) === fmt(stats.total[key]), `${col} ${await cell(col)} != ${fmt(stats.total[key])}`);
  // By source and by procedure: the rows are the API's groups, figure by figure.
  for (const g of ['source', 'procedure']) {
    const want = (await api(sup, 'GET', `/v1/stats?from=${month}-01&to=${next}-01&group_by=${g}`)).json;
    const rows = await page.$$eval(`table[data-group=${g}] tbody tr`, (r) => r.map((x) => ({ key: x.dataset.key, label: x.children[0].textContent, cells: Object.fromEntries([...x.querySelectorAll('td[data-col]')].map((c) => [c.dataset.col, c.textContent])) })));
    check(rows.length === want.groups.length && rows.length > 0, `${g} rows ${rows.length} != ${want.groups.length}`);
    want.groups.forEach((w, i) => {
      const r = rows[i];
      check(r.key === (w.key ?? ''), `${g} row ${i}: ${r.key} != ${w.key}`);
      check(Number(r.cells['登记']) === w.opened && Number(r.cells['受理']) === w.accepted && Number(r.cells['办结']) === w.closed, `${g} ${w.key}: ${JSON.stringify(r.cells)} vs ${JSON.stringify(w)}`);
      check(r.cells['罚款决定金额(元)'] === yuan(w.fines_imposed) && r.cells['罚没款缴纳金额(元)'] === yuan(w.fines_paid), `${g} ${w.key} fines: ${JSON.stringify(r.cells)} vs ${JSON.stringify(w)}`);
    });
    if (g === 'source') check(rows.some((r) => r.label === '巡查发现'), `sources by label: ${rows.map((r) => r.label)}`);
    if (g === 'procedure') check(rows.some((r) => r.label === '简易程序' || r.label === '数字城管事件'), `procedures by label: ${rows.map((r) => r.label)}`);
  }
  const typeRows = await page.$$eval('table[data-group=type] tbody tr', (r) => r.map((x) => [...x.children].map((c) => c.textContent)));
  check(typeRows.length === stats.groups.length, `type rows ${typeRows.length} != ${stats.groups.length}`);
  check(typeRows.some((r) => r[0] === '无照经营游商'), `types by label: ${JSON.stringify(typeRows)}`);
  const gridRows = await page.$$eval('table[data-group=grid] tbody tr', (r) => r.length);
  check(gridRows === byGrid.groups.length, `grid rows ${gridRows} != ${byGrid.groups.length}`);

  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#report-csv')]);
  const csv = readFileSync(await dl.path(), 'utf8');
  check(csv.charCodeAt(0) === 0xfeff && csv.includes('\r\n'), 'report CSV: BOM and CRLF');
  const lines = csv.slice(1).trim().split('\r\n');
  check(lines[0] === '月份,分组,项目,登记,受理,办结,其中本期受理已办结,办结率,不予立案,移送,超期,作出处罚决定,罚款决定金额(元),已缴款,罚没款缴纳金额(元),办结用时中位数(小时),撤销', `report CSV header: ${lines[0]}`);
  check(lines[1].startsWith(`${month},合计,全部,${stats.total.opened},${stats.total.accepted},${stats.total.closed},`), `report CSV total: ${lines[1]}`);
  check(lines.some((l) => l.startsWith(`${month},按案件来源,`)) && lines.some((l) => l.startsWith(`${month},按办案程序,`)), 'report CSV by source and procedure');

  // The month the seed's simple case was decided (10 days ago): ¥200 imposed.
  const dmonth = new Date(Date.now() - 10 * 86400e3 + 8 * 3600e3).toISOString().slice(0, 7);
  const [dy, dm] = dmonth.split('-').map(Number);
  const dnext = dm === 12 ? `${dy + 1}-01` : `${dy}-${String(dm + 1).padStart(2, '0')}`;
  const dstats = (await api(sup, 'GET', `/v1/stats?from=${dmonth}-01&to=${dnext}-01&group_by=procedure`)).json;
  check(dstats.total.decided >= 1 && dstats.total.fines_imposed >= 200, `the decided fine is not in the stats: ${JSON.stringify(dstats.total)}`);
  if (dmonth !== month) {
    await page.goto(`${BASE}/console/#/report?month=${dmonth}`);
    await waitFor(page, (m) => document.querySelector('#report h2') && document.querySelector('#report h2').textContent.includes(m.replace('-', '年')), dmonth, 'the month of the decision');
  }
  await waitFor(page, (v) => document.querySelector('#report-total td[data-col="罚款决定金额(元)"]').textContent === v, yuan(dstats.total.fines_imposed), 'the fines imposed');
  const simpleRow = await page.$eval('table[data-group=procedure] tr[data-key=simple] td[data-col="罚款决定金额(元)"]', (c) => c.textContent);
  const simpleApi = dstats.groups.find((x) => x.key === 'simple');
  check(simpleRow === yuan(simpleApi.fines_imposed), `simple procedure fines ${simpleRow} != ${yuan(simpleApi.fines_imposed)}`);
  await shot(page, '11-report');
  if (dmonth !== month) {
    await page.goto(`${BASE}/console/#/report?month=${month}`);
    await page.waitForSelector('#report-total td[data-col=登记]');
  }

  // Print: an A4 PDF of the print layout (no menu, no buttons).
  await page.emulateMedia({ media: 'print' });
  check(await page.$eval('header.top', (e) => getComputedStyle(e).display) === 'none', 'the menu prints');
  await shot(page, '12-report-print');
  const pdf = await page.pdf({ preferCSSPageSize: true, printBackground: true });
  writeFileSync(join(SHOTS, 'report.pdf'), pdf);
  const head = pdf.subarray(0, 5).toString('latin1');
  const text = pdf.toString('latin1');
  const box = text.match(/\/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]/);
  check(head === '%PDF-' && box, 'not a PDF');
  check(Math.abs(Number(box[1]) - 595.9) < 2 && Math.abs(Number(box[2]) - 841.9) < 2, `not A4: ${box[0]}`);
  await page.emulateMedia({ media: 'screen' });

  // 人员: the admin's page; a supervisor has no such menu.
  check(!(await page.$('nav a[href="#/people"]')), 'a supervisor sees 人员');
  const admin = await newPage(browser);
  await signIn(admin, 'admin');
  await admin.click('nav a[href="#/people"]');
  await admin.waitForSelector('#people table tbody tr');
  await admin.fill('#people form input[name=username]', 'wang.fang');
  await admin.fill('#people form input[name=name]', '王芳');
  await admin.fill('#people form input[name=password]', 'Secret-wang-pw1');
  await admin.selectOption('#people form select[name=role]', 'officer');
  await admin.fill('#people form input[name=unit]', 'U1');
  await admin.fill('#people form input[name=grids]', '110101001001001');
  await admin.click('#people form button[type=submit]');
  await admin.waitForSelector('#people .ok');
  await waitFor(admin, () => document.querySelector('#people table').textContent.includes('王芳'));
  await shot(admin, '13-people');
  console.log('monthly_report: ok');
} finally {
  await browser.close();
  cleanup();
}
