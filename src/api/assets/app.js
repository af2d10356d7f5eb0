// canaryd dashboard: the rollout list and a rollout's page, kept live over
// the event stream (/api/v1/events). Plain DOM, no framework; charts by uPlot.
'use strict';

const PHASE_CLASS = {
  Progressing: '', Paused: 'warn', Promoted: 'ok', RolledBack: 'bad', Aborted: 'bad', Idle: 'idle',
};
const PAUSE_WHY = {
  manual: 'paused by a person', no_data: 'paused: no data', rollback_disabled: 'paused instead of rolling back (rollback.auto is off)',
};
// Which commands make sense in which phase (the API answers 409 otherwise).
const ACTIONS = [
  ['pause', ['Progressing']],
  ['resume', ['Paused']],
  ['promote', ['Progressing', 'Paused']],
  ['abort', ['Progressing', 'Paused']],
  ['retry', ['RolledBack', 'Aborted']],
];

const state = {
  route: route(),
  rollouts: new Map(),
  loaded: false,
  decisions: [],
  alerts: [],
  series: null,
  charts: new Map(),
  lost: false,
  lastSeries: 0,
  lastAlerts: 0,
  seriesDue: false,
  alertsDue: false,
  shadow: null,
  shadowDue: false,
};

// The list page: one page of rollouts at a time, searched and filtered on
// the server (`GET /api/v1/rollouts?limit=…&continue=…&q=…&phase=…`).
const PAGE = 100;
const LIST_REFRESH_MS = 3000;
const list = {
  q: '',
  phases: new Set(),
  cursor: null, // the `continue` token this page was read with (null: the first)
  stack: [], // the tokens of the pages before, for "previous"
  next: null,
  total: 0,
  counts: null, // per phase, matching every filter but the phase
  rows: new Map(), // this page's rollouts (summaries), by key
  seq: 0, // answers to older requests are dropped
  lastFetch: 0,
  due: null, // a timer for a page refresh
};

// ---------- small helpers ----------

function route() {
  const m = location.pathname.match(/^\/rollouts\/([^/]+)\/([^/]+)\/?$/);
  try {
    return m ? { ns: decodeURIComponent(m[1]), name: decodeURIComponent(m[2]) } : null;
  } catch (e) {
    return null; // a malformed address shows the list
  }
}

function key(r) { return r.namespace + '/' + r.name; }

/** Builds an element; strings become text nodes (never HTML). */
function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    // Through the CSSOM: a `style` attribute is inline style, which the
    // Content-Security-Policy refuses.
    else if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
  return r.json();
}

function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  const d = Math.floor(s / 86400), hr = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), sec = s % 60;
  if (d) return d + 'd ' + hr + 'h';
  if (hr) return hr + 'h ' + String(m).padStart(2, '0') + 'm';
  if (m) return m + 'm ' + String(sec).padStart(2, '0') + 's';
  return sec + 's';
}

function since(ts) { return (Date.now() - Date.parse(ts)) / 1000; }

