// check.mjs -- holds docs/openapi.yaml against the server (run by tests/test_openapi.c).
//
//   node tests/openapi/check.mjs lint DOC            OpenAPI 3.1 validity (swagger-parser) and house rules
//   node tests/openapi/check.mjs routes DOC < LIST   every "METHOD /pattern" line of the server's route
//                                                    table is an operation of DOC, and the other way round
//   node tests/openapi/check.mjs responses DOC DIR   every answer captured in DIR/*.jsonl (tests/harness.c)
//                                                    has a documented status, content type and body
//
// Exit 0 when sound; 1 with one line per problem on stdout otherwise.
// Caveats: a path that matches no template of DOC (an unknown path), and a
// 404 on any path, must be an error answer (Error schema); HEAD answers are held against the head
// operation, or the get operation without a body; a captured body over the
// harness's cap is checked for status and content type only.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch'];
const [mode, docPath, dir] = process.argv.slice(2);
const problems = [];
const fail = (msg) => problems.push(msg);

function finish(summary) {
  const seen = new Set();
  const uniq = problems.filter((p) => (seen.has(p) ? false : seen.add(p)));
  for (const p of uniq.slice(0, 60)) console.log(p);
  if (uniq.length > 60) console.log(`... and ${uniq.length - 60} more`);
  if (summary) console.log(summary);
  process.exit(uniq.length ? 1 : 0);
}

// A request path against DOC's templates: the template, or null.
function matchPath(doc, reqPath) {
  // Segments are percent-decoded one at a time, as the server does.
  const segs = reqPath.split('/').map((s) => { try { return decodeURIComponent(s); } catch { return s; } });
  let best = null;
  for (const tpl of Object.keys(doc.paths)) {
    const t = tpl.split('/');
    if (t.length !== segs.length) continue;
    let ok = true, params = 0;
    for (let i = 0; i < t.length && ok; i++) {
      if (/^\{[^}]+\}$/.test(t[i])) { params++; ok = segs[i].length > 0; }
      else ok = t[i] === segs[i];
    }
    // A literal segment wins over a parameter (/v1/uploads vs /v1/{x}).
    if (ok && (!best || params < best.params)) best = { tpl, params };
  }
  return best ? best.tpl : null;
}

async function lint() {
  const raw = YAML.parse(fs.readFileSync(docPath, 'utf8'));
  if (raw.openapi !== '3.1.0') fail(`openapi is ${raw.openapi}, expected 3.1.0`);
  try {
    await SwaggerParser.validate(structuredClone(raw));
  } catch (e) {
    fail(`invalid OpenAPI: ${e.message}`);
  }
  const doc = await SwaggerParser.dereference(structuredClone(raw));
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  const ids = new Set();
  for (const [p, item] of Object.entries(doc.paths || {})) {
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      const where = `${m.toUpperCase()} ${p}`;
      if (!op.operationId) fail(`${where}: no operationId`);
      else if (ids.has(op.operationId)) fail(`${where}: operationId ${op.operationId} twice`);
      else ids.add(op.operationId);
      if (!op.summary) fail(`${where}: no summary`);
      if (!op.responses || !Object.keys(op.responses).length) fail(`${where}: no responses`);
      for (const [code, r] of Object.entries(op.responses || {})) {
        for (const [ct, media] of Object.entries(r.content || {})) {
          if (/json/.test(ct) && !media.schema) fail(`${where} ${code} ${ct}: no schema`);
          if (media.schema) {
            try { ajv.compile(media.schema); } catch (e) { fail(`${where} ${code}: schema does not compile: ${e.message}`); }
          }
        }
        if (/^[45]/.test(code) && !(r.content && r.content['application/json']) && m !== 'head')
          fail(`${where} ${code}: an error answer without the application/json Error body`);
      }
    }
  }
  finish(`lint: ${ids.size} operations`);
}

async function routes() {
  const doc = YAML.parse(fs.readFileSync(docPath, 'utf8'));
  const lines = fs.readFileSync(0, 'utf8').split('\n').filter(Boolean);
  if (!lines.length) fail('no routes on stdin');
  const served = new Set();
  for (const line of lines) {
    const [method, pattern] = line.split(' ');
    const m = method.toLowerCase();
    const segs = pattern.split('/');
    const tpl = Object.keys(doc.paths).find((t) => {
      const ts = t.split('/');
      return ts.length === segs.length &&
        ts.every((s, i) => (segs[i] === '*' ? /^\{[^}]+\}$/.test(s) : s === segs[i]));
    });
    if (!tpl) { fail(`route ${method} ${pattern}: no path in ${docPath}`); continue; }
    if (!doc.paths[tpl][m]) fail(`route ${method} ${pattern}: ${tpl} has no ${m} operation`);
    served.add(`${m} ${tpl}`);
    if (m === 'get') served.add(`head ${tpl}`);
    served.add(`options ${tpl}`);
  }
  for (const [tpl, item] of Object.entries(doc.paths))
    for (const m of METHODS)
      if (item[m] && !served.has(`${m} ${tpl}`)) fail(`${m.toUpperCase()} ${tpl} is documented but not served`);
  finish(`routes: ${lines.length} served routes`);
}

