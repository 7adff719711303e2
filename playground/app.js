// The playground. Controls come from /playground/config.json (the parameter table), so they
// offer what the server accepts; errors shown are the API's own words. No inline code: the CSP.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'clarity-cdn.admin-token';
const POLL_MS = 500;

const state = { config: null, source: null, run: 0, objectUrl: null };
const controls = new Map(); // field name → control

/** An element with attributes (`text`: its text) and children. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  node.append(...children);
  return node;
}

const token = () => sessionStorage.getItem(TOKEN_KEY) ?? '';
const kb = (n) => (n < 1e3 ? `${n} B` : `${(n / 1e3).toFixed(1)} kB`);
const attr = (s) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
const off = (node) => node.matches(':disabled');
// Loaded from this origin whatever host the URL names (PUBLIC_BASE_URL): the CSP allows no other.
const local = (url) => {
  const u = new URL(url, location.href);
  return u.pathname + u.search;
};

async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  if (token()) headers.set('Authorization', `Bearer ${token()}`);
  return read(await fetch(path, { ...init, headers }));
}

async function read(res) {
  const json = /json/.test(res.headers.get('content-type') ?? '');
  return { ok: res.ok, status: res.status, body: json ? await res.json().catch(() => null) : await res.text() };
}

// ---- errors, in the API's words, next to what they are about ----

function clearErrors() {
  for (const node of document.querySelectorAll('.error')) node.hidden = true;
  for (const node of document.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
  $('banner').hidden = true;
}

function showAt(errId, text, input) {
  const err = $(errId);
  err.textContent = text;
  err.hidden = false;
  if (input) {
    input.setAttribute('aria-invalid', 'true');
    const details = input.closest('details');
    if (details) details.open = true;
    input.focus({ preventScroll: true });
  }
  err.scrollIntoView({ block: 'nearest' });
}

function banner(text) {
  $('banner').textContent = text;
  $('banner').hidden = false;
}

/** `params.creativity`, `variants[0].w`: by that control; `source`: the source area; 401: the token. */
function showProblem(res, where) {
  const p = res.body && typeof res.body === 'object' ? res.body : {};
  const text = p.detail ?? p.title ?? (String(res.body ?? '').trim().slice(0, 300) || `HTTP ${res.status}`);
  const param = String(p.param ?? '');
  if (res.status === 401 && !$('token-box').hidden) return showAt('err-token', text, $('token'));
  if (where === 'source' || ['source', 'url', 'hash'].includes(param)) return showAt('err-source', text, $('src-url'));
  // Problems name fields as sent, and the page sends the table's names.
  const control = controls.get(param.replace(/^(params|variants\[\d+\])\./, ''));
  if (control && !off(control.input)) return showAt(control.err.id, text, control.focus);
  banner(text);
}

function setStatus(text, kind = '') {
  $('status').textContent = text;
  $('status').className = `status ${kind}`;
}

// ---- controls from the table ----

/** A slider step that lands on the default: 0.05 for small ranges, else a coarser round one. */
function floatStep(f) {
  const steps = (s) => ((f.default ?? f.min) - f.min) / s;
  return [0.05, 0.1, 0.25, 0.5, 1, 5, 10].find((s) => (f.max - f.min) / s <= 200 && Math.abs(steps(s) - Math.round(steps(s))) < 1e-9) ?? 'any';
}