function clock(ts) {
  const d = new Date(ts);
  return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function percent(x) { return (Math.round(x * 100) / 100) + '%'; }

/** A measured value in its unit, like the server's (`1.2%`, `310ms`). */
function show(unit, v) {
  if (v === null || v === undefined || !isFinite(v)) return '–';
  const sig = (x) => Number(x.toPrecision(3)).toString();
  switch (unit) {
    case 'ratio': return sig(v * 100) + '%';
    case 'seconds': return v < 1 ? sig(v * 1000) + 'ms' : sig(v) + 's';
    case 'per_second': return sig(v) + '/s';
    default: return sig(v);
  }
}

// ---------- evidence (mirrors the server's EvidenceSummary Display) ----------

/** The server's trim_float: six decimals at most, no trailing zeros. */
function trimFloat(x) {
  const t = x.toFixed(6).replace(/0+$/, '').replace(/\.$/, '');
  return t === '' || t === '-0' ? '0' : t;
}

/** Three significant digits, whole numbers keeping all of theirs (as the server rounds). */
function sig3(x) {
  if (x === 0 || !isFinite(x)) return trimFloat(x);
  const decimals = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  const scale = Math.pow(10, decimals);
  return trimFloat(Math.sign(x) * Math.round(Math.abs(x) * scale) / scale);
}

function sharePercent(x) { return sig3(x * 100) + '%'; }
function latencyText(s) { return s < 1 ? sig3(s * 1000) + 'ms' : sig3(s) + 's'; }

/** `1,240`. */
function countText(n) {
  return String(Math.round(Math.max(0, n))).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** `99%`, `99.75%`: enough decimals to show two digits of what is left out. */
function confidenceText(c) {
  const leftOut = Math.max((1 - c) * 100, 1e-12);
  const decimals = Math.min(8, Math.max(0, 1 - Math.floor(Math.log10(leftOut))));
  const scale = Math.pow(10, decimals);
  return trimFloat(Math.round(c * 100 * scale) / scale) + '%';
}

/** `12:03:10` in the page's time zone. */
function hms(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return '';
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** What a gate's verdict rests on, as a sentence:
 *  `3.1% errors over 1,240 requests since 12:03:10 (99.75% lower bound 2.4%)`. */
function evidenceText(e) {
  const since = e.method === 'detector' ? 'since ' + hms(e.since) : 'since the step began';
  const ratio = (r) => trimFloat(Math.round(r * 100) / 100);
  const kind = e.counted && e.counted.kind;
  const scale = kind === 'error_ratio' ? ratio : sharePercent;
  const bound = e.bound
    ? ' (' + confidenceText(e.bound.confidence) + ' ' + e.bound.side + ' bound ' + scale(e.bound.value) + ')'
    : '';
  const est = e.estimate === null || e.estimate === undefined ? '-' : null;
  if (kind === 'slower_than') {
    return (est || sharePercent(e.estimate)) + ' of ' + countText(e.requests) + ' requests slower than ' +
      latencyText(e.counted.seconds) + ' ' + since + bound;
  }
  if (kind === 'error_ratio') {
    const rate = (x, n) => n > 0 ? sharePercent(x / n) : '-';
    return 'canary ' + rate(e.events, e.requests) + ' errors over ' + countText(e.requests) + ' requests vs stable ' +
      rate(e.stable_events, e.stable_requests) + ' over ' + countText(e.stable_requests) + ' ' + since + ': ratio ' +
      (est || ratio(e.estimate)) + bound;
  }
  return (est || sharePercent(e.estimate)) + ' errors over ' + countText(e.requests) + ' requests ' + since + bound;
}

/** How far the evidence has come towards a verdict (0–1), and which one:
 *  the bound on the failing side of the limit leans to a failure (a breach). */
function evidenceProgress(g, e) {
  const p = e.log_needed > 0 ? Math.min(1, Math.max(0, e.log_e / e.log_needed)) : 1;
  const lessThan = / < /.test(g.name);
  const failing = e.bound ? (e.bound.side === 'lower') === lessThan : true;
  const abort = g.gate && Object.prototype.hasOwnProperty.call(g.gate, 'abort');
  const toward = abort ? 'a breach' : failing ? 'a failure' : 'a pass';
  return { p, toward };
}

/** The evidence cell: the sentence, a progress bar, what a verdict still needs. */
function evidenceCell(g) {
  const e = g.evidence;
  if (!e) return h('span', { class: 'muted' }, '–');
  const { p, toward } = evidenceProgress(g, e);
  const pct = Math.round(p * 100);
  const more = e.more_requests !== null && e.more_requests !== undefined && g.verdict === 'undecided'
    ? ' · about ' + countText(e.more_requests) + ' more requests' : '';
  return [
    h('div', { class: 'evidence' }, evidenceText(e)),
    h('div', { class: 'progress-line' },
      h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
        'aria-label': 'evidence towards ' + toward, title: 'evidence: ln e ' + e.log_e.toFixed(2) + ' of the ' + e.log_needed.toFixed(2) + ' a verdict needs' },
      h('span', { style: 'width:' + pct + '%' })),
      h('span', { class: 'muted' }, pct + '% of the evidence ' + toward + ' needs' + more)),
  ];
}

/** Chart scale: percentages and milliseconds read better than ratios and seconds. */
function scaled(unit) {
  switch (unit) {
    case 'ratio': return { k: 100, suffix: '%' };
    case 'seconds': return { k: 1000, suffix: 'ms' };
    case 'per_second': return { k: 1, suffix: '/s' };
    default: return { k: 1, suffix: '' };
  }
}

const SHADOW_WHY = 'Shadow mode: canaryd measures and decides but never touches traffic; every decision is what it would have done.';
function shadowBadge(shadow) {
  return shadow ? h('span', { class: 'badge shadow', 'data-testid': 'shadow', title: SHADOW_WHY }, 'shadow') : null;
}

function phaseBadge(r) {
  return h('span', { class: 'badge ' + (PHASE_CLASS[r.phase] ?? ''), 'data-testid': 'phase' }, r.phase);
}

function weightBar(w) {
  return h('div', { class: 'weight' },
    h('div', { class: 'bar', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': w, 'aria-label': 'canary weight' },
      h('span', { style: 'width:' + Math.max(0, Math.min(100, w)) + '%' })),
    h('span', { class: 'num', 'data-testid': 'weight' }, percent(w)));
}

function versions(r) {
  return r.stable_version + ' → ' + (r.canary_version || r.desired_canary_version || '–');
}

// ---------- connection and live updates ----------

function setConn(text, ok) {
  const c = document.getElementById('conn');
  if (!text) { c.hidden = true; return; }
  c.hidden = false;
  c.textContent = text;
  c.classList.toggle('ok', !!ok);
}

// A rollout's page follows only its rollout's events; once that rollout is
// gone (its stream is refused with a 404), every event, as it may come back.
let followAll = false;
function eventsUrl() {
  if (!state.route || followAll) return '/api/v1/events';
  return '/api/v1/events?rollout=' + encodeURIComponent(state.route.ns + '/' + state.route.name);
}

async function rolloutGone() {
  const url = '/api/v1/rollouts/' + encodeURIComponent(state.route.ns) + '/' + encodeURIComponent(state.route.name);
  const r = await fetch(url, { cache: 'no-store' }).catch(() => null);
  return !!r && r.status === 404;
}

let retryDelay = 1000;
function connect() {
  const es = new EventSource(eventsUrl());
  es.onopen = () => {
    retryDelay = 1000;
    if (state.lost) {
      state.lost = false;
      setConn('Reconnected', true);
      setTimeout(() => { if (!state.lost) setConn(null); }, 4000);
    }
    refresh(); // whatever happened before (or while away) the stream was open
  };
  es.onerror = async () => {
    if (es.readyState === EventSource.CLOSED && state.route && !followAll && await rolloutGone()) {
      es.close();
      followAll = true;
      connect();
      return;
    }
    state.lost = true;
    setConn('Connection lost — reconnecting…');
    // The browser retries a dropped stream by itself, but not one that was
    // answered with an error (a proxy's 502): then we start over.
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 15000);
    }
  };
  for (const kind of ['state', 'decision']) {
    es.addEventListener(kind, (e) => {
      const ev = JSON.parse(e.data);
      if (!state.route) { listEvent(ev.rollout); return; }
      if (isCurrent(ev.rollout)) {
        state.rollouts.set(key(ev.rollout), ev.rollout);
        state.seriesDue = true;
        if (kind === 'decision') {
          mergeDecisions([ev.decision]);
          state.alertsDue = true; // a decision may have queued alerts
          state.shadowDue = state.shadowDue || ev.decision.shadow;
        }
      }
      render();
    });
  }
  es.addEventListener('file_rejected', (e) => {
    const ev = JSON.parse(e.data);
    notice('bad', 'Deploy file ' + ev.file + ' was rejected; the previous version (if any) keeps running.', ev.errors);
  });
  es.addEventListener('lagged', () => refresh());
}

