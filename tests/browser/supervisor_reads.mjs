// A supervisor reads: sign in, 工作台, the list filtered (and its CSV), a
// case with its history and evidence, a video played from the middle.
import { readFileSync } from 'node:fs';
import { waitFor, launch, newPage, signIn, shot, check, apiLogin, api, cleanup } from './lib.mjs';
import { makeMedia, addEvidence } from './media.mjs';

const browser = await launch();
try {
  const off1 = await apiLogin('off1', 'phone-off1');
  const sup = await apiLogin('sup1', 'sup1-check');
  const rec = (await api(sup, 'GET', '/v1/cases/cs-dig-3')).json;
  const ev = await addEvidence(off1, await makeMedia(browser), 'cs-dig-3', rec.version);

  const page = await newPage(browser);
  await signIn(page, 'sup1');
  await page.waitForSelector('#dashboard .cards');
  await page.waitForSelector('#dashboard canvas');
  const stats = (await api(sup, 'GET', `/v1/stats?from=${new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 7)}-01&to=2100-01-01`)).json;
  check(stats, 'stats');
  await shot(page, '01-dashboard');
  const cards = await page.textContent('#dashboard');
  check(cards.includes('超期案件') && cards.includes('本月办结率') && cards.includes('待处理冲突'), `dashboard text: ${cards.slice(0, 300)}`);

  // The list, filtered by status through the form; the link carries the filter.
  await page.click('nav a[href="#/cases"]');
  await page.waitForSelector('#case-table tbody tr');
  await page.selectOption('select[name=status]', 'dispatched');
  await page.click('#cases form button[type=submit]');
  await waitFor(page, () => location.hash.includes('status=dispatched'));
  await waitFor(page, () => document.querySelectorAll('#case-table tbody tr').length > 0 && [...document.querySelectorAll('#case-table tbody tr td:nth-child(3)')].every((td) => td.textContent === '派遣'));
  const want = (await api(sup, 'GET', '/v1/cases?status=dispatched')).json.items.map((c) => c.id).sort();
  const got = (await page.$$eval('#case-table tbody tr', (rows) => rows.map((r) => r.dataset.id))).sort();
  check(JSON.stringify(want) === JSON.stringify(got), `filtered list ${got} != API ${want}`);
  await shot(page, '02-cases-filtered');
  // Overdue: the late simple case and nothing that is not overdue.
  await page.goto(`${BASE()}/console/#/cases?overdue=true`);
  const lateApi = (await api(sup, 'GET', '/v1/cases?overdue=true')).json.items.map((c) => c.id);
  check(lateApi.includes('cs-simple-late'), `the API's overdue list: ${lateApi}`);
  await waitFor(page, (ids) => [...document.querySelectorAll('#case-table tbody tr')].map((r) => r.dataset.id).sort().join() === ids, [...lateApi].sort().join(), 'the overdue list');

  // CSV of exactly the filter: BOM, Chinese headers, labels, names.
  await page.goto(`${BASE()}/console/#/cases?status=dispatched`);
  await page.waitForSelector('#case-table tbody tr');
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
  const csv = readFileSync(await dl.path(), 'utf8');
  check(csv.charCodeAt(0) === 0xfeff, 'CSV has no BOM');
  const lines = csv.slice(1).trim().split('\r\n');
  check(lines[0].startsWith('案件编号,案件类型,办案程序,状态'), `CSV header: ${lines[0]}`);
  check(lines.length - 1 === want.length, `CSV rows ${lines.length - 1} != ${want.length}`);
  check(lines.slice(1).every((l) => l.includes('派遣') && l.includes('数字城管事件')), `CSV rows: ${lines[1]}`);

  // A case: fields by label, history by name, evidence.
  await page.goto(`${BASE()}/console/#/case/cs-dig-3`);
  await page.waitForSelector('#case-detail #timeline li');
  const detail = await page.textContent('#case-detail');
  check(detail.includes('问题描述/案情') && detail.includes('占道经营 第3号') && detail.includes('处置中'), 'case fields by label');
  check(detail.includes('王强') || detail.includes('管理员') || detail.includes('admin'), 'history names people');
  check(detail.includes(ev.video) && detail.includes('文件未上传'), 'evidence with SHA-256 and the missing item marked');
  await waitFor(page, () => { const i = document.querySelector('.evidence img'); return i && i.complete && i.naturalWidth === 160; });

  // Play the video from the middle: a Range request, a seek, time moving on.
  await waitFor(page, () => { const v = document.querySelector('video'); return v && v.readyState >= 1; });
  const dur = await page.evaluate(async () => {
    const v = document.querySelector('video');
    v.muted = true;
    if (!isFinite(v.duration)) { v.currentTime = 1e6; await new Promise((r) => v.addEventListener('durationchange', r, { once: true })); }
    return v.duration;
  });
  check(dur > 3 && dur < 6, `video duration ${dur}`);
  const pos = await page.evaluate(async (d) => {
    const v = document.querySelector('video');
    v.currentTime = d / 2;
    await new Promise((r) => v.addEventListener('seeked', r, { once: true }));
    await v.play();
    await new Promise((r) => setTimeout(r, 600));
    v.pause();
    return v.currentTime;
  }, dur);
  check(pos > dur / 2 && pos < dur, `the video did not play on from the middle: ${pos} of ${dur}`);
  // Chromium's media requests do not reach playwright's network events: the C
  // test reads the 206 answers in the server's access log.
  await shot(page, '03-case-detail');
  console.log('supervisor_reads: ok');
} finally {
  await browser.close();
  cleanup();
}
function BASE() { return process.argv[2]; }
