// canaryd dashboard: the delivery panel under the rollout list — the four
// delivery figures of the last 30 days from /api/v1/delivery, a bar per day
// (promoted, rolled back, aborted) and a row per rollout. Plain DOM and SVG
// built with createElement (no innerHTML); uses h() and duration() of app.js.
'use strict';

(function () {
  const panel = document.getElementById('delivery');
  if (!panel || location.pathname !== '/') return;
  const SVG = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of children) e.append(c);
    return e;
  }

  function rate(x) {
    return x === null || x === undefined ? '–' : (Math.round(x * 1000) / 10) + '%';
  }

  function perDay(x) {
    return x >= 10 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(2);
  }

  function stat(label, value, testid, title) {
    return h('div', { class: 'stat', title },
      h('div', { class: 'label' }, label),
      h('div', { class: 'value', 'data-testid': testid }, value));
  }

  /** Stacked bars per UTC day: promoted, then rolled back, then aborted. */
  function chart(daily) {
    const width = 600, height = 90, gap = 1;
    const max = Math.max(1, ...daily.map((d) => d.promoted + d.rolled_back + d.aborted));
    const w = width / Math.max(1, daily.length);
    const plot = svg('svg', { viewBox: '0 0 ' + width + ' ' + height, preserveAspectRatio: 'none', class: 'delivery-chart', role: 'img', 'data-testid': 'delivery-chart',
      'aria-label': 'Rollouts finished per day: promoted, rolled back, aborted' });
    daily.forEach((d, i) => {
      let y = height;
      for (const [kind, n] of [['promoted', d.promoted], ['rolled_back', d.rolled_back], ['aborted', d.aborted]]) {
        if (!n) continue;
        const bh = n / max * (height - 4);
        y -= bh;
        plot.append(svg('rect', { x: i * w + gap, y, width: Math.max(1, w - 2 * gap), height: bh, class: 'bar-' + kind },
          svg('title', {}, document.createTextNode(d.day + ': ' + n + ' ' + kind.replace('_', ' ')))));
      }
    });
    plot.append(svg('line', { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: 'axis' }));
    return h('div', { class: 'delivery-plot' }, plot,
      h('div', { class: 'legend muted' },
        h('span', { class: 'key promoted' }, 'promoted'), h('span', { class: 'key rolled_back' }, 'rolled back'),
        h('span', { class: 'key aborted' }, 'aborted'),
        ' · ' + daily[0].day + ' – ' + daily[daily.length - 1].day + ' (UTC), at most ' + max + ' a day'));
  }

  function render(r) {
    const o = r.overall;
    const rows = r.rollouts.filter((f) => f.finished || f.in_flight || f.started);
    panel.hidden = false;
    panel.replaceChildren(
      h('h2', {}, 'Delivery, last 30 days'),
      h('div', { class: 'summary' },
        stat('Deployments / day', perDay(o.deployments_per_day), 'deploy-frequency', o.promoted + ' promoted'),
        stat('Change failure rate', rate(o.change_failure_rate), 'change-failure-rate', o.rolled_back + ' rolled back of ' + o.finished + ' finished'),
        stat('Time to restore (median)', duration(o.time_to_restore.median_seconds), 'time-to-restore', 'from the fault\'s evidence to weight 0'),
        stat('Lead time (median)', duration(o.lead_time.median_seconds), 'lead-time', 'from the rollout\'s start to its promotion')),
      o.finished ? chart(r.daily) : h('p', { class: 'muted' }, 'No rollout finished in the last 30 days.'),
      rows.length ? h('table', { id: 'delivery-rollouts' },
        h('thead', {}, h('tr', {}, ['Rollout', 'Deployments / day', 'Change failure rate', 'Time to restore', 'Lead time', 'Promoted', 'Rolled back', 'Aborted', 'In flight']
          .map((t) => h('th', {}, t)))),
        h('tbody', {}, rows.map((f) => h('tr', { 'data-rollout': f.rollout },
          h('td', {}, f.rollout),
          h('td', { class: 'num' }, perDay(f.deployments_per_day)),
          h('td', { class: 'num' }, rate(f.change_failure_rate)),
          h('td', { class: 'num' }, duration(f.time_to_restore.median_seconds)),
          h('td', { class: 'num' }, duration(f.lead_time.median_seconds)),
          h('td', { class: 'num' }, f.promoted), h('td', { class: 'num' }, f.rolled_back),
          h('td', { class: 'num' }, f.aborted), h('td', { class: 'num' }, f.in_flight))))) : null);
  }

  async function load() {
    try {
      const r = await fetch('/api/v1/delivery?since=-30d', { cache: 'no-store' });
      if (r.ok) render(await r.json());
    } catch (e) {
      // The list shows the connection state; the panel keeps its last figures.
    }
  }

  load();
  setInterval(load, 60000);
})();