/** Adds decisions by sequence number, keeping the latest 300. */
function mergeDecisions(list) {
  const bySeq = new Map(state.decisions.map((d) => [d.seq, d]));
  for (const d of list) bySeq.set(d.seq, d);
  state.decisions = [...bySeq.values()].sort((a, b) => a.seq - b.seq).slice(-300);
}

function isCurrent(r) {
  return state.route && r.namespace === state.route.ns && r.name === state.route.name;
}

async function refresh() {
  try {
    if (!state.route) {
      await loadPage();
      state.loaded = true;
      render();
      return;
    }
    const url = '/api/v1/rollouts/' + encodeURIComponent(state.route.ns) + '/' + encodeURIComponent(state.route.name);
    const r = await fetch(url, { cache: 'no-store' });
    if (r.status === 404) state.rollouts = new Map();
    else if (r.ok) { const one = await r.json(); state.rollouts = new Map([[key(one), one]]); }
    else throw new Error(url + ': HTTP ' + r.status);
    state.loaded = true;
    state.seriesDue = state.alertsDue = state.shadowDue = true;
    await refreshDetail(true);
  } catch (e) {
    state.lost = true;
    setConn('Cannot reach canaryd — retrying…');
    setTimeout(refresh, 3000);
  }
  render();
}

async function refreshDetail(all) {
  const base = '/api/v1/rollouts/' + encodeURIComponent(state.route.ns) + '/' + encodeURIComponent(state.route.name);
  const now = Date.now();
  const jobs = [];
  if (all) jobs.push(getJSON(base + '/decisions?limit=300').then((j) => mergeDecisions(j.decisions)).catch(() => {}));
  // Charts: on this rollout's events, at most once a second.
  if (state.seriesDue && now - state.lastSeries > 1000) {
    state.seriesDue = false;
    state.lastSeries = now;
    jobs.push(getJSON(base + '/series').then((j) => { state.series = j; }).catch(() => {}));
  }
  // Alerts: after a decision, and every few seconds while one is still pending.
  const pending = state.alerts.some((a) => a.state === 'pending');
  if ((state.alertsDue || pending) && now - state.lastAlerts > 2000) {
    state.alertsDue = false;
    state.lastAlerts = now;
    jobs.push(getJSON(base + '/alerts').then((j) => { state.alerts = j.alerts; }).catch(() => {}));
  }
  // The shadow summary: on load and after a shadow decision.
  if (state.shadowDue) {
    state.shadowDue = false;
    jobs.push(getJSON(base + '/shadow').then((j) => { state.shadow = j; }).catch(() => {}));
  }
  await Promise.all(jobs);
}

// ---------- rendering ----------

let scheduled = false;
function render() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(async () => {
    scheduled = false;
    if (state.route) {
      await refreshDetail(false);
      renderDetail();
    } else {
      renderList();
    }
    updateClock();
  });
}

/** A message above the page until closed (or replaced). */
function notice(kind, text, detail) {
  const n = document.getElementById('notices');
  n.replaceChildren(h('div', { class: 'notice ' + kind },
    h('button', { type: 'button', class: 'close', 'aria-label': 'Dismiss', onclick: () => n.replaceChildren() }, '×'),
    text, detail ? h('pre', {}, detail) : null));
}

/** Replaces `el`'s children only when `sig` changed (keeps focus, selection, open details). */
function patch(el, sig, build) {
  if (el.dataset.sig === sig) return;
  el.dataset.sig = sig;
  el.replaceChildren(...[build()].flat().filter(Boolean));
}

/** Texts that move with the clock between events: time in phase, time left. */
function updateClock() {
  for (const e of document.querySelectorAll('[data-since]')) e.textContent = duration(since(e.dataset.since));
  for (const e of document.querySelectorAll('[data-left]')) {
    const left = Number(e.dataset.left) - Math.min(Math.max(0, since(e.dataset.from)), Number(e.dataset.cap));
    e.textContent = duration(Math.max(0, left)) + (e.dataset.suffix || '');
  }
}

// ---------- the list: a page at a time ----------

/** A rollout's list row fields, from a full view or the API's summary form
 *  (which has no time in phase and only the last decision's time). */
function listed(r) {
  const full = r.canary_weight !== undefined;
  return {
    namespace: r.namespace, name: r.name, phase: r.phase, step: r.step, steps: r.steps, mode: r.mode,
    weight: full ? r.canary_weight : r.weight,
    versions: full ? versions(r) : (r.stable || '–') + ' → ' + (r.canary || '–'),
    phase_since: r.phase_since || null,
    last_decision: r.last_decision || (r.last_decision_at ? { at: r.last_decision_at } : null),
    file_error: r.file_error || null,
  };
}

function filtered() { return list.q !== '' || list.phases.size > 0; }

/** Reads the current page. An API without paging (no `total`) answers with
 *  every rollout: it is searched and counted here, as one page. */
async function loadPage() {
  const seq = ++list.seq;
  // The full form: the list shows each rollout's time in phase and last
  // decision, which the summary form leaves out.
  const params = new URLSearchParams({ limit: String(PAGE), view: 'full' });
  if (list.q) params.set('q', list.q);
  if (list.phases.size) params.set('phase', [...list.phases].join(','));
  if (list.cursor) params.set('continue', list.cursor);
  list.lastFetch = Date.now();
  const j = await getJSON('/api/v1/rollouts?' + params);
  if (seq !== list.seq) return; // a newer request is on its way
  let rows = j.rollouts.map(listed);
  if (j.total === undefined) {
    const q = list.q.toLowerCase();
    rows = rows.filter((r) => key(r).toLowerCase().includes(q));
    const counts = {};
    for (const r of rows) counts[r.phase] = (counts[r.phase] || 0) + 1;
    list.counts = counts;
    if (list.phases.size) rows = rows.filter((r) => list.phases.has(r.phase));
    list.total = rows.length;
    list.next = null;
  } else {
    list.counts = j.phases || null;
    list.total = j.total;
    list.next = j.continue || null;
  }
  list.rows = new Map(rows.map((r) => [key(r), r]));
}

