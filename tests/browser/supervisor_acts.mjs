// A supervisor acts: 立案 a reported case, sees a refused 立案 verbatim,
// resolves a conflict, files a case from the desk, revokes a phone.
import { waitFor, launch, newPage, signIn, shot, check, apiLogin, api, cleanup, BASE } from './lib.mjs';

const browser = await launch();
try {
  const sup = await apiLogin('sup1', 'sup1-check');
  const page = await newPage(browser);
  await signIn(page, 'sup1');

  // 立案 on a reported digital case: offered, applied, numbered.
  await page.goto(`${BASE}/console/#/case/cs-dig-0`);
  await page.waitForSelector('#actions button[data-to]');
  const offered = await page.$$eval('#actions button[data-to]', (b) => b.map((x) => x.dataset.to).sort());
  check(JSON.stringify(offered) === JSON.stringify(['filed', 'rejected']), `actions offered on 上报: ${offered}`);
  await page.click('#actions button[data-to=filed]');
  await page.waitForSelector('#action-result.ok');
  const after = (await api(sup, 'GET', '/v1/cases/cs-dig-0')).json;
  check(after.status === 'filed' && after.fields.case_no, `after 立案: ${after.status} ${after.fields.case_no}`);
  await waitFor(page, (no) => document.querySelector('#case-detail h2').textContent.includes(no), after.fields.case_no);
  await shot(page, '04-case-filed');

  // 立案 on a general clue with no party: the schema offers it, the guard
  // refuses; the page shows the server's words.
  await page.goto(`${BASE}/console/#/case/cs-clue1`);
  await page.waitForSelector('#actions button[data-to=filed]');
  await page.click('#actions button[data-to=filed]');
  await page.waitForSelector('#action-result.error');
  const said = await page.textContent('#action-result');
  const hist = (await api(sup, 'GET', '/v1/rejections')).json;
  const rej = (hist.items || hist).find((x) => x.record_id === 'cs-clue1');
  check(rej && said.includes(rej.error.message) && said.includes(rej.error.code), `refusal not verbatim: "${said}" vs ${JSON.stringify(rej && rej.error)}`);
  check((await api(sup, 'GET', '/v1/cases/cs-clue1')).json.status === 'clue', 'the clue moved');
  await shot(page, '05-case-refused');

  // 冲突与隔离: both values side by side; take the phone's.
  await page.click('nav a[href="#/conflicts"]');
  await page.waitForSelector('#conflicts section.conflict');
  const text = await page.textContent('#conflicts');
  check(text.includes('李四') && text.includes('李斯') && text.includes('当事人'), 'both values of the conflict');
  check(text.includes('role_forbidden') || text.includes('forbidden'), `the rejection and its reason: ${text.slice(0, 400)}`);
  await shot(page, '06-conflicts');
  await page.click('#conflicts section.conflict .side > div:nth-child(2) button');
  await page.waitForSelector('#conflicts .ok');
  const c = (await api(sup, 'GET', '/v1/cases/cs-conflict')).json;
  check(c.fields.party.name === '李斯', `after resolve the party is ${c.fields.party.name}`);
  const open = (await api(sup, 'GET', '/v1/conflicts?state=open')).json;
  check((open.items || open).length === 0, 'a conflict is still open');

  // 立案登记 from the desk: a hotline report.
  await page.goto(`${BASE}/console/#/new`);
  await page.waitForSelector('#new-case');
  await page.selectOption('#new-case select[name=type]', 'illegal_parking');
  await page.selectOption('#new-case select[name=procedure]', 'digital');
  await page.selectOption('#new-case select[name=source]', 'hotline');
  await page.fill('#new-case input[name=grid]', '110101001001001');
  await page.fill('#new-case input[name=address]', '人民路8号');
  await page.fill('#new-case textarea[name=description]', '市民来电：机动车占用人行道');
  await shot(page, '07-new-case');
  await page.click('#new-case button[type=submit]');
  await page.waitForSelector('#case-detail');
  const id = decodeURIComponent(await page.evaluate(() => location.hash.slice('#/case/'.length)));
  const made = (await api(sup, 'GET', `/v1/cases/${id}`)).json;
  check(made && made.fields.source === 'hotline' && made.status === 'reported' && made.fields.unit === 'U1', `new case: ${JSON.stringify(made).slice(0, 300)}`);

  // 设备: the console's own session is listed; revoke off2's phone.
  await page.click('nav a[href="#/devices"]');
  await page.waitForSelector('#device-table tr[data-id=phone-off2]');
  const devs = await page.$$eval('#device-table tbody tr', (r) => r.map((x) => x.dataset.id));
  check(devs.some((d) => d.startsWith('console-')), `the console session is not a device: ${devs}`);
  await page.click('#device-table tr[data-id=phone-off2] button[data-act=revoke]');
  await page.waitForSelector('.confirm');
  await shot(page, '08-devices-confirm');
  check((await api(sup, 'GET', '/v1/devices')).json.find((d) => d.device_id === 'phone-off2').revoked === false, 'revoked before the confirmation');
  await page.click('#confirm-yes');
  await page.waitForSelector('#devices .ok');
  const dv = (await api(sup, 'GET', '/v1/devices')).json.find((d) => d.device_id === 'phone-off2');
  check(dv.revoked === true && !dv.wipe, `phone-off2 after revoke: ${JSON.stringify(dv)}`);
  const relog = await fetch(`${BASE}/v1/auth/login`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: 'off2', password: 'Secret-off2-pw1', device_id: 'phone-off2' }) });
  check(relog.status === 401, `the revoked phone logged in again: ${relog.status}`);
  await shot(page, '09-devices');
  console.log('supervisor_acts: ok');
} finally {
  await browser.close();
  cleanup();
}