function makeControl(f, engine) {
  const id = `f-${f.name}`;
  const title = `${f.description} Allowed: ${f.allowed}.`;
  const common = { id, title, 'aria-describedby': `hint-${f.name} err-${f.name}` };
  const err = h('p', { class: 'error', id: `err-${f.name}`, role: 'alert', hidden: true });
  const head = h('div', { class: 'field-head' }, h('label', { for: id, title }, h('code', { text: f.name })));
  if (f.ignored) head.append(h('span', { class: 'ignored-tag', text: `ignored by ${engine}` }));
  const wrap = h('div', { class: f.ignored ? 'field ignored' : 'field' }, head);
  const numeric = f.kind === 'int' || f.kind === 'float';
  let input, get, set, focus;

  if (numeric && f.default !== undefined) {
    const step = f.kind === 'int' ? (f.step ?? 1) : floatStep(f);
    input = h('input', { ...common, type: 'range', min: f.min, max: f.max, step });
    // The number is the value. `step=any`: a typed value reaches the server as typed, so a
    // mistake comes back in the API's words, not the browser's.
    const num = (focus = h('input', { id: `${id}-num`, class: 'num', type: 'number', min: f.min, max: f.max, step: 'any', title, 'aria-label': `${f.name} value` }));
    input.addEventListener('input', () => (num.value = input.value));
    num.addEventListener('input', () => num.value !== '' && (input.value = num.value));
    wrap.append(h('div', { class: 'slider' }, input, num));
    get = () => (num.value === '' ? undefined : Number(num.value));
    set = (v) => (input.value = num.value = v);
  } else if (numeric) {
    input = h('input', { ...common, type: 'number', min: f.min, max: f.max, step: 'any', placeholder: 'auto' });
    get = () => (input.value === '' ? undefined : Number(input.value));
  } else if (f.kind === 'enum') {
    input = h('select', common);
    if (f.default === undefined) input.append(h('option', { value: '', text: f.name === 'preset' ? '(none)' : '(default)' }));
    input.append(...f.values.map((v) => h('option', { value: v, text: v })));
    get = () => input.value || undefined;
  } else if (f.kind === 'bool') {
    input = h('input', { ...common, type: 'checkbox' });
    head.prepend(input);
    wrap.classList.add('check');
    get = () => input.checked;
    set = (v) => (input.checked = Boolean(v));
  } else {
    const long = f.allowed.startsWith('text');
    const placeholder = long ? undefined : f.kind === 'hash' ? 'a source hash' : 'https://…';
    input = h(long ? 'textarea' : 'input', { ...common, rows: long && 3, maxlength: f.maxLength, spellcheck: 'false', placeholder });
    get = () => input.value;
  }
  if (!input.parentNode) wrap.append(input);
  set ??= (v) => (input.value = v ?? '');
  focus ??= input;
  wrap.append(h('p', { class: 'hint', id: `hint-${f.name}`, text: f.allowed }), err);
  // The result is WebP unless chosen: `auto` would depend on this browser's Accept.
  set(f.name === 'format' ? 'webp' : f.default);
  const control = { field: f, input, focus, wrap, err, set, touched: false };
  /** The value when it differs from the table's default, else undefined: not sent. */
  control.read = () => {
    const v = get();
    return v === f.default || (v === '' && !f.default) ? undefined : v;
  };
  for (const node of [input, focus]) {
    node.addEventListener('input', () => {
      control.touched = true;
      focus.removeAttribute('aria-invalid');
      err.hidden = true;
    });
  }
  return control;
}

function buildControls(config) {
  const add = (f) => {
    const control = makeControl(f, config.engine);
    controls.set(f.name, control);
    return control.wrap;
  };
  if (config.presets.length > 0) {
    const allowed = `one of: ${config.presets.join(', ')}`;
    $('upscale').append(add({ name: 'preset', kind: 'enum', values: config.presets, allowed, description: 'A named parameter set (PRESETS_FILE); changed fields apply on top.' }));
    // Under a preset an untouched format is the table's default, so not sent: the preset's applies.
    on(controls.get('preset').input, 'input', () => {
      const format = controls.get('format');
      if (format && !format.touched) format.set(controls.get('preset').input.value ? format.field.default : 'webp');
    });
  }
  const clarity = h('fieldset', { class: 'plain', disabled: config.onlyPresets });
  if (config.onlyPresets) clarity.append(h('p', { class: 'hint', text: 'Upscale fields come from presets only here (ONLY_PRESETS).' }));
  const ignored = h('details', { class: 'more' });
  // Fields jobs refuse (`placeholder`: a job waits for the real image) get no control.
  for (const f of config.fields.filter((field) => field.jobs !== false)) {
    (f.group === 'output' ? $('output') : f.ignored ? ignored : clarity).append(add(f));
  }
  if (ignored.childElementCount > 0) {
    ignored.prepend(h('summary', { text: `${ignored.childElementCount} fields ignored by ${config.engine}` }));
    clarity.append(ignored);
  }
  $('upscale').append(clarity);
}

/** The fields of `group` changed from their defaults: the server fills in the rest. */
function collect(group) {
  const out = {};
  for (const [name, c] of controls) {
    const value = c.field.group === group && !off(c.input) ? c.read() : undefined;
    if (value !== undefined) out[name] = value;
  }
  return out;
}

// ---- the source ----

function setSource(info) {
  state.source = info.hash;
  state.run++; // a job still polling was for the previous source
  $('before').src = `/sources/${info.hash}`;
  $('before').hidden = $('current').hidden = $('zoom').disabled = false;
  for (const b of document.querySelectorAll('#recent button')) b.setAttribute('aria-pressed', String(b.dataset.hash === info.hash));
  showSourceInfo(info);
  clearResult();
  setStatus('Ready: press Generate.');
}