/** Reads the page again, at most once every few seconds. */
function refreshPageSoon() {
  if (list.due) return;
  const wait = Math.max(0, list.lastFetch + LIST_REFRESH_MS - Date.now());
  list.due = setTimeout(async () => {
    list.due = null;
    try { await loadPage(); } catch (e) { /* the next event or reconnect tries again */ }
    render();
  }, wait);
}

/** An event on the list page: a row on this page is patched in place; any
 *  other rollout (or a phase change, which moves the counts) refreshes the page soon. */
function listEvent(r) {
  const k = key(r);
  const old = list.rows.get(k);
  if (old) {
    const row = listed(r);
    list.rows.set(k, row);
    if (old.phase !== row.phase) refreshPageSoon();
    render();
  } else {
    refreshPageSoon();
  }
}

/** Loads the page after a change of search, filter or page, and shows it. */
async function goTo(cursor) {
  list.cursor = cursor;
  try { await loadPage(); } catch (e) { notice('bad', 'Cannot read the rollout list: ' + e.message); }
  render();
}

function newSearch() {
  list.stack = [];
  goTo(null);
}

let searchTimer = null;
function listSkeleton() {
  const search = h('input', {
    type: 'search', id: 'search', placeholder: 'Search namespace/name', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Search rollouts by namespace or name',
    oninput: (e) => {
      clearTimeout(searchTimer);
      const q = e.target.value.trim();
      searchTimer = setTimeout(() => { if (q !== list.q) { list.q = q; newSearch(); } }, 250);
    },
  });
  search.value = list.q;
  return h('section', { id: 'list' },
    h('h1', {}, 'Rollouts'),
    h('div', { class: 'toolbar' }, search,
      h('div', { class: 'chips', id: 'phase-chips', role: 'group', 'aria-label': 'Show only these phases' })),
    h('div', { id: 'list-body' }),
    h('nav', { class: 'pager', 'aria-label': 'Pages of rollouts' },
      h('button', { type: 'button', class: 'ghost', id: 'page-prev', onclick: () => { if (list.stack.length) goTo(list.stack.pop()); } }, '← Previous'),
      h('span', { class: 'muted', id: 'page-status', 'data-testid': 'page-status', role: 'status' }),
      h('button', { type: 'button', class: 'ghost', id: 'page-next', onclick: () => { if (list.next) { list.stack.push(list.cursor); goTo(list.next); } } }, 'Next →')));
}

function listRow(r) {
  const d = r.last_decision;
  return h('tr', { 'data-rollout': key(r) },
    h('td', {}, h('a', { href: '/rollouts/' + encodeURIComponent(r.namespace) + '/' + encodeURIComponent(r.name) }, key(r)),
      r.file_error ? h('div', { class: 'badge bad', title: typeof r.file_error === 'string' ? r.file_error : 'The latest edit of its deploy file was rejected' }, 'file rejected') : null),
    h('td', {}, phaseBadge(r), ' ', shadowBadge(r.mode === 'shadow')),
    h('td', { class: 'num' }, r.step + '/' + r.steps),
    h('td', {}, weightBar(r.weight)),
    h('td', {}, r.versions),
    r.phase_since
      ? h('td', { class: 'num hide-narrow', 'data-since': r.phase_since }, duration(since(r.phase_since)))
      : h('td', { class: 'num hide-narrow muted' }, '–'),
    h('td', {}, d
      ? [d.action ? h('strong', {}, d.action) : null, d.by ? h('span', { class: 'muted' }, ' by ' + d.by) : null, ' ',
        h('span', { class: 'muted' }, clock(d.at)), d.reason ? h('div', {}, d.reason) : null]
      : h('span', { class: 'muted' }, '–')));
}

function renderList() {
  const app = document.getElementById('app');
  document.title = 'canaryd';
  if (!state.loaded) return;
  if (!list.total && !filtered()) { patch(app, 'empty', emptyState); return; }
  if (!document.getElementById('list')) { app.dataset.sig = 'list'; app.replaceChildren(listSkeleton()); }
  const counts = list.counts || {};
  // Rebuilt chips keep the keyboard focus where it was.
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.phase : null;
  patch(document.getElementById('phase-chips'), JSON.stringify([counts, [...list.phases]]), () =>
    Object.keys(PHASE_CLASS).filter((p) => counts[p] || list.phases.has(p)).map((p) => h('button', {
      type: 'button', class: 'chip', 'data-phase': p, 'aria-pressed': list.phases.has(p) ? 'true' : 'false',
      onclick: () => { if (list.phases.has(p)) list.phases.delete(p); else list.phases.add(p); newSearch(); },
    }, p + ' ', h('span', { class: 'count' }, countText(counts[p] || 0)))));
  if (focused && document.activeElement === document.body) document.querySelector('#phase-chips [data-phase="' + focused + '"]')?.focus();
  const rows = [...list.rows.values()];
  patch(document.getElementById('list-body'), JSON.stringify(rows), () => rows.length
    ? h('table', { id: 'rollouts' },
      h('thead', {}, h('tr', {},
        h('th', {}, 'Rollout'), h('th', {}, 'Phase'), h('th', {}, 'Step'), h('th', {}, 'Canary weight'),
        h('th', {}, 'Stable → canary'), h('th', { class: 'hide-narrow' }, 'In phase'), h('th', {}, 'Last decision'))),
      h('tbody', {}, rows.map(listRow)))
    : h('p', { class: 'muted', id: 'no-match' }, 'No rollout matches.'));
  const first = list.stack.length * PAGE;
  document.getElementById('page-status').textContent = rows.length
    ? (first + 1) + '–' + (first + rows.length) + ' of ' + countText(list.total)
    : '0 of ' + countText(list.total);
  document.getElementById('page-prev').disabled = !list.stack.length;
  document.getElementById('page-next').disabled = !list.next;
}

