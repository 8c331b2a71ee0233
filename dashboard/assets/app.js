// Sluice dashboard: live updates by server-sent events, and clocks.
// Served as a file ('self'): the Content-Security-Policy allows no inline
// script. Everything it inserts is HTML the server rendered and escaped.
(function () {
  'use strict';

  function fmt(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + 's';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm' + String(s % 60).padStart(2, '0') + 's';
    var h = Math.floor(m / 60);
    if (h < 48) return h + 'h' + String(m % 60).padStart(2, '0') + 'm';
    return Math.floor(h / 24) + 'd' + (h % 24) + 'h';
  }

  // Keep "3m ago" and "42s left" current.
  function tick() {
    var now = Date.now();
    document.querySelectorAll('time[data-since]').forEach(function (el) {
      el.textContent = fmt(now - Date.parse(el.dataset.since)) + ' ago';
    });
    document.querySelectorAll('time[data-until]').forEach(function (el) {
      var left = Date.parse(el.dataset.until) - now;
      el.textContent = left > 0 ? fmt(left) + ' left' : 'due';
    });
  }

  // Replace the live part of the page with what the server sends.
  function live() {
    var el = document.getElementById('live');
    if (!el || !el.dataset.events || !window.EventSource) return;
    var es = new EventSource(el.dataset.events);
    es.addEventListener('update', function (e) {
      el.innerHTML = e.data;
      el.dataset.updated = String(Date.now());
      tick();
    });
    es.addEventListener('login', function () {
      es.close();
      window.location.reload();
    });
    es.addEventListener('open', function () { el.dataset.connected = 'true'; });
    es.addEventListener('error', function () { el.dataset.connected = 'false'; });
  }

  // Filters apply as soon as a choice is made.
  function filters() {
    document.querySelectorAll('form[data-autosubmit] select').forEach(function (s) {
      s.addEventListener('change', function () { s.form.requestSubmit(); });
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    live();
    filters();
    tick();
    setInterval(tick, 1000);
  });
})();