async function responses() {
  const doc = await SwaggerParser.dereference(YAML.parse(fs.readFileSync(docPath, 'utf8')));
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  const compiled = new Map();
  const validator = (key, schema) => {
    if (!compiled.has(key)) compiled.set(key, ajv.compile(schema));
    return compiled.get(key);
  };
  const errorSchema = doc.components.schemas.Error;
  let n = 0, bodies = 0;
  const covered = new Set();
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')) : [];
  for (const f of files) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (!line) continue;
      let c;
      try { c = JSON.parse(line); } catch { fail(`${f}: a line that is not JSON`); continue; }
      n++;
      let body = Buffer.from(c.b64, 'base64');
      if (/gzip/i.test(c.cenc) && body.length) {
        try { body = zlib.gunzipSync(body); } catch { fail(`${c.method} ${c.path} -> ${c.status}: bad gzip`); continue; }
      }
      const ctype = (c.ctype || '').split(';')[0].trim().toLowerCase();
      const tpl = matchPath(doc, c.path);
      const where = `${c.method} ${tpl || c.path} -> ${c.status}`;
      let schema = null, media = null;
      if (!tpl) {
        if (c.status < 400) { fail(`${where}: a success on a path the document does not have`); continue; }
        schema = errorSchema; media = { 'application/json': { schema } };
      } else {
        const item = doc.paths[tpl];
        const m = c.method.toLowerCase();
        let op = item[m] || (m === 'head' ? item.get : null);
        if (!op) {
          // 405 (with Allow) and OPTIONS 204 answer on every served path.
          if (c.status === 405 || (m === 'options' && c.status === 204)) { schema = errorSchema; media = { 'application/json': { schema } }; }
          else { fail(`${where}: method not documented`); continue; }
        } else {
          const r = op.responses[String(c.status)] || op.responses[`${String(c.status)[0]}XX`] || op.responses.default;
          if (r) {
            covered.add(`${m === 'head' && !item.head ? 'get' : m} ${tpl} ${c.status}`);
            media = r.content || null;
          } else if (c.status === 404) {
            // Any path may be unknown where it is asked (the metrics listener
            // serves /metrics alone): the Error body, as for unknown paths.
            schema = errorSchema; media = { 'application/json': { schema } };
          } else { fail(`${where}: status not documented`); continue; }
        }
      }
      if (c.method === 'HEAD' || c.truncated || body.length === 0) continue;
      if (!media) { fail(`${where}: a body (${ctype}) where the document has none`); continue; }
      const mt = media[ctype] || Object.entries(media).find(([k]) => k === '*/*' || (k.endsWith('/*') && ctype.startsWith(k.slice(0, -1))))?.[1];
      if (!mt) { fail(`${where}: content type ${ctype} not documented (${Object.keys(media).join(', ')})`); continue; }
      if (!/^application\/(json|[^/]*\+json)$/.test(ctype) || !mt.schema) continue;
      let value;
      try { value = JSON.parse(body.toString('utf8')); } catch { fail(`${where}: body is not JSON`); continue; }
      const v = validator(`${where} ${ctype}`, mt.schema);
      bodies++;
      if (!v(value)) {
        const e = v.errors.slice(0, 3).map((x) => `${x.instancePath || '/'} ${x.message}${x.params && x.params.additionalProperty ? ` (${x.params.additionalProperty})` : ''}`).join('; ');
        fail(`${where}: ${e}; body: ${body.toString('utf8').slice(0, 300)}`);
      }
    }
  }
  if (n === 0) fail(`no captured answers in ${dir}`);
  finish(`responses: ${n} answers, ${bodies} JSON bodies validated, ${covered.size} (operation, status) pairs seen`);
}

const modes = { lint, routes, responses };
if (!modes[mode] || !docPath) {
  console.log('usage: check.mjs lint|routes|responses DOC [DIR]');
  process.exit(2);
}
modes[mode]().catch((e) => { console.log(`check.mjs: ${e.stack || e}`); process.exit(1); });