function emptyState() {
  const example = [
    'service: checkout',
    'policy: http-red',
    'router: { kind: builtin, listen: 127.0.0.1:8080 }',
    'stable: { version: v1, address: 127.0.0.1:9001 }',
    'canary: { version: v2, address: 127.0.0.1:9002 }',
    'deploy:',
    '  strategy: canary',
    '  steps:',
    '    - deploy: 5%',
    '      duration: 10m',
    '      metrics:',
    '        - error_rate_less_than: 1%',
    '        - latency_p99_less_than: 200ms',
    '    - deploy: 50%',
    '      duration: 20m',
    '    - deploy: 100%',
    '  rollback:',
    '    auto: true',
    '    on:',
    '      - error_rate_greater_than: 2%',
    'alerts:',
    '  - slack: { webhook_env: SLACK_WEBHOOK_URL }',
  ].join('\n');
  return h('section', { class: 'empty', id: 'empty' },
    h('h1', {}, 'No rollouts yet'),
    h('p', {}, 'canaryd watches its deploy directory (', h('code', {}, '--deploy-dir'), ', default ', h('code', {}, 'deploy/'),
      '). Save a deploy file there and its rollout appears here within a second:'),
    h('pre', {}, example),
    h('p', {}, 'Check it first: ', h('code', {}, 'canaryd validate checkout.yaml'), ' (file, line and column for every mistake), then ',
      h('code', {}, 'canaryd check checkout.yaml'), ' to see each gate\'s live value on Prometheus.'),
    h('p', { class: 'muted' }, 'Or run the whole story on this machine: ', h('code', {}, './scripts/demo.sh')));
}

function renderDetail() {
  const app = document.getElementById('app');
  const id = state.route.ns + '/' + state.route.name;
  const r = state.rollouts.get(id);
  document.title = state.route.name + ' · canaryd';
  if (!state.loaded) return;
  if (!r) {
    destroyCharts();
    app.replaceChildren(h('p', {}, h('a', { href: '/' }, '← all rollouts')),
      h('div', { class: 'notice warn' }, 'No rollout ' + id + ' (its deploy file may have been removed).'));
    return;
  }
  if (!document.getElementById('detail') || app.dataset.rollout !== id) {
    destroyCharts();
    app.dataset.rollout = id;
    app.replaceChildren(h('div', { id: 'detail' },
      h('p', {}, h('a', { href: '/' }, '← all rollouts')),
      h('div', { class: 'title' }, h('h1', {}, id), h('span', { id: 'phase-slot' }), h('div', { class: 'actions', id: 'actions' })),
      h('div', { id: 'outcome' }),
      h('div', { class: 'summary', id: 'summary' }),
      h('h2', {}, 'Steps'), h('ol', { class: 'timeline', id: 'timeline' }),
      h('h2', {}, 'Gates'), h('div', { id: 'gate-values' }), h('div', { class: 'charts', id: 'charts' }),
      h('div', { id: 'shadow-summary' }),
      h('h2', {}, 'Decision log'), h('div', { id: 'decisions' }),
      h('h2', {}, 'Alerts sent'), h('div', { id: 'alerts' })));
    renderActions();
  }
  patch(document.getElementById('phase-slot'), r.phase + r.pause_reason + r.mode, () => [phaseBadge(r), ' ', shadowBadge(r.mode === 'shadow'),
    r.pause_reason ? h('span', { class: 'muted' }, ' ' + (PAUSE_WHY[r.pause_reason] || r.pause_reason)) : null]);
  for (const b of document.querySelectorAll('#actions button')) {
    const allowed = ACTIONS.find(([a]) => a === b.dataset.action)[1];
    b.disabled = !allowed.includes(r.phase);
  }
  renderOutcome(r);
  renderSummary(r);
  renderTimeline(r);
  renderGates(r);
  renderCharts();
  renderShadow(r);
  renderDecisions();
  renderAlerts();
}

