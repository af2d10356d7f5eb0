// The chosen theme before the first paint: saved choice, else the system's.
// (A file, not an inline script: the Content-Security-Policy allows only
// scripts from /assets/.)
(function () {
  var saved = null;
  try { saved = localStorage.getItem('canaryd-theme'); } catch (e) {}
  var dark = saved ? saved === 'dark' : window.matchMedia('(prefers-color-scheme: dark)').matches;
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
})();
