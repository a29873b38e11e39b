// An auxiliary and an officer of another unit sign in to the console and
// see none of it: no menu data, and every API call the pages make is 403.
import { launch, newPage, signIn, shot, check, cleanup, BASE } from './lib.mjs';

const browser = await launch();
try {
  for (const user of ['aux1', 'offx']) {
    const page = await newPage(browser);
    await signIn(page, user);
    await page.waitForSelector('#no-access');
    await shot(page, `10-no-access-${user}`);
    for (const hash of ['#/cases', '#/case/cs-dig-3', '#/conflicts', '#/devices', '#/report', '#/people', '#/supervision', '#/hotline', '#/repeat']) {
      await page.goto(`${BASE}/console/${hash}`);
      await page.waitForSelector('#no-access');
      const body = await page.textContent('main');
      check(!body.includes('占道经营') && !body.includes('cs-dig') && !body.includes('phone-off1'), `${user} sees data on ${hash}`);
    }
    const codes = await page.evaluate(async () => {
      const out = {};
      for (const p of ['/v1/cases', '/v1/stats', '/v1/conflicts', '/v1/rejections', '/v1/devices', '/console/api/people', '/v1/cases/cs-dig-3', '/v1/admin/users', '/v1/parties/repeat']) {
        const r = await fetch(p, { credentials: 'same-origin' });
        out[p] = r.status;
      }
      // 督办: an officer reads only the orders addressed to him (none in another unit); an auxiliary none.
      const sv = await fetch('/v1/supervision?state=all', { credentials: 'same-origin' });
      out.sv = [sv.status, sv.ok ? (await sv.json()).items.length : null];
      return out;
    });
    // Officers and auxiliaries read their own rejections (their phones' notices) and nothing else here.
    check(user === 'aux1' ? codes.sv[0] === 403 : codes.sv[0] === 200 && codes.sv[1] === 0, `${user}: /v1/supervision answered ${codes.sv}`);
    delete codes.sv;
    for (const [p, st] of Object.entries(codes)) {
      if (p === '/v1/rejections') continue;
      if (p === '/v1/cases/cs-dig-3' && user === 'aux1') continue; // in the auxiliary's grid: the phone has it too
      check(st === 403, `${user}: ${p} answered ${st}`);
    }
    await page.context().close();
  }
  console.log('outsiders: ok');
} finally {
  await browser.close();
  cleanup();
}