/** The releases watched in shadow mode and what canaryd would have done. */
function renderShadow(r) {
  const box = document.getElementById('shadow-summary');
  const s = state.shadow;
  if (!s || (r.mode !== 'shadow' && !s.releases_watched)) { patch(box, 'none', () => []); return; }
  const verdict = { would_promote: ['would promote', 'ok'], would_roll_back: ['would roll back', 'bad'], aborted: ['aborted', 'idle'], superseded: ['superseded', 'idle'], watching: ['watching', ''] };
  patch(box, JSON.stringify(s), () => [
    h('h2', {}, 'Shadow summary ', shadowBadge(true)),
    h('p', { class: 'muted' }, SHADOW_WHY + ' The canary weight shown is the one read from the router.'),
    h('div', { class: 'summary' },
      stat('Releases watched', String(s.releases_watched), { class: 'value', 'data-testid': 'shadow-watched' }),
      stat('Would have rolled back', String(s.would_roll_back), { class: 'value', 'data-testid': 'shadow-rollbacks' }),
      stat('Would have promoted', String(s.would_promote), { class: 'value' })),
    s.releases.length ? h('table', { id: 'shadow-releases' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Version'), h('th', {}, 'Watched from'), h('th', {}, 'Verdict'), h('th', {}, 'Time to verdict'), h('th', {}, 'Evidence'))),
      h('tbody', {}, [...s.releases].reverse().map((x) => h('tr', {},
        h('td', {}, x.version),
        h('td', { class: 'num' }, x.started ? clock(x.started) : '–'),
        h('td', {}, h('span', { class: 'badge ' + (verdict[x.verdict] || ['', ''])[1] }, (verdict[x.verdict] || [x.verdict])[0])),
        h('td', { class: 'num' }, x.time_to_verdict_seconds !== undefined ? duration(x.time_to_verdict_seconds) : '–'),
        h('td', {}, x.reason ? h('div', { class: 'reason' }, x.reason) : null,
          (x.evidence || []).map((g) => h('div', { class: 'muted' }, g.gate + ': ' + g.value + (g.evidence ? ' — ' + g.evidence : '')))))))) : null]);
}

function renderOutcome(r) {
  const o = document.getElementById('outcome');
  const d = r.last_decision;
  const parts = [];
  if (r.file_error) parts.push(h('div', { class: 'notice bad' }, 'The latest edit of ' + r.file + ' was rejected; the previous version keeps running.', h('pre', {}, r.file_error)));
  if (d && (r.phase === 'RolledBack' || r.phase === 'Aborted' || r.phase === 'Paused' || r.phase === 'Promoted')) {
    const kind = r.phase === 'Promoted' ? 'ok' : r.phase === 'Paused' ? 'warn' : 'bad';
    // Shadow: the verdict canaryd reached; traffic was never touched (the reason says "would …").
    const verb = r.mode === 'shadow'
      ? { RolledBack: 'Shadow verdict', Aborted: 'No longer watched', Paused: 'Shadow verdict', Promoted: 'Shadow verdict' }[r.phase]
      : { RolledBack: 'Rolled back', Aborted: 'Aborted', Paused: 'Paused', Promoted: 'Promoted' }[r.phase];
    parts.push(h('div', { class: 'notice ' + kind, id: 'reason' }, verb + ' at ' + clock(d.at) + ': ' + d.reason));
  }
  patch(o, JSON.stringify([r.phase, d, r.file_error, r.mode]), () => parts);
}

/** Time left in the step, as data the clock updates: progress counts only
 *  while progressing, at most one interval past the last tick. */
function leftAttrs(r, suffix) {
  if (r.phase !== 'Progressing' || r.step_duration_seconds === null || r.step_duration_seconds === undefined) return null;
  return {
    'data-left': Math.max(0, r.step_duration_seconds - r.step_elapsed_seconds),
    'data-from': r.updated_at,
    'data-cap': 60,
    'data-suffix': suffix || '',
  };
}

function stat(label, value, attrs) {
  return h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', Object.assign({ class: 'value' }, attrs || {}), value));
}

function renderSummary(r) {
  const sig = JSON.stringify([r.canary_weight, r.step, r.steps, r.stable_version, r.canary_version, r.phase, r.phase_since,
    r.step_elapsed_seconds, r.updated_at, r.health]);
  patch(document.getElementById('summary'), sig, () => {
    const left = leftAttrs(r);
    return [
      stat('Canary weight', weightBar(r.canary_weight)),
      stat('Step', r.step + ' / ' + r.steps, { 'data-testid': 'step' }),
      stat('Stable → canary', versions(r), { class: 'value small' }),
      stat('In this step', duration(since(r.phase_since)), { class: 'value small', 'data-since': r.phase_since }),
      left
        ? stat('Left in this step', '', Object.assign({ class: 'value small', 'data-testid': 'time-left' }, left))
        : stat(r.phase === 'Progressing' ? 'Left in this step' : 'Watched in this step',
          r.phase === 'Progressing' ? 'final step' : duration(r.step_elapsed_seconds), { class: 'value small', 'data-testid': 'time-left' }),
      stat('Upstreams', (r.health.stable ? 'stable ✓' : 'stable ✗') + '  ' + (r.health.canary ? 'canary ✓' : 'canary ✗'), { class: 'value small' }),
    ];
  });
}

function renderTimeline(r) {
  const current = r.step - 1;
  const finished = r.phase === 'Promoted';
  const sig = JSON.stringify([r.plan, r.step, r.phase, r.step_elapsed_seconds, r.updated_at]);
  patch(document.getElementById('timeline'), sig, () => r.plan.map((s, i) => {
    const cls = finished || i < current ? 'done' : i === current ? 'current' : '';
    const d = s.duration_seconds === null ? 'until promoted' : 'watch ' + duration(s.duration_seconds);
    const left = i === current && !finished ? leftAttrs(r, ' left') : null;
    return h('li', { class: cls, 'aria-current': i === current ? 'step' : null },
      h('div', { class: 'w' }, percent(s.weight)),
      h('div', { class: 'd' }, 'Step ' + (i + 1) + ' · ' + d,
        left ? [' · ', h('span', left, '')] : null,
        i === current && r.phase === 'Paused' ? ' · paused' : null));
  }));
}

const VERDICT_TITLE = {
  undecided: 'not enough evidence yet — never a pass: the step does not advance until the gate passes',
  inconclusive: 'no judgement possible (no data, too few requests, a Prometheus error) — never a pass',
};

function verdictTag(v) {
  return h('span', { class: 'verdict verdict-' + v, title: VERDICT_TITLE[v] || null, 'data-testid': 'verdict' }, v);
}

function renderGates(r) {
  const box = document.getElementById('gate-values');
  // Not measuring (rolled back, promoted): the gates of the last decision that judged any.
  let gates = r.gates;
  let caption = null;
  if (!gates.length) {
    const last = [...state.decisions].sort((a, b) => b.seq - a.seq).find((d) => d.gates.length);
    if (last) {
      gates = last.gates;
      caption = h('p', { class: 'muted' }, 'As judged at decision #' + last.seq + ' (' + last.action + ', ' + clock(last.at) + '):');
    }
  }
  if (!gates.length) {
    patch(box, 'none', () => h('p', { class: 'muted' }, 'No gate measured yet.'));
    return;
  }
  const unitOf = (name) => (state.series?.gates || []).find((g) => g.name === name)?.unit;
  patch(box, JSON.stringify([gates, caption && caption.textContent, state.series?.version]), () => [caption, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Gate'), h('th', {}, 'Canary'), h('th', {}, 'Stable'), h('th', {}, 'Threshold'),
      h('th', {}, 'Verdict'), h('th', {}, 'Evidence'))),
    h('tbody', {}, gates.map((g) => h('tr', { 'data-gate': g.name },
      h('td', {}, g.name),
      h('td', { class: 'num canary-value' }, g.shown),
      h('td', { class: 'num' }, show(unitOf(g.name), g.stable_value)),
      h('td', { class: 'num' }, g.threshold),
      h('td', {}, verdictTag(g.verdict), g.reason ? h('div', { class: 'muted' }, reasonText(g.reason)) : null),
      h('td', { class: 'evidence-cell' }, evidenceCell(g))))))]);
}