function showSourceInfo(info) {
  const img = $('before');
  const size = `${info.width ?? (img.naturalWidth || '?')} × ${info.height ?? (img.naturalHeight || '?')}`;
  const text = [size, info.format, info.bytes === undefined ? '' : kb(info.bytes)].filter(Boolean).join(' · ');
  $('current').replaceChildren(h('strong', { text }), ' ', h('code', { text: `${info.hash.slice(0, 12)}…`, title: info.hash }));
}

async function register(body, contentType) {
  clearErrors();
  $('drop').classList.add('busy');
  try {
    const res = await api('/sources', { method: 'POST', headers: { 'Content-Type': contentType }, body });
    if (!res.ok) return showProblem(res, 'source');
    setSource(res.body);
    loadRecent();
  } catch (error) {
    showAt('err-source', `Upload failed: ${error.message}`);
  } finally {
    $('drop').classList.remove('busy');
  }
}

const upload = (file) => file && register(file, file.type || 'application/octet-stream');
const imageIn = (files) => [...(files ?? [])].find((f) => f.type.startsWith('image/'));

function pickRecent(info) {
  clearErrors();
  setSource(info);
  showSourceInfo(info);
}

async function loadRecent() {
  if (state.config.adminTokenRequired && !token()) return void ($('recent-box').hidden = true);
  const res = await api('/playground/sources');
  const list = res.ok ? res.body.sources : [];
  $('recent').replaceChildren(
    ...list.map((info) => {
      const attrs = { type: 'button', 'data-hash': info.hash, title: `${info.width} × ${info.height} ${info.format}`, 'aria-label': `Source ${info.hash.slice(0, 12)}`, 'aria-pressed': String(info.hash === state.source) };
      const button = h('button', attrs, h('img', { src: `/sources/${info.hash}`, alt: '', loading: 'lazy' }));
      button.addEventListener('click', () => pickRecent(info));
      return h('li', {}, button);
    }),
  );
  $('recent-box').hidden = list.length === 0;
}

// ---- generate, poll, compare ----

function clearResult() {
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = null;
  $('after').removeAttribute('src');
  $('frame').classList.remove('has-after');
  for (const id of ['after', 'divider', 'info', 'share']) $(id).hidden = true;
  $('split').disabled = true;
}

async function generate() {
  clearErrors();
  if (!state.source) return showAt('err-source', 'Choose a source image first.', $('file'));
  const run = ++state.run;
  const started = performance.now();
  const job = { source: state.source, params: collect('clarity'), variants: [collect('output')] };
  const preset = controls.get('preset')?.input.value;
  if (preset) job.preset = preset;
  setStatus('Submitting…', 'busy');
  try {
    let res = await api('/jobs', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(job) });
    if (!res.ok) {
      setStatus('Not submitted.', 'failed');
      return showProblem(res);
    }
    clearResult(); // accepted: the previous result goes (a refused job leaves it in place)
    while (run === state.run) {
      if (!res.ok) return showProblem(res);
      const view = res.body;
      const q = view.queue;
      if (view.status === 'COMPLETED') return await showResult(view, run, started);
      if (view.status === 'FAILED') return setStatus(`Failed: ${view.error ?? 'unknown error'}${view.code ? ` (${view.code})` : ''}`, 'failed');
      if (q) setStatus(`Queued: position ${q.position} in the ${q.lane} lane, about ${q.estimated_wait_seconds} s to wait`, 'busy');
      else setStatus(`${view.status === 'QUEUED' ? 'Queued' : 'Processing'}… ${Math.round((performance.now() - started) / 1000)} s`, 'busy');
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      if (run === state.run) res = await api(`/jobs/${view.id}`);
    }
  } catch (error) {
    if (run === state.run) setStatus(`Failed: ${error.message}`, 'failed');
  }
}

