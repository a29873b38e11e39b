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
  await page.waitForSelector('#report-total td[data-col=受理]');
  const cell = (c) => page.textContent(`#report-total td[data-col="${c}"]`);
  check(Number(await cell('受理')) === stats.total.opened, `受理 ${await cell('受理')} != ${stats.total.opened}`);
  check(Number(await cell('办结')) === stats.total.closed, `办结 ${await cell('办结')} != ${stats.total.closed}`);
  check(Number(await cell('超期')) === stats.total.overdue, `超期 ${await cell('超期')} != ${stats.total.overdue}`);
  check(Number(await cell('撤销')) === stats.total.voided, `撤销 ${await cell('撤销')} != ${stats.total.voided}`);
  const rate = stats.total.closure_rate === null ? '—' : `${(stats.total.closure_rate * 100).toFixed(1)}%`;
  check((await cell('办结率')) === rate, `办结率 ${await cell('办结率')} != ${rate}`);
  check(stats.total.opened >= 7 && stats.total.overdue >= 1, `the seed shows in the stats: ${JSON.stringify(stats.total)}`);
  const typeRows = await page.$$eval('table[data-group=type] tbody tr', (r) => r.map((x) => [...x.children].map((c) => c.textContent)));
  check(typeRows.length === stats.groups.length, `type rows ${typeRows.length} != ${stats.groups.length}`);
  check(typeRows.some((r) => r[0] === '无照经营游商'), `types by label: ${JSON.stringify(typeRows)}`);
  const gridRows = await page.$$eval('table[data-group=grid] tbody tr', (r) => r.length);
  check(gridRows === byGrid.groups.length, `grid rows ${gridRows} != ${byGrid.groups.length}`);
  await shot(page, '11-report');

  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#report-csv')]);
  const csv = readFileSync(await dl.path(), 'utf8');
  check(csv.charCodeAt(0) === 0xfeff && csv.includes('\r\n'), 'report CSV: BOM and CRLF');
  const lines = csv.slice(1).trim().split('\r\n');
  check(lines[0] === '月份,分组,项目,受理,办结,其中本期受理已办结,办结率,超期,办结用时中位数(小时),撤销', `report CSV header: ${lines[0]}`);
  check(lines[1].startsWith(`${month},合计,全部,${stats.total.opened},${stats.total.closed},`), `report CSV total: ${lines[1]}`);

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