function reasonText(reason) {
  if (typeof reason === 'string') return reason;
  return Object.entries(reason).map(([k, v]) => k === 'kind' ? String(v).replaceAll('_', ' ') : k + ' ' + v).join(', ');
}

// ---------- charts ----------

function destroyCharts() {
  for (const c of state.charts.values()) c.plot.destroy();
  state.charts.clear();
  const holder = document.getElementById('charts');
  if (holder) delete holder.dataset.shape;
}

/** Whether the gate's points carry a confidence bound (promotion gates on error rates). */
function hasBound(g) { return g.points.some((p) => p.bound !== null && p.bound !== undefined); }

function chartData(g) {
  const { k } = scaled(g.unit);
  const fixed = g.threshold_value !== null && g.threshold_value !== undefined;
  const xs = [], canary = [], stable = [], threshold = [], breach = [], bound = [];
  for (const p of g.points) {
    xs.push(p.t / 1000);
    canary.push(p.canary === null ? null : p.canary * k);
    stable.push(p.stable === null ? null : p.stable * k);
    // Relative to the stable version (`stable * 1.2`): no fixed line to draw.
    threshold.push(fixed ? g.threshold_value * k : null);
    breach.push(p.verdict === 'fail' && p.canary !== null ? p.canary * k : null);
    bound.push(p.bound === null || p.bound === undefined ? null : p.bound * k);
  }
  const data = [xs, canary, stable, threshold, breach];
  if (hasBound(g)) data.push(bound);
  return data;
}

/** The gate's evidence bound now (from the rollout's gates): its confidence and side. */
function boundNow(g) {
  const r = state.route && state.rollouts.get(state.route.ns + '/' + state.route.name);
  let gates = (r && r.gates) || [];
  // Not measuring (rolled back, promoted): as judged at the last decision.
  if (!gates.length) gates = [...state.decisions].sort((a, b) => b.seq - a.seq).find((d) => d.gates.length)?.gates || [];
  const e = gates.find((x) => x.name === g.name)?.evidence;
  return e && e.bound ? e.bound : null;
}

/** The bound series' label: `99% confidence bound`. */
function boundLabel(g) {
  const b = boundNow(g);
  return (b ? confidenceText(b.confidence) + ' ' : '') + 'confidence bound';
}

function makeChart(g, box) {
  const { suffix } = scaled(g.unit);
  const version = state.series?.version || 'canary';
  const fixed = g.threshold_value !== null && g.threshold_value !== undefined;
  const axis = { stroke: css('--muted'), grid: { stroke: css('--line'), width: 1 }, ticks: { stroke: css('--line') } };
  const series = [
    {},
    { label: 'canary ' + version, stroke: css('--canary'), width: 2, value: (u, v) => v === null ? '–' : v.toFixed(2) + suffix },
    { label: 'stable', stroke: css('--stable'), width: 1.5, value: (u, v) => v === null ? '–' : v.toFixed(2) + suffix },
    { label: 'threshold ' + g.threshold + (fixed ? '' : ' (relative)'), stroke: css('--threshold'), width: 1.5,
      dash: [6, 4], points: { show: false } },
    { label: 'breach', stroke: css('--threshold'), width: 0, paths: () => null,
      points: { show: true, size: 9, fill: css('--threshold'), stroke: css('--threshold') } },
  ];
  if (hasBound(g)) {
    // The bound the verdict rests on, dashed in the canary's colour: a pass
    // needs the upper bound under the threshold, a failure the lower above it.
    series.push({ label: boundLabel(g), stroke: css('--canary'), width: 1.5, dash: [2, 4], points: { show: false },
      value: (u, v) => v === null ? '–' : v.toFixed(2) + suffix });
  }
  const opts = {
    width: Math.max(260, box.clientWidth),
    height: 190,
    scales: { x: { time: true } },
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
    series,
    axes: [axis, Object.assign({}, axis, { size: 60, values: (u, vals) => vals.map((v) => +v.toFixed(3) + suffix) })],
  };
  return new uPlot(opts, chartData(g), box);
}

function renderCharts() {
  const holder = document.getElementById('charts');
  const gates = state.series?.gates || [];
  if (!gates.length) {
    destroyCharts();
    patch(holder, 'none', () => h('p', { class: 'muted' }, 'Charts appear after the first measurement.'));
    return;
  }
  const shape = JSON.stringify([state.series.version, gates.map((g) => [g.name, g.threshold, g.unit, hasBound(g)]), document.documentElement.dataset.theme]);
  if (holder.dataset.shape !== shape) {
    destroyCharts();
    holder.dataset.shape = shape;
    holder.replaceChildren();
  }
  for (const g of gates) {
    let c = state.charts.get(g.name);
    const last = g.points[g.points.length - 1];
    const b = boundNow(g);
    const bound = last && last.bound !== null && last.bound !== undefined
      ? ' · ' + (b ? confidenceText(b.confidence) + ' ' + b.side : 'confidence') + ' bound ' + show(g.unit, last.bound) : '';
    const now = last ? 'now: canary ' + show(g.unit, last.canary) + ', stable ' + show(g.unit, last.stable) + ' · threshold ' + g.threshold + bound : '';
    if (!c) {
      const plot = h('div', { class: 'plot' });
      const nowLine = h('div', { class: 'now' }, now);
      const card = h('div', { class: 'chart', 'data-gate': g.name },
        h('h3', {}, g.name, h('span', { class: 'badge idle' }, g.kind === 'abort' ? 'abort condition' : 'promotion gate')), nowLine, plot);
      holder.append(card);
      c = { plot: makeChart(g, plot), nowLine, box: plot };
      state.charts.set(g.name, c);
    } else {
      c.plot.setData(chartData(g));
      c.nowLine.textContent = now;
    }
  }
}

window.addEventListener('resize', () => {
  for (const c of state.charts.values()) c.plot.setSize({ width: Math.max(260, c.box.clientWidth), height: 190 });
});

// ---------- decision log and alerts ----------