async function showResult(job, run, started) {
  const url = job.variants[0].url;
  // Fetched, not just shown: the headers say what was served, and from where.
  const res = await fetch(local(url));
  if (!res.ok) return showProblem(await read(res));
  const blob = await res.blob();
  if (run !== state.run) return;
  const after = $('after');
  after.src = state.objectUrl = URL.createObjectURL(blob);
  await after.decode();
  if (run !== state.run) return;
  const [w, ht] = [after.naturalWidth, after.naturalHeight];
  const header = (name) => res.headers.get(name) ?? '—';
  const ignored = res.headers.get('x-upscale-ignored');
  const info = {
    size: `${w} × ${ht}`,
    format: header('content-type'),
    bytes: `${blob.size.toLocaleString('en')} (${kb(blob.size)})`,
    engine: header('x-upscale-engine') + (ignored ? ` (ignored: ${ignored})` : ''),
    // `pending`: a draft or placeholder; the same URL serves the final image later.
    cache: header('x-cache') + (res.headers.get('x-upscale-status') === 'pending' ? ' (a stand-in for now)' : ''),
    etag: header('etag'),
  };
  $('info').replaceChildren(...Object.entries(info).map(([k, v]) => h('div', {}, h('dt', { text: k }), h('dd', { id: `r-${k}`, text: v }))));
  $('r-bytes').dataset.bytes = String(blob.size);
  $('frame').style.setProperty('--ar', String(w / ht));
  $('frame').classList.add('has-after');
  for (const id of ['after', 'divider', 'info', 'share']) $(id).hidden = false;
  $('split').disabled = false;
  split();
  $('out-url').value = url;
  $('out-tag').value = `<img src="${attr(url)}" width="${w}" height="${ht}" alt="" loading="lazy" decoding="async">`;
  $('copied').textContent = '';
  setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`, 'done');
  $('compare').scrollIntoView({ block: 'nearest' }); // on a phone it is below the controls
}

function split() {
  const v = $('split').value;
  $('after').style.clipPath = `inset(0 0 0 ${v}%)`;
  $('divider').style.left = `${v}%`;
}

function zoom() {
  const on = $('zoom').getAttribute('aria-pressed') !== 'true';
  $('zoom').setAttribute('aria-pressed', String(on));
  $('zoom').textContent = on ? 'Fit to width' : 'Zoom to 100%';
  $('compare').className = `compare ${on ? 'zoom' : 'fit'}`;
}

async function copy(inputId, what) {
  const input = $(inputId);
  try {
    await navigator.clipboard.writeText(input.value);
    $('copied').textContent = `Copied the ${what}.`;
  } catch {
    // No async clipboard outside a secure context (plain http to another host): the old way.
    input.select();
    $('copied').textContent = document.execCommand('copy') ? `Copied the ${what}.` : `Select the ${what} and copy it by hand.`;
  }
}

// ---- wiring ----

function on(target, type, handler) {
  (typeof target === 'string' ? $(target) : target).addEventListener(type, handler);
}

function wire() {
  on('controls', 'submit', (event) => {
    event.preventDefault();
    generate();
  });
  on('file', 'change', () => {
    upload($('file').files?.[0]);
    $('file').value = '';
  });
  const fetchUrl = () => $('src-url').value.trim() && register(JSON.stringify({ url: $('src-url').value.trim() }), 'application/json');
  on('src-url-go', 'click', fetchUrl);
  on('src-url', 'keydown', (event) => {
    if (event.key !== 'Enter') return;
    event.preventDefault(); // not the form's submit: that is Generate
    fetchUrl();
  });
  // A drop anywhere on the page is an upload (and never navigates away to the file).
  for (const type of ['dragover', 'dragleave', 'drop']) {
    on(document, type, (event) => {
      event.preventDefault();
      $('drop').classList.toggle('over', type === 'dragover');
      if (type === 'drop') upload(imageIn(event.dataTransfer?.files));
    });
  }
  on(document, 'paste', (event) => {
    const file = imageIn(event.clipboardData?.files);
    if (file) event.preventDefault();
    upload(file);
  });
  on('split', 'input', split);
  // Until there is a result, the source sets the stage's proportions.
  on('before', 'load', () => {
    const b = $('before');
    if (!$('frame').classList.contains('has-after')) $('frame').style.setProperty('--ar', String(b.naturalWidth / b.naturalHeight));
  });
  on('zoom', 'click', zoom);
  on('copy-url', 'click', () => copy('out-url', 'URL'));
  on('copy-tag', 'click', () => copy('out-tag', '<img> tag'));
  on('token-box', 'submit', (event) => event.preventDefault());
  on('token', 'input', () => sessionStorage.setItem(TOKEN_KEY, $('token').value));
  on('token', 'change', () => {
    $('err-token').hidden = true;
    loadRecent();
  });
}

async function main() {
  const res = await api('/playground/config.json');
  if (!res.ok) return banner(`Could not load the configuration: HTTP ${res.status}`);
  const config = (state.config = res.body);
  $('engine').textContent = `Engine: ${config.engine}${config.paid ? ' (paid: each new payload is billed once)' : ''}${config.signing ? ' · URLs signed by the server' : ''}`;
  if (!config.jobsAvailable) {
    // A signing server without ADMIN_TOKEN refuses POST /jobs: say so before anyone presses Generate.
    $('generate').disabled = true;
    banner('This server signs its URLs but has no ADMIN_TOKEN, so it takes no jobs: set ADMIN_TOKEN to use the playground.');
  }
  if (config.adminTokenRequired) {
    $('token-box').hidden = false;
    $('token').value = token();
  }
  buildControls(config);
  wire();
  document.body.classList.add('ready');
  await loadRecent();
}

main().catch((error) => banner(`The playground failed to start: ${error.message}`));
