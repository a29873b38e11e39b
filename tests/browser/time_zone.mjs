// The server's time_zone setting (here -03:30, started so by the C test)
// governs the console: every time shown and every date bound it sends.
import { waitFor, launch, newPage, signIn, shot, check, apiLogin, api, cleanup, BASE } from './lib.mjs';

const OFF = -210; // minutes
const shown = (iso) => new Date(new Date(iso).getTime() + OFF * 60000).toISOString().slice(0, 16).replace('T', ' ');

const browser = await launch();
try {
  const sup = await apiLogin('sup1', 'sup1-check');
  const page = await newPage(browser); // the browser itself runs in Asia/Shanghai (lib.mjs)
  const sent = [];
  page.on('request', (r) => { if (r.url().includes('/v1/')) sent.push(decodeURIComponent(r.url())); });
  await signIn(page, 'sup1');

  // A case: its times in the server's zone, not the browser's.
  const rec = (await api(sup, 'GET', '/v1/cases/cs-dig-3')).json;
  await page.goto(`${BASE}/console/#/case/cs-dig-3`);
  await page.waitForSelector('#fields');
  const rows = await page.$$eval('#fields tr', (r) => Object.fromEntries(r.map((x) => [x.children[0].textContent, x.children[1].textContent])));
  check(rows['更新'] === shown(rec.updated_at), `更新 ${rows['更新']} != ${shown(rec.updated_at)} (${rec.updated_at})`);
  check(rows['登记'].startsWith(shown(rec.created_at)), `登记 ${rows['登记']} != ${shown(rec.created_at)}`);
  const hist = (await api(sup, 'GET', '/v1/cases/cs-dig-3/history')).json;
  const first = (hist.items || hist.entries || hist)[0];
  check((await page.textContent('#timeline li .meta')).startsWith(shown(first.at)), `history time != ${shown(first.at)}`);

  // The list's date filter: midnight of the chosen day in that zone, to the midnight after the last day.
  await page.goto(`${BASE}/console/#/cases?opened_from=2026-10-01&opened_to=2026-10-31`);
  await page.waitForSelector('#cases form');
  await waitFor(page, () => document.querySelector('#case-table tbody') !== null);
  check(sent.some((u) => u.includes('opened_from=2026-10-01T00:00:00-03:30') && u.includes('opened_to=2026-11-01T00:00:00-03:30')), `the bounds sent: ${sent.filter((u) => u.includes('opened')).join(' ')}`);

  // The report names the zone and asks for the month's midnights in it.
  await page.goto(`${BASE}/console/#/report?month=2026-11`);
  await page.waitForSelector('#report-total');
  check((await page.textContent('#report')).includes('UTC-03:30'), 'the report does not name its zone');
  check(sent.some((u) => u.includes('/v1/stats?from=2026-11-01T00:00:00-03:30&to=2026-12-01T00:00:00-03:30')), `stats bounds: ${sent.filter((u) => u.includes('stats')).join(' ')}`);
  await shot(page, '17-time-zone');
  console.log('time_zone: ok');
} finally {
  await browser.close();
  cleanup();
}