function renderDecisions() {
  const box = document.getElementById('decisions');
  if (!state.decisions.length) { patch(box, 'none', () => h('p', { class: 'muted' }, 'No decision yet.')); return; }
  const rows = [...state.decisions].sort((a, b) => b.seq - a.seq).slice(0, 100);
  const open = new Set([...box.querySelectorAll('details[open]')].map((d) => d.dataset.seq));
  patch(box, rows.map((d) => d.seq).join(','), () => h('table', { id: 'decision-log' },
    h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, 'Time'), h('th', {}, 'Action'), h('th', { class: 'hide-narrow' }, 'Phase'),
      h('th', {}, 'Step · weight'), h('th', {}, 'Reason and numbers'))),
    h('tbody', {}, rows.map((d) => h('tr', { 'data-seq': d.seq },
      h('td', { class: 'num' }, d.seq),
      h('td', { class: 'num' }, clock(d.at)),
      h('td', {}, h('strong', {}, d.action), d.shadow ? [' ', shadowBadge(true)] : null, d.by ? h('div', { class: 'muted by' }, 'by ' + d.by) : null),
      h('td', { class: 'hide-narrow' }, d.from + ' → ' + d.to),
      h('td', { class: 'num' }, d.step + ' · ' + percent(d.weight)),
      h('td', {}, h('div', { class: 'reason' }, d.reason),
        d.gates.length ? h('details', { 'data-seq': d.seq, open: open.has(String(d.seq)) },
          h('summary', {}, d.gates.length + ' gate' + (d.gates.length > 1 ? 's' : '') + ' and their PromQL'),
          d.gates.map((g) => h('div', { class: 'gates-table' },
            h('div', {}, h('strong', {}, g.name), ' ', verdictTag(g.verdict), ' canary ', g.shown,
              ' · threshold ', g.threshold),
            g.evidence ? h('div', { class: 'evidence' }, evidenceText(g.evidence)) : null,
            h('pre', {}, g.query)))) : null))))));
}

function renderAlerts() {
  const box = document.getElementById('alerts');
  if (!state.alerts.length) {
    patch(box, 'none', () => h('p', { class: 'muted' }, 'No alert sent. Add sinks under ', h('code', {}, 'alerts:'), ' in the deploy file (Slack, Teams, Discord, Google Chat, webhook).'));
    return;
  }
  const cls = { delivered: 'ok', pending: 'warn', gave_up: 'bad' };
  patch(box, JSON.stringify(state.alerts), () => h('table', { id: 'alert-log' },
    h('thead', {}, h('tr', {}, h('th', {}, 'Queued'), h('th', {}, 'Event'), h('th', {}, 'Sink'), h('th', {}, 'State'), h('th', { class: 'hide-narrow' }, 'Message'))),
    h('tbody', {}, [...state.alerts].reverse().map((a) => h('tr', {},
      h('td', { class: 'num' }, clock(a.queued_at)),
      h('td', {}, a.event.replaceAll('_', ' ')),
      h('td', {}, h('code', {}, a.sink)),
      h('td', {}, h('span', { class: 'badge ' + (cls[a.state] || '') }, a.state.replace('_', ' ')),
        a.attempts > 1 ? h('span', { class: 'muted' }, ' ' + a.attempts + ' attempts') : null,
        a.last_error ? h('div', { class: 'muted' }, a.last_error) : null),
      h('td', { class: 'hide-narrow' }, a.title))))));
}

// ---------- actions ----------

function renderActions() {
  const box = document.getElementById('actions');
  box.replaceChildren(...ACTIONS.map(([a]) => h('button', {
    type: 'button', class: a === 'abort' ? 'danger' : 'ghost', 'data-action': a, onclick: () => act(a),
  }, a[0].toUpperCase() + a.slice(1))));
}

function askToken(action) {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  document.getElementById('token-what').textContent = action + ' ' + state.route.ns + '/' + state.route.name + ' needs the daemon\'s API token.';
  input.value = '';
  dialog.returnValue = ''; // Escape must not repeat the last "Run"
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (dialog.returnValue !== 'ok') { resolve(null); return; }
      const token = input.value.trim();
      if (token && document.getElementById('token-remember').checked) sessionStorage.setItem('canaryd-token', token);
      resolve(token);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

const CONFIRM = {
  promote: 'Promote now? The canary gets 100% of the traffic and becomes the stable version.',
  abort: 'Abort? All traffic goes back to the stable version.',
};

let acting = false;
async function act(action) {
  if (acting) return;
  if (CONFIRM[action] && !window.confirm(CONFIRM[action])) return;
  acting = true;
  try {
    await send(action);
  } finally {
    acting = false;
  }
}

async function send(action) {
  let token = sessionStorage.getItem('canaryd-token');
  if (!token) {
    token = await askToken(action);
    if (token === null) return;
  }
  const url = '/api/v1/rollouts/' + encodeURIComponent(state.route.ns) + '/' + encodeURIComponent(state.route.name) + '/' + action;
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  try {
    const r = await fetch(url, { method: 'POST', headers });
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      state.rollouts.set(key(body), body);
      notice('ok', action + ': done — ' + body.phase + ', canary weight ' + percent(body.canary_weight));
      render();
    } else {
      if (r.status === 401 || r.status === 403) sessionStorage.removeItem('canaryd-token');
      const msg = body.error ? body.error.message : 'HTTP ' + r.status;
      notice('bad', action + ' refused (' + r.status + (body.error ? ' ' + body.error.code : '') + '): ' + msg);
    }
  } catch (e) {
    notice('bad', action + ' failed: canaryd cannot be reached (' + e.message + ')');
  }
}

// ---------- theme and start ----------

document.getElementById('token-cancel').addEventListener('click', () => document.getElementById('token-dialog').close('cancel'));

document.getElementById('theme').addEventListener('click', () => {
  const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem('canaryd-theme', next); } catch (e) { /* private mode */ }
  destroyCharts();
  render();
});

// Times in the step and left in it move on between events.
setInterval(() => { if (!document.hidden) updateClock(); }, 1000);

connect(); // its first `open` loads everything
