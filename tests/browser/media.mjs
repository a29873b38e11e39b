// media.mjs -- real evidence for the scenarios: a 4 s VP8 WebM and a PNG made
// by chromium itself (canvas + MediaRecorder), uploaded with tus by an
// officer and listed on a case with one more item whose bytes never came.
import { createHash, randomBytes } from 'node:crypto';
import { api, check, push } from './lib.mjs';

export async function makeMedia(browser) {
  const page = await browser.newPage();
  const out = await page.evaluate(async () => {
    const c = document.createElement('canvas');
    c.width = 160; c.height = 120;
    document.body.appendChild(c);
    const g = c.getContext('2d');
    const rec = new MediaRecorder(c.captureStream(25), { mimeType: 'video/webm;codecs=vp8', videoBitsPerSecond: 200000 });
    const chunks = [];
    rec.ondataavailable = (e) => chunks.push(e.data);
    let f = 0;
    const draw = () => { g.fillStyle = `hsl(${(f * 7) % 360},80%,50%)`; g.fillRect(0, 0, 160, 120); g.fillStyle = '#fff'; g.font = '40px sans-serif'; g.fillText(String(f++), 20, 80); };
    draw();
    const png = c.toDataURL('image/png').split(',')[1];
    const iv = setInterval(draw, 40);
    rec.start(250);
    await new Promise((r) => setTimeout(r, 4000));
    await new Promise((r) => { rec.onstop = r; rec.stop(); });
    clearInterval(iv);
    const buf = new Uint8Array(await new Blob(chunks).arrayBuffer());
    let s = '';
    for (const x of buf) s += String.fromCharCode(x);
    return { webm: btoa(s), png };
  });
  await page.close();
  return { webm: new Uint8Array(Buffer.from(out.webm, 'base64')), png: new Uint8Array(Buffer.from(out.png, 'base64')) };
}

const sha = (b) => createHash('sha256').update(b).digest('hex');
const b64 = (s) => Buffer.from(s).toString('base64');

async function upload(sess, bytes, mime) {
  const h = sha(bytes);
  const r = await api(sess, 'POST', '/v1/uploads', undefined, { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(bytes.length), 'Upload-Metadata': `sha256 ${b64(h)},mime ${b64(mime)}` });
  check(r.status === 201, `upload create: ${r.status} ${r.text}`);
  const loc = r.headers.get('location').replace(/^https?:\/\/[^/]+/, '');
  const p = await api(sess, 'PATCH', loc, bytes, { 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0', 'Content-Type': 'application/offset+octet-stream' });
  check(p.status === 204, `upload patch: ${p.status} ${p.text}`);
  return h;
}

// Lists a video, a photo and a missing item on record_id (version base).
export async function addEvidence(officer, media, recordId, base) {
  const v = await upload(officer, media.webm, 'video/webm');
  const p = await upload(officer, media.png, 'image/png');
  const missing = sha(randomBytes(32));
  const at = new Date(Date.now() - 60000).toISOString();
  const res = await push(officer, [{ op: 'update', record_id: recordId, base_version: base, at: new Date().toISOString(), append: { evidence: [
    { id: 'ev-video', sha256: v, size: media.webm.length, mime: 'video/webm', kind: 'video', captured_at: at },
    { id: 'ev-photo', sha256: p, size: media.png.length, mime: 'image/png', kind: 'photo', captured_at: at },
    { id: 'ev-missing', sha256: missing, size: 1234, mime: 'image/jpeg', kind: 'photo', captured_at: at },
  ] } }]);
  check(['applied', 'merged'].includes(res.results[0].status), `evidence push: ${JSON.stringify(res.results[0])}`);
  return { video: v, photo: p, missing };
}
